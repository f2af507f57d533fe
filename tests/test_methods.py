"Frozen-feature methods end to end: `spft fewshot --method ...` into one store with `full`, then `spft report`."
import os, subprocess, sys
from pathlib import Path
import pandas as pd

from speech_prefinetune.cli import main as spft
from speech_prefinetune.config import TrialConfig
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune.fewshot import sample_fewshot_multiclass
from speech_prefinetune.grid import ModelRef, load_results
from speech_prefinetune.reproduce import plan_trials
from speech_prefinetune.widgets import ResultsViewer

from method_fixtures import CLI, ROOT, esd_root, fewshot_args   # noqa: F401 (esd_root: a fixture)





def chunks(cache):
    return sorted((Path(cache) / "pooled").glob("*/*/*.safetensors"))


def test_linear_then_full_then_report(esd_root, tmp_path, capsys):
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert spft(fewshot_args(esd_root, results, cache, "--method", "linear")) == 0
    assert len(chunks(cache)) == 1   # one speaker, computed once for every emotion, k and trial
    assert spft(fewshot_args(esd_root, results, cache, "--max-epochs", "1", "--patience", "1")) == 0
    df = load_results(results)
    assert sorted(df.model.unique()) == ["tiny-wav2vec2", "tiny-wav2vec2@linear"]
    cells = ["emotion", "k", "trial"]
    lin = df[df.model == "tiny-wav2vec2@linear"].sort_values(cells).reset_index(drop=True)
    full = df[df.model == "tiny-wav2vec2"].sort_values(cells).reset_index(drop=True)
    assert len(lin) == len(full) == 8
    assert lin.train_ids.tolist() == full.train_ids.tolist()   # paired: the same draws
    assert set(lin.method) == {"linear"} and full["method"].isna().all()   # full records are as before
    assert lin.config_id.nunique() == 1 and lin.config_id.iloc[0] != full.config_id.iloc[0]
    capsys.readouterr()
    assert spft(["report", str(results), "--out", str(tmp_path / "report"), "--formats", "svg", "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    assert "tiny-wav2vec2@linear" in printed
    methods = pd.read_csv(tmp_path / "report" / "methods.csv")
    assert sorted(methods.model.unique()) == ["tiny-wav2vec2", "tiny-wav2vec2@linear"]
    assert methods.groupby("model").n.sum().tolist() == [8, 8]
    assert pd.read_csv(tmp_path / "report" / "fig2.csv").n.sum() == 8   # the paper's tables: full trials only
    paired = pd.read_csv(tmp_path / "report" / "paired_methods.csv")
    assert paired.n.tolist() == [4, 4]   # per k: 2 emotions x 2 trials
    assert set(paired.model_a) == {"tiny-wav2vec2@linear"}
    assert "Adaptation methods" in (tmp_path / "report" / "report.html").read_text()
    # what reads the same store: the planner counts a method's own trials, the viewer shows full fine-tuning only
    ref = ModelRef("tiny-wav2vec2", "tiny-wav2vec2", "base")
    for config in (TrialConfig(max_epochs=1, patience=1), TrialConfig(method="linear")):
        plan = plan_trials([ref], results, ["0011"], ["angry", "sad"], [2, 4], trials=2, config=config)
        assert plan.done.tolist() == [4, 4] and plan.todo.tolist() == [0, 0]
    viewer = ResultsViewer(results)
    assert viewer.results.model.unique().tolist() == ["tiny-wav2vec2"] and len(viewer.results) == 8
    # a report of a full-only store into the same folder leaves no method tables behind
    full_only = tmp_path / "full_only"
    assert spft(fewshot_args(esd_root, full_only, cache, "--max-epochs", "1", "--patience", "1")) == 0
    capsys.readouterr()
    assert spft(["report", str(full_only), "--out", str(tmp_path / "report"), "--formats", "svg", "--n-boot", "200"]) == 0
    assert "@linear" not in capsys.readouterr().out
    assert not (tmp_path / "report" / "methods.csv").exists()
    assert not (tmp_path / "report" / "paired_methods.csv").exists()


def test_store_is_reused_by_another_process(esd_root, tmp_path):
    "A second process with another method and other k reads the pooled features: no new chunk is written."
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert spft(fewshot_args(esd_root, results, cache, "--method", "prototype")) == 0
    before = chunks(cache)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = fewshot_args(esd_root, results, cache, "--method", "linear", "--standardize")
    args[args.index("2,4")] = "8"
    subprocess.run([sys.executable, "-c", CLI, *args], env=env, check=True, capture_output=True)
    assert chunks(cache) == before
    df = load_results(results)
    assert sorted(df.model.unique()) == ["tiny-wav2vec2@linear-std", "tiny-wav2vec2@prototype"]


def test_same_seed_same_results(esd_root, tmp_path):
    "A rerun into a fresh store (and a fresh cache) gives the same records."
    runs = []
    for i in range(2):
        assert spft(fewshot_args(esd_root, tmp_path / f"r{i}", tmp_path / f"c{i}", "--method", "linear")) == 0
        runs.append(load_results(tmp_path / f"r{i}").drop(columns=["seconds"]).sort_values(["emotion", "k", "trial"]))
    pd.testing.assert_frame_equal(runs[0].reset_index(drop=True), runs[1].reset_index(drop=True))


def test_multiclass_beside_binary(esd_root, tmp_path, capsys):
    "`spft fewshot --task multiclass` into a store with binary rows: its own rows (NAME@full-mc), k clips per emotion."
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert spft(fewshot_args(esd_root, results, cache, "--max-epochs", "1", "--patience", "1")) == 0
    binary = load_results(results)
    args = fewshot_args(esd_root, results, cache, "--task", "multiclass", "--max-epochs", "2", "--patience", "2")
    del args[args.index("--emotions"):args.index("--emotions") + 2]   # the default: one cell (all) per k and trial
    args[args.index("2,4")] = "1,3"                                     # clips per emotion: any k >= 1
    assert spft(args) == 0
    assert spft([*args, "--method", "linear"]) == 0
    df = load_results(results)
    assert sorted(df.model.unique()) == ["tiny-wav2vec2", "tiny-wav2vec2@full-mc", "tiny-wav2vec2@linear-mc"]
    pd.testing.assert_frame_equal(df[df.model == "tiny-wav2vec2"][binary.columns].reset_index(drop=True), binary)
    esd, cells = load_corpus("esd", esd_root), ["k", "trial"]
    full = df[df.model == "tiny-wav2vec2@full-mc"].sort_values(cells).reset_index(drop=True)
    lin = df[df.model == "tiny-wav2vec2@linear-mc"].sort_values(cells).reset_index(drop=True)
    assert set(full.emotion) == set(lin.emotion) == {"all"}
    assert list(zip(full.k, full.trial)) == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert full.train_ids.tolist() == [sample_fewshot_multiclass(esd, "0011", k, t) for k, t in zip(full.k, full.trial)]
    assert lin.train_ids.tolist() == full.train_ids.tolist()   # paired across methods
    assert full.f1_pos.isna().all() and lin.f1_pos.isna().all() and binary.f1_pos.notna().all()
    assert full.macro_f1.between(0, 1).all() and (full.epochs <= 2).all() and (lin.epochs == 0).all()
    assert len({*full.config_id, *lin.config_id, *binary.config_id}) == 3
    before = {f: f.read_bytes() for f in results.glob("*/*.jsonl")}
    assert spft(args) == 0   # done: nothing runs, nothing is written
    assert {f: f.read_bytes() for f in results.glob("*/*.jsonl")} == before
    capsys.readouterr()
    assert spft([*args, "--emotions", "sad"]) == 2
    assert "a multiclass trial has emotion 'all'" in capsys.readouterr().err


def test_bench_methods_quick():
    "bench/methods.py --quick runs every method and its numbers agree with each other (never how fast anything ran)."
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "methods.py"), "--quick", "--threads", "1"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900, check=True).stdout
    rows = {line.split(" trials ")[0].strip(): line.split() for line in out.splitlines() if "mean_macro_f1" in line}
    warm = ("top:1", "top:2", "linear", "linear+std", "prototype", "opensmile", "opensmile-egemaps")
    assert sorted(rows) == sorted(["paper protocol (Trainer)", "full", "lora",
                                   *(f"{m} ({when})" for m in warm for when in ("cold", "warm"))])
    assert {r[r.index("trials") + 1] for name, r in rows.items() if name != "paper protocol (Trainer)"} == {"2"}
    f1 = {name: r[r.index("mean_macro_f1") + 1] for name, r in rows.items()}
    assert all(f1[f"{m} (cold)"] == f1[f"{m} (warm)"] for m in warm)   # a warm store gives the same trials
    assert all("paper" in r for name, r in rows.items() if name != "paper protocol (Trainer)")   # every ratio to it
    assert "trainable" in " ".join(rows["lora"]) and "trainable" not in " ".join(rows["linear (warm)"])
    assert "constant_rest_macro_f1: 0.4444" in out   # 1 of 5 emotions in each test split: (1 - 1/5) / (2 - 1/5)
