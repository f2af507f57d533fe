"""Drive the widgets from Python: set values, click, and check commands, tables and chart data against pandas.

The small pieces (commands, sizes, the progress class, load errors and warnings, a failed run, bad viewer input,
`emotion_scores` against pandas) are pinned in nbs/09_widgets.ipynb; here: random tables against an oracle, runs in
background threads, the real loader and pre-finetuning, and the viewer's live updates against pandas."""
import time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from speech_prefinetune.core import CORPORA, LABELS, UserError, write_roots
from speech_prefinetune.widgets import CorpusChooser, ResultsViewer

FULL = "iemocap+msp_improv+msp_podcast+mandarin_as"

# ---------------------------------------------------------------- CorpusChooser over hand-made tables

def make_table(corpus, n, seed):
    "A random utterance table with the contract's columns (labels drawn from the corpus's vocabulary)."
    rng = np.random.default_rng(seed)
    labels = rng.choice(LABELS[corpus][:4], size=n)
    return pd.DataFrame({"corpus": corpus, "utt_id": [f"{corpus}{i:04d}" for i in range(n)],
                         "path": [f"/x/{corpus}/{i}.wav" for i in range(n)],
                         "speaker": rng.choice(["s1", "s2", "s3"], size=n), "language": "en", "label": labels,
                         "split": rng.choice(["train", "train", "valid", "test"], size=n)})

class CountingLoader:
    def __init__(self, tables, fail=()): self.tables, self.fail, self.calls = tables, set(fail), []
    def __call__(self, name, root):
        self.calls.append(name)
        if name in self.fail: raise UserError(f"{root}: corpus root not found")
        return self.tables[name]

@pytest.fixture
def tables():
    return {c: make_table(c, n, i) for i, (c, n) in enumerate([("iemocap", 40), ("msp_improv", 25),
                                                               ("msp_podcast", 30), ("mandarin_as", 20)])}

@pytest.fixture
def roots_file(tmp_path):
    for c in CORPORA: (tmp_path / "data" / c).mkdir(parents=True)
    return write_roots({c: f"data/{c}" for c in CORPORA if c != "msp_podcast"}, tmp_path / "corpora.toml")

def test_chooser_ticks_update_sizes_labels_and_command(tables, roots_file):
    loader = CountingLoader(tables)
    ch = CorpusChooser(roots_file, encoder="tiny-hubert", out="runs", loader=loader)
    assert ch.selected == () and ch.command is None and ch.run_button.disabled and len(ch.sizes) == 0
    assert "tick at least one" in ch.command_html.value
    ch.checkboxes["mandarin_as"].value = True
    ch.checkboxes["iemocap"].value = True
    assert ch.selected == ("iemocap", "mandarin_as")
    assert ch.command == (f"spft prefinetune --corpora iemocap,mandarin_as --roots {roots_file} "
                          "--encoder tiny-hubert --out runs/iemocap+mandarin_as")
    assert ch.command in ch.command_html.value and not ch.run_button.disabled and "write_roots" not in ch.command_html.value
    for c in ("iemocap", "mandarin_as"):
        t = tables[c]
        assert ch.sizes.loc[c, "utterances"] == len(t) and ch.sizes.loc[c, "speakers"] == t.speaker.nunique()
        for s in ("train", "valid", "test"): assert ch.sizes.loc[c, s] == (t.split == s).sum()
        got = ch.labels[ch.labels.corpus == c].set_index("label")["n"]
        assert list(got.index) == list(LABELS[c])                         # canonical order, zeros kept
        assert got.to_dict() == t.label.value_counts().reindex(LABELS[c], fill_value=0).to_dict()
    # the chart shows exactly the label table
    pd.testing.assert_frame_equal(ch.chart.data.reset_index(drop=True), ch.labels)
    assert ch.chart_html.value.startswith("<svg")
    # editing the encoder or out changes the command; un-ticking removes the corpus
    ch.encoder.value, ch.out.value = "facebook/hubert-base-ls960", "/tmp/my runs"
    assert ch.command.endswith("--encoder facebook/hubert-base-ls960 --out '/tmp/my runs/iemocap+mandarin_as'")
    ch.checkboxes["iemocap"].value = False
    assert ch.sizes.index.tolist() == ["mandarin_as"] and set(ch.labels.corpus) == {"mandarin_as"}
    assert "--corpora mandarin_as " in ch.command
    ch.checkboxes["iemocap"].value = True
    assert loader.calls == ["mandarin_as", "iemocap"]                       # each corpus loaded once (cached)

def test_chooser_run_button_trains_in_background_with_progress(tables, tmp_path):
    calls = []
    def trainer(corpora, roots, encoder, out, config=None, tqdm_class=None):
        calls.append((corpora, roots, encoder, Path(out), config))
        for _ in tqdm_class(range(7), desc="step", mininterval=0): time.sleep(0.005)
        Path(out).mkdir(parents=True); return out
    roots = {c: tmp_path / c for c in CORPORA}
    ch = CorpusChooser(roots, encoder="tiny-wavlm", out=tmp_path / "runs", config={"max_epochs": 1},
                       selected=["msp_podcast", "msp_improv"], loader=CountingLoader(tables), trainer=trainer)
    assert ch.command.startswith("spft prefinetune --corpora msp_improv,msp_podcast --roots corpora.toml ")
    assert "write_roots(roots, 'corpora.toml')" in ch.command_html.value
    ch.run_button.click()
    assert ch.thread is not None
    ch.thread.join(timeout=30)
    assert not ch.thread.is_alive() and ch.error is None
    assert calls == [(["msp_improv", "msp_podcast"], roots, "tiny-wavlm", tmp_path / "runs" / "msp_improv+msp_podcast",
                      {"max_epochs": 1})]
    assert ch.result == tmp_path / "runs" / "msp_improv+msp_podcast" and ch.result.is_dir()
    assert (ch.progress.value, ch.progress.max) == (7, 7) and "7/7" in ch.progress_label.value
    assert ch.status.value.startswith("done") and not ch.run_button.disabled

def test_two_choosers_running_at_once_report_to_their_own_bars(tables, tmp_path):
    import threading
    both = threading.Barrier(2, timeout=30)
    def trainer(corpora, roots, encoder, out, config=None, tqdm_class=None):
        n = 4 * len(corpora)
        both.wait()                                                     # the two runs overlap
        for _ in tqdm_class(range(n), desc="epoch 1", mininterval=0): time.sleep(0.002)
        tqdm_class.write(f"{'+'.join(corpora)}: {n} steps")
        both.wait()
        return out
    roots = {c: tmp_path / c for c in CORPORA}
    a = CorpusChooser(roots, out=tmp_path, selected=["iemocap"], loader=CountingLoader(tables), trainer=trainer)
    b = CorpusChooser(roots, out=tmp_path, selected=["iemocap", "msp_improv"], loader=CountingLoader(tables), trainer=trainer)
    ta, tb = a.run(background=True), b.run(background=True)
    ta.join(timeout=30); tb.join(timeout=30)
    assert a.error is None and b.error is None
    assert (a.progress.value, a.progress.max, b.progress.value, b.progress.max) == (4, 4, 8, 8)
    assert a.messages == ["iemocap: 4 steps"] and b.messages == ["iemocap+msp_improv: 8 steps"]

# ---------------------------------------------------------------- the real loader and pre-finetuning

def write_msp_podcast(root: Path, n_train=12, n_valid=6, n_test=3, sr=16000, seed=0):
    "A tiny MSP-PODCAST tree in its real layout: Audios/*.wav + Labels/labels_consensus.csv, one tone per emotion."
    import soundfile
    rng, rows = np.random.default_rng(seed), ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    (root / "Audios").mkdir(parents=True); (root / "Labels").mkdir()
    for i in range(n_train + n_valid + n_test):
        code = "NHAS"[i % 4]
        t = np.arange(int(sr * rng.uniform(0.4, 0.8))) / sr
        x = 0.3 * np.sin(2 * np.pi * (150 + 60 * "NHAS".index(code)) * t) + 0.01 * rng.normal(size=len(t))
        name = f"MSP-PODCAST_0001_{i:04d}.wav"
        soundfile.write(root / "Audios" / name, x.astype(np.float32), sr)
        rows.append(f"{name},{code},3.0,3.0,3.0,{10 + i % 3},Female,{'Train' if i < n_train else 'Development' if i < n_train + n_valid else 'Test1'}")
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(rows) + "\n")

def test_chooser_runs_real_prefinetune_with_widget_progress(tmp_path):
    import speech_prefinetune.prefinetune as pf
    from speech_prefinetune.corpora import load_corpus
    from speech_prefinetune.model import MultiTaskClassifier
    write_msp_podcast(tmp_path / "podcast")
    roots = write_roots({"msp_podcast": "podcast"}, tmp_path / "corpora.toml")
    config = pf.PrefinetuneConfig(max_epochs=1, batch_size=4, device="cpu", cache_dir=str(tmp_path / "cache"))
    tqdm_before = pf.tqdm
    ch = CorpusChooser(roots, encoder="tiny-wav2vec2", out=tmp_path / "runs", config=config, selected=["msp_podcast"])
    t = load_corpus("msp_podcast", tmp_path / "podcast")
    assert ch.sizes.loc["msp_podcast"].tolist() == [21, 3, 12, 6, 3] == [len(t), 3, 12, 6, 3]
    assert ch.command == (f"spft prefinetune --corpora msp_podcast --roots {roots} --encoder tiny-wav2vec2 "
                          f"--out {tmp_path / 'runs' / 'msp_podcast'}")
    ch.run_button.click()
    ch.thread.join(timeout=300)
    assert not ch.thread.is_alive() and ch.error is None, ch.status.value
    assert ch.result == tmp_path / "runs" / "msp_podcast"
    model = MultiTaskClassifier.from_pretrained(ch.result)
    assert model.metadata["corpora"] == ["msp_podcast"] and model.tasks["msp_podcast"] == LABELS["msp_podcast"]
    assert ch.progress.value == ch.progress.max == 3                # the last bar: epoch 1, 12 clips / batch 4
    assert any(m.startswith("epoch 1:") for m in ch.messages) and "epoch 1:" in ch.log_html.value
    assert pf.tqdm is tqdm_before                                   # the module's own tqdm is back

# ---------------------------------------------------------------- CorpusChooser over the synthetic corpora

def test_chooser_on_synthetic_corpora(tmp_path):
    from speech_prefinetune import synth
    from speech_prefinetune.corpora import load_corpus
    synth.synth_corpora(tmp_path / "corpora", size="tiny", seed=0, corpora=("iemocap", "mandarin_as"))
    roots = tmp_path / "corpora" / "corpora.toml"
    ch = CorpusChooser(roots, encoder="tiny-wav2vec2", out=tmp_path / "runs", selected=["iemocap", "mandarin_as"])
    assert ch.errors == {}
    for c in ("iemocap", "mandarin_as"):
        t = load_corpus(c, ch.roots[c])
        assert ch.sizes.loc[c, "utterances"] == len(t) > 0
        got = ch.labels[ch.labels.corpus == c].set_index("label")["n"]
        assert got[got > 0].to_dict() == t.label.value_counts().to_dict()
    assert f"--roots {roots}" in ch.command

# ---------------------------------------------------------------- ResultsViewer

@pytest.fixture
def results():
    rng, rows = np.random.default_rng(1), []
    for corpora in ("base", "iemocap", "mandarin_as", FULL):
        for speaker in ("0001", "0003", "0012", "0015", "0020"):
            for emotion in LABELS["esd"]:
                for k in (2, 4, 16):
                    for trial in range(3):
                        f1 = float(rng.uniform(0.2, 1.0))
                        rows.append(dict(model=corpora, corpora=corpora, speaker=speaker,
                                         language="zh" if speaker <= "0010" else "en", emotion=emotion, k=k,
                                         trial=trial, macro_f1=f1, accuracy=f1, train_ids="[]"))
    return pd.DataFrame(rows).sample(frac=1, random_state=0)     # row order must not matter

def direct(results, language, speaker, k, models):
    r = results[(results.language == language) & (results.k == k) & results.corpora.isin(models)]
    if speaker != "all": r = r[r.speaker == speaker]
    g = r.groupby(["emotion", "corpora"]).macro_f1
    return g.mean().unstack(), (g.std(ddof=1) / np.sqrt(g.size())).unstack(), g.size().unstack()

def check_viewer(v, results, language, speaker, k, models):
    mean, se, n = direct(results, language, speaker, k, models)
    assert list(v.table.index) == [e for e in LABELS["esd"]] and list(v.table.columns) == list(models)
    pd.testing.assert_frame_equal(v.table, mean.loc[list(LABELS["esd"]), list(models)], check_names=False)
    for row in v.data.itertuples():
        assert row.n == n.loc[row.emotion, row.corpora]
        assert np.isclose(row.se, se.loc[row.emotion, row.corpora], equal_nan=True)
    chart = v.chart.data
    assert np.allclose(chart.mean_f1, v.data.mean_f1) and (chart.emotion == v.data.emotion).all()
    assert np.allclose(chart.hi - chart.lo, 2 * v.data.se.fillna(0))
    assert f"k = {k}" in v.chart_html.value and f"speaker {speaker}" in v.table_html.value
    for x in mean.loc[:, list(models)].to_numpy().ravel(): assert f"{x:.3f}" in v.table_html.value

def test_viewer_defaults_and_live_updates(results):
    v = ResultsViewer(results)
    assert v.models.options == ("base", "iemocap", "mandarin_as", FULL)      # by set size, then paper order
    assert v.models.value == ("base", FULL) and v.language.value == "en" and v.k.value == 2
    assert v.speaker.options == ("all", "0012", "0015", "0020")
    check_viewer(v, results, "en", "all", 2, ("base", FULL))
    v.k.value = 16
    check_viewer(v, results, "en", "all", 16, ("base", FULL))
    v.speaker.value = "0015"
    check_viewer(v, results, "en", "0015", 16, ("base", FULL))
    assert set(v.data.n) == {3}
    v.models.value = ("mandarin_as", "iemocap", "base")
    check_viewer(v, results, "en", "0015", 16, ("mandarin_as", "iemocap", "base"))
    v.language.value = "zh"                                   # 0015 is English: the speaker falls back to all
    assert v.speaker.options == ("all", "0001", "0003") and v.speaker.value == "all"
    check_viewer(v, results, "zh", "all", 16, ("mandarin_as", "iemocap", "base"))
    v.speaker.value = "0003"; v.k.value = 4
    check_viewer(v, results, "zh", "0003", 4, ("mandarin_as", "iemocap", "base"))

def test_viewer_start_values(results):
    v = ResultsViewer(results, models=["iemocap"], language="zh", speaker="0001", k=4)
    check_viewer(v, results, "zh", "0001", 4, ("iemocap",))

def test_viewer_reads_paper_csv(tmp_path, results):
    paper = {"iemocap": "iemocap_emotion", "mandarin_as": "mandarin_aff", "msp_improv": "msp_improv",
             "msp_podcast": "msp_podcast"}
    csv = results.assign(
        corpora=results.corpora.map(lambda c: c if c == "base" else "-".join(paper[x] for x in c.split("+"))),
        language=results.language.map({"en": "English", "zh": "Mandarin"}),
        emotion=results.emotion.str.capitalize(), speaker=results.speaker.astype(int),
        test_accuracy=results.accuracy, test_macro_f1=results.macro_f1, test_weighted_f1=results.macro_f1)
    path = tmp_path / "scaled_esd_downstream.csv"
    csv[["corpora", "speaker", "language", "emotion", "k", "trial", "test_accuracy", "test_macro_f1",
         "test_weighted_f1"]].to_csv(path, index=False)
    v = ResultsViewer(path, k=16)
    assert v.models.value == ("base", FULL)
    check_viewer(v, results, "en", "all", 16, ("base", FULL))
