import atexit, os, shutil, sys, tempfile
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The shared caches (decoded audio, CNN features) go to a per-session temporary folder, never to the user's
# ~/.cache: set before anything imports the package; notebooks run by nbdev's tester in this process and
# subprocesses (the CLI tests) inherit it.
_CACHE = tempfile.mkdtemp(prefix="spft-test-cache-")
os.environ["SPFT_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)
