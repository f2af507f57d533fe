"""The offline docs build: every notebook gets a page, every exported function and class its parameter table; README.md,
the sidebar and the links between notebooks agree with the notebooks."""
import html, importlib, inspect, json, re, time
from pathlib import Path

import pytest
import yaml

from speech_prefinetune.docs import build_docs, heading_anchor, main, page_name, readme_markdown

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
MODULE_NBS = sorted(p for p in NBS.glob("[0-9][0-9]*_*.ipynb"))  # 00_core, 00a_config, 06a_stacked, ...


def default_exp(nb_path):
    for c in json.loads(nb_path.read_text())["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", src, re.MULTILINE)
        if c["cell_type"] == "code" and m: return m.group(1)


def documented_symbols(module_name):
    "Exported functions and classes defined in the module, with their parameter names (self/cls excluded)."
    mod = importlib.import_module(f"speech_prefinetune.{module_name}")
    out = {}
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or getattr(obj, "__module__", None) != mod.__name__:
            continue
        try: params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        except (TypeError, ValueError): continue
        out[name] = params
    return out


def section(page, name):
    "The HTML of `name`'s show_doc section: from its heading to the next h2/h3."
    m = re.search(rf'<h3 id="{re.escape(name)}">', page)
    if not m: return None
    nxt = re.search(r"<h[23] ", page[m.end():])
    return page[m.start(): m.end() + (nxt.start() if nxt else len(page))]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    t0 = time.time()
    index = build_docs(out, root=ROOT, progress=False)
    return out, index, time.time() - t0


def test_every_notebook_has_a_page(site):
    out, index, secs = site
    assert index == out / "index.html" and index.exists()
    nav = index.read_text()
    assert MODULE_NBS, "no module notebooks found"
    for nb in MODULE_NBS:
        page = out / page_name(nb)
        assert page.exists(), f"{nb.name}: no page {page.name}"
        assert f'href="{page.name}"' in nav, f"index.html does not link {page.name}"
        assert "<h1" in page.read_text(), f"{page.name}: no title"
    assert (out / "style.css").exists()
    assert secs < 120, f"docs build took {secs:.0f} s"


@pytest.mark.parametrize("nb", MODULE_NBS, ids=lambda p: p.name)
def test_parameter_tables(site, nb):
    out = site[0]
    mod = default_exp(nb)
    if mod is None: pytest.skip(f"{nb.name} exports no module")
    page = (out / page_name(nb)).read_text()
    for name, params in documented_symbols(mod).items():
        sec = section(page, name)
        assert sec is not None, (f"{nb.name}: {name} has no show_doc section on {page_name(nb)} "
                                 "(exported in a hidden cell?)")
        if not params: continue
        assert "<th><strong>Type</strong></th>" in sec, f"{page_name(nb)}: no parameter table for {name}"
        cells = set(re.findall(r"<td>\**(\w+)</td>", sec))
        missing = [p for p in params if p not in cells]
        assert not missing, f"{page_name(nb)}: parameter table of {name} lacks {missing}"


def test_known_tables(site):
    out = site[0]
    core = section((out / "core.html").read_text(), "derive_seed")
    assert "<td>*parts</td>" in core
    rep = section((out / "analysis.html").read_text(), "write_report")
    assert "<td>results_path</td>" in rep and "<td>10000</td>" in rep and "output directory (created)" in rep


def test_pages_hide_what_nbdev_hides(site):
    out = site[0]
    page = (out / "analysis.html").read_text()
    assert "nbdev_export" not in page  # the #| hide export cell
    assert "from fastcore.test import" not in page  # #| hide imports
    assert "#|" not in page and "show_doc(" not in page  # directives and show_doc inputs
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "def fig2_table(" in text  # its signature, from show_doc
    assert 'mean_f1="mean"' not in text  # but not its exported source


def test_links_between_pages(site):
    "A link written for Quarto's site (`performance.ipynb#how-fast-is-a-trial`) lands on the same heading offline."
    out = site[0]
    assert 'id="how-fast-is-a-trial"' in (out / "performance.html").read_text()
    assert 'href="performance.html#how-fast-is-a-trial"' in (out / "fewshot.html").read_text()


def test_readme_is_index_notebook():
    assert (ROOT / "README.md").read_text() == readme_markdown(NBS / "index.ipynb"), \
        "README.md differs from nbs/index.ipynb: run `python -m speech_prefinetune.docs --readme`"


def test_main_writes_site(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT / "nbs")  # the project is found from any folder inside it
    assert main(["--out", str(tmp_path / "site"), "--quiet"]) == 0
    assert (tmp_path / "site" / "index.html").exists() and "docs:" in capsys.readouterr().out


def markdown_of(nb_path):
    cells = json.loads(nb_path.read_text())["cells"]
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells
               if c["cell_type"] == "markdown"]
    return sources


def test_notebook_links_resolve():
    "Every `[..](X.ipynb#anchor)` link in a notebook names a notebook in nbs/ and one of its headings."
    anchors = {p.name: {heading_anchor(h) for md in markdown_of(p) for h in re.findall(r"^#+\s+(.+?)\s*$", md, re.M)}
               for p in NBS.glob("*.ipynb")}
    broken = []
    for p in NBS.glob("*.ipynb"):
        for md in markdown_of(p):
            for target, anchor in re.findall(r"\]\(([\w.-]*\.ipynb)?(?:#([\w.-]+))?\)", md):
                if not target and not anchor: continue
                page = target or p.name
                if page not in anchors or (anchor and anchor not in anchors[page]):
                    broken.append(f"{p.name}: ({target}#{anchor})")
    assert not broken, f"links to no notebook or no heading: {broken}"


def test_sidebar_lists_every_notebook():
    listed = yaml.safe_load((NBS / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    notebooks = {p.name for p in NBS.glob("*.ipynb") if not p.name.startswith("_")}
    assert notebooks - set(listed) == set(), "notebooks missing from nbs/sidebar.yml"
    assert set(listed) - notebooks == set(), "nbs/sidebar.yml lists notebooks that do not exist"


def markdown_table_after(text, heading):
    "The first markdown table after `heading` (a line of the text), as its lines."
    rest = text[text.index(heading):]
    return re.search(r"^\|.*?(?=\n(?!\|))", rest, re.M | re.S).group(0).splitlines()


def test_readme_benchmarks_are_the_performance_summary():
    "The README's benchmark table is the performance notebook's summary, so the two cannot drift apart."
    summary = "\n\n".join(markdown_of(NBS / "performance.ipynb"))
    readme = (ROOT / "README.md").read_text()
    assert markdown_table_after(readme, "## Benchmarks") == markdown_table_after(summary, "## Summary")
