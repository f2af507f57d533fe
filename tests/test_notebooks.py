"Run every notebook in nbs/ with nbdev's own notebook tester, honouring settings.ini's tst_flags."
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook(nb):
    flags = get_config(path=ROOT).tst_flags.split()
    ok, secs = run_notebook(nb, skip_flags=flags, showerr=True, basepath=ROOT)
    assert ok, f"{nb.name} failed (see the captured stderr above)"
