"""Real-browser check of the widgets: JupyterLab (headless, 127.0.0.1, random port, token) + Debian's Chromium via
Playwright. Runs a small notebook that builds a ResultsViewer and a CorpusChooser, changes k in the browser and checks that the
table and the chart follow, ticks a corpus and checks the command. Screenshots: test-artifacts/jupyterlab_widgets.png
(viewer) and jupyterlab_corpus_chooser.png. Chromium: tests/setup_browser.sh."""
import json, os, re, secrets, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "jupyterlab_widgets.png"
EMOTIONS = ["neutral", "angry", "happy", "sad", "surprise"]
FULL = "iemocap+msp_improv+msp_podcast+mandarin_as"
MS = 1000

def chromium_executable():
    "Debian's Chromium (or $SPFT_CHROMIUM), or None."
    for p in (os.environ.get("SPFT_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if p and os.access(p, os.X_OK): return p
    return None

def small_results(seed=0) -> pd.DataFrame:
    "Random few-shot results (columns of grid.load_results) for 2+2 speakers, 3 models, k in 2 and 8."
    rng, rows = np.random.default_rng(seed), []
    for corpora in ("base", "iemocap", FULL):
        for speaker in ("0001", "0002", "0011", "0012"):
            for emotion in EMOTIONS:
                for k in (2, 8):
                    for trial in range(3):
                        f1 = float(rng.uniform(0.3, 0.95))
                        rows.append(dict(model=corpora, corpora=corpora, speaker=speaker,
                                         language="zh" if speaker < "0011" else "en", emotion=emotion, k=k,
                                         trial=trial, macro_f1=f1, accuracy=f1, train_ids="[]"))
    return pd.DataFrame(rows)

def expected_cells(results, language, k, models) -> list[str]:
    "The table's numbers, computed directly with pandas, as the viewer prints them (3 decimals)."
    r = results[(results.language == language) & (results.k == k) & results.corpora.isin(models)]
    return [f"{v:.3f}" for v in r.groupby(["emotion", "corpora"])["macro_f1"].mean()]

def write_notebook(path: Path):
    cells = [
        "import pandas as pd\nfrom speech_prefinetune.widgets import ResultsViewer\n"
        "results = pd.read_csv('results.csv', dtype={'speaker': str})",
        "viewer = ResultsViewer(results, k=2)\nviewer",
        "from speech_prefinetune.widgets import CorpusChooser\n"
        "tables = {c: pd.DataFrame({'corpus': c, 'utt_id': [f'{c}{i}' for i in range(n)], 'path': '/x.wav',\n"
        "                           'speaker': 's1', 'language': 'en', 'label': 'sad', 'split': 'train'})\n"
        "          for c, n in [('iemocap', 7), ('msp_improv', 5)]}\n"
        "chooser = CorpusChooser({'iemocap': 'data/iemocap', 'msp_improv': 'data/msp_improv'}, encoder='tiny-hubert',\n"
        "                        selected=['iemocap'], loader=lambda name, root: tables[name])\nchooser",
    ]
    nb = {"cells": [{"id": f"cell{i}", "cell_type": "code", "metadata": {}, "source": s, "execution_count": None,
                     "outputs": []} for i, s in enumerate(cells)],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def wait_for_server(url, token, proc, log, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None: pytest.fail(f"JupyterLab exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout}s:\n{log.read_text()[-3000:]}")

def stop_server(url, token, proc):
    "Shut down kernels and server through the API, then make sure the process is gone."
    try:
        req = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(req, timeout=10).close()
    except OSError: pass
    try: proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=10)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=10)

def run_all_cells(page, tries=3):
    "Run menu > Run All Cells; again if the first cell has not started within 20 s (a click can land too early)."
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    first_prompt = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first
    for attempt in range(tries):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']:not(.lm-mod-disabled)").click()
        try: page.wait_for_function("el => /\\[(\\*|\\d+)\\]/.test(el.textContent)",   # "[*]:" or "[1]:"
                                    arg=first_prompt.element_handle(), timeout=20 * MS)
        except PlaywrightTimeout:
            if attempt == tries - 1: raise
            page.keyboard.press("Escape")
        else: return

def test_results_viewer_in_jupyterlab():
    chromium = chromium_executable()
    if chromium is None: pytest.skip("Debian's chromium is not installed (run tests/setup_browser.sh)")
    from playwright.sync_api import sync_playwright, expect
    tmp = Path(tempfile.mkdtemp(prefix="spft_browser_"))
    work = tmp / "nb"; work.mkdir()
    results = small_results()
    results.to_csv(work / "results.csv", index=False)
    write_notebook(work / "widgets_demo.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "IPYTHONDIR": str(tmp / "ipython")}
    news = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True); news.write_text('{"fetchNews": "false"}')   # no news pop-up over the page
    log = tmp / "jupyterlab.log"
    with open(log, "w") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                                 f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                                 f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                                 *(["--allow-root"] if os.geteuid() == 0 else [])],
                                stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True)
    try:
        wait_for_server(url, token, proc, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], timeout=60 * MS)
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 1100})
                page.set_default_timeout(60 * MS)
                page.goto(f"{url}/lab/tree/widgets_demo.ipynb?token={token}", timeout=90 * MS)
                # the kernel is up when the status bar says "<kernel name> | Idle"
                page.get_by_role("button", name=re.compile(r"\| Idle$")).wait_for(timeout=120 * MS)
                page.locator(".jp-Notebook .jp-Cell").first.click()   # focus the notebook (makes it current)
                run_all_cells(page)
                table = page.locator(".spft-results-viewer .spft-results-table")
                expect(table).to_contain_text("k = 2", timeout=120 * MS)
                before = table.inner_text()
                chart_before = page.locator(".spft-results-viewer .spft-results-chart svg").inner_html()
                for cell in expected_cells(results, "en", 2, ["base", FULL]): assert cell in before, (cell, before)
                # interact: choose k = 8 in the dropdown, as a user would
                page.locator(".spft-k select").select_option(label="8")
                expect(table).to_contain_text("k = 8", timeout=60 * MS)
                after = table.inner_text()
                assert after != before
                for cell in expected_cells(results, "en", 8, ["base", FULL]): assert cell in after, (cell, after)
                chart = page.locator(".spft-results-viewer .spft-results-chart svg")
                expect(chart).to_contain_text("k = 8")
                assert chart.inner_html() != chart_before
                # the corpus chooser: tick MSP-IMPROV, the command and the sizes follow
                chooser = page.locator(".spft-corpus-chooser")
                command = chooser.locator("pre.spft-command")
                expect(command).to_contain_text("--corpora iemocap --roots corpora.toml --encoder tiny-hubert")
                chooser.locator(".widget-checkbox", has_text="msp_improv").locator("input").check()
                expect(command).to_contain_text("--corpora iemocap,msp_improv ")
                expect(command).to_contain_text("--out runs/iemocap+msp_improv")
                expect(chooser.locator("table.spft-table")).to_contain_text("msp_improv")
                page.locator(".spft-results-viewer").scroll_into_view_if_needed()
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT))
                chooser.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / "jupyterlab_corpus_chooser.png"))
            except Exception:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "jupyterlab_widgets_failure.png"))
                raise
            finally:
                browser.close()
        assert SCREENSHOT.stat().st_size > 10_000
    finally:
        stop_server(url, token, proc)
        shutil.rmtree(tmp, ignore_errors=True)
