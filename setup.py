"Package set-up read from settings.ini (nbdev 2 layout). No pkg_resources."
from configparser import ConfigParser
import setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = 'version description keywords author author_email license git_url lib_name'.split()
missing = [o for o in expected if o not in cfg]
assert not missing, f"settings.ini is missing: {missing}"

# settings.ini's nbdev license key -> its SPDX expression (PEP 639; setuptools >= 77 deprecates License classifiers)
licenses = {'apache2': 'Apache-2.0'}
# indexed by settings.ini's `status` number, as in nbdev's template (status = 3: '3 - Alpha')
statuses = ['0 - Pre-Planning', '1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
license_expression = licenses[cfg['license']]
requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
console_scripts = cfg.get('console_scripts', '').split()

setuptools.setup(
    name=cfg['lib_name'],
    license_expression=license_expression,
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: Science/Research',
                 'Natural Language :: English',
                 'Topic :: Scientific/Engineering :: Artificial Intelligence',
                 'Programming Language :: Python :: 3'],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['speech_prefinetune', 'speech_prefinetune.*']),
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': console_scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    version=cfg['version'],
    description=cfg['description'],
    keywords=cfg['keywords'],
    author=cfg['author'],
    author_email=cfg['author_email'],
)
