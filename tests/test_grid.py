"The trial grid: results store crash safety, kill -9 / resume exactness, executors, paired design, CLI."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
import torch

from speech_prefinetune.core import UserError
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune.fewshot import TrialConfig, sample_fewshot
from speech_prefinetune.cli import build_parser
from speech_prefinetune.grid import load_results, run_grid, shard_file
from speech_prefinetune.model import MultiTaskClassifier
from speech_prefinetune.synth import synth_corpora

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["macro_f1", "f1_pos", "accuracy", "balanced_accuracy", "weighted_f1", "valid_macro_f1", "best_epoch", "epochs"]
KEY = ["model", "speaker", "emotion", "k", "trial", "seed"]
CLI = "import sys; from speech_prefinetune.cli import main; sys.exit(main(sys.argv[1:]))"   # `spft`


@pytest.fixture(scope="module")
def esd_root(tmp_path_factory):
    torch.set_num_threads(1)
    return synth_corpora(tmp_path_factory.mktemp("corpora"), size="tiny", corpora=("esd",))["esd"]


@pytest.fixture(scope="module")
def esd(esd_root): return load_corpus("esd", esd_root)


def spft_fewshot(*args):
    "`spft fewshot ARGS` in a fresh process (the subcommand as the CLI registers it)."
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CLI, "fewshot", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def comparable(df):
    return df.sort_values(KEY).reset_index(drop=True)[KEY + ["corpora", "language", "train_ids", "config_id"] + METRICS]


def test_grid_rows_schema_and_paired_design(esd, tmp_path):
    df = run_grid(["tiny-wav2vec2", "hub=tiny-hubert"], table=esd, results=tmp_path / "r", speakers="0002,0011",
                  emotions="angry,neutral", k=(2, 4), trials=2, max_epochs=2, patience=2, threads=1, progress=False)
    assert len(df) == 2 * 2 * 2 * 2 * 2
    for c in ("model", "corpora", "speaker", "language", "emotion", "k", "trial", "macro_f1", "accuracy", "train_ids",
              "f1_pos", "balanced_accuracy", "best_epoch", "epochs", "seconds"):
        assert c in df.columns
    assert set(df.model) == {"tiny-wav2vec2", "hub"} and set(df.corpora) == {"base"}
    assert dict(zip(df.speaker, df.language)) == {"0002": "zh", "0011": "en"}
    # paired design: every model trained on exactly the same clips, which are the sampler's
    a = df[df.model == "tiny-wav2vec2"].set_index(["speaker", "emotion", "k", "trial"]).sort_index()
    b = df[df.model == "hub"].set_index(["speaker", "emotion", "k", "trial"]).sort_index()
    assert a.index.equals(b.index) and a.train_ids.tolist() == b.train_ids.tolist()
    for (spk, emo, k, t), ids in a.train_ids.items(): assert ids == sample_fewshot(esd, spk, emo, k, t)
    assert sorted(p.relative_to(tmp_path / "r").as_posix() for p in (tmp_path / "r").glob("*/*.jsonl")) == [
        "hub/0002.jsonl", "hub/0011.jsonl", "tiny-wav2vec2/0002.jsonl", "tiny-wav2vec2/0011.jsonl"]


def test_kill_9_then_rerun_reproduces_an_uninterrupted_run_exactly(esd_root, tmp_path):
    args = ["--models", "tiny-wav2vec2", "--esd", esd_root, "--speakers", "0011", "--k", "2,4", "--trials", "2",
            "--max-epochs", "3", "--patience", "2", "--threads", "1", "--quiet"]
    whole = run_grid("tiny-wav2vec2", esd_root, tmp_path / "whole", speakers="0011", k="2,4", trials=2, max_epochs=3,
                     patience=2, threads=1, progress=False)                 # uninterrupted, in this process
    f = shard_file(tmp_path / "crash", "tiny-wav2vec2", "0011")
    victim = spft_fewshot(*args, "--results", tmp_path / "crash")
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None and (not f.exists() or f.read_bytes().count(b"\n") < 3):
        time.sleep(0.02)
    assert victim.poll() is None, "the grid finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL); victim.wait()
    done = f.read_bytes().count(b"\n")
    assert 3 <= done < 20
    with open(f, "ab") as h: h.write(b'{"model": "tiny-wav2vec2", "macro_f1": 0.')     # and a torn write on top
    assert len(load_results(tmp_path / "crash")) == done
    again = spft_fewshot(*args, "--results", tmp_path / "crash")
    assert again.wait(timeout=300) == 0, again.stderr.read()
    lines = f.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == 20                        # no duplicate, no torn line left
    recs = [json.loads(l) for l in lines[:-1]]
    assert len({tuple(r[k] for k in KEY) for r in recs}) == 20
    assert len(whole) == 20
    pd.testing.assert_frame_equal(comparable(load_results(tmp_path / "crash")), comparable(whole))
    run_grid("tiny-wav2vec2", esd_root, tmp_path / "crash", speakers="0011", k="2,4", trials=2, max_epochs=3,
             patience=2, threads=1, progress=False)                        # nothing left to do
    assert f.read_bytes().count(b"\n") == 20


def test_local_workers_and_submitit_local_executor_match_in_process(esd_root, esd, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))                            # submitit's job processes import the package
    kw = dict(speakers="0001,0012", emotions="happy,sad", k=2, trials=1, max_epochs=2, patience=2, threads=1, progress=False)
    ref = run_grid(["tiny-wav2vec2"], esd_root, tmp_path / "inproc", **kw)
    pool = run_grid(["tiny-wav2vec2"], esd_root, tmp_path / "pool", workers=2, **kw)
    sub = run_grid(["tiny-wav2vec2"], esd_root, tmp_path / "submitit", executor="submitit-local", cache_dir=tmp_path / "c", **kw)
    assert len(ref) == 4
    pd.testing.assert_frame_equal(comparable(pool), comparable(ref))
    pd.testing.assert_frame_equal(comparable(sub), comparable(ref))
    assert (tmp_path / "submitit" / ".submitit").is_dir()                  # the jobs really went through submitit
    assert len(load_results(tmp_path / "submitit")) == 4                   # its logs are not mistaken for results
    assert {p.parent.name for p in (tmp_path / "c" / "features").rglob("*.safetensors")} == {"0001", "0012"}  # its --cache-dir
    assert (tmp_path / "c" / "audio" / "sr16000").is_dir()


def test_pretrained_folder_names_and_corpora(esd, tmp_path):
    m = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"msp_podcast": ("neutral", "happy", "sad")})
    m.save_pretrained(tmp_path / "models" / "msp_podcast", metadata={"corpora": ["msp_podcast"]})
    df = run_grid([tmp_path / "models" / "msp_podcast", "tiny-wav2vec2"], table=esd, results=tmp_path / "r",
                  speakers="0012", emotions="surprise", k=2, trials=1, max_epochs=1, threads=1, progress=False)
    assert dict(zip(df.model, df.corpora)) == {"msp_podcast": "msp_podcast", "tiny-wav2vec2": "base"}


def test_user_errors(esd, esd_root, tmp_path):
    base = dict(table=esd, results=tmp_path / "r", speakers="0011", k=2, trials=1, max_epochs=1, progress=False)
    with pytest.raises(UserError, match="emotion 'joy'"): run_grid(["tiny-wav2vec2"], emotions="joy", **base)
    with pytest.raises(UserError, match="k=3"): run_grid(["tiny-wav2vec2"], **{**base, "k": 3})
    with pytest.raises(UserError, match="k=64 needs 32"): run_grid(["tiny-wav2vec2"], **{**base, "k": 64})
    with pytest.raises(UserError, match="same name"): run_grid(["a=tiny-wav2vec2", "a=tiny-hubert"], **base)
    with pytest.raises(UserError, match="executor 'pbs'"): run_grid(["tiny-wav2vec2"], executor="pbs", **base)
    run_grid(["tiny-wav2vec2"], emotions="sad", **base)
    with pytest.raises(UserError, match="other trial settings"):            # never mix results of other settings
        run_grid(["tiny-wav2vec2"], emotions="sad", **{**base, "max_epochs": 2})
    p = build_parser()
    a = p.parse_args(["fewshot", "--models", "tiny-wav2vec2", "--esd", str(tmp_path / "no-esd"), "--results", str(tmp_path / "x")])
    with pytest.raises(UserError, match="no-esd"): a.func(a)
    with pytest.raises(SystemExit): p.parse_args(["fewshot", "--models", "x", "--esd", "y", "--results", "z", "--executor", "pbs"])


def test_disk_cache_is_shared_by_models_with_one_cnn_and_changes_nothing(esd_root, tmp_path):
    kw = dict(speakers="0001", emotions="angry", k=2, trials=2, max_epochs=2, patience=2, threads=1, progress=False)
    plain = run_grid(["a=tiny-wav2vec2"], esd_root, tmp_path / "plain", **kw)
    cached = run_grid(["a=tiny-wav2vec2", "b=tiny-wav2vec2"], esd_root, tmp_path / "cached", cache_dir=tmp_path / "cache", **kw)
    feats = list((tmp_path / "cache" / "features").rglob("*.safetensors"))
    assert {(f.parent.parent.name, f.parent.name) for f in feats} == {(MultiTaskClassifier.from_encoder(
        "tiny-wav2vec2", {"x": ("a", "b")}).cnn_fingerprint(), "0001")}   # one CNN fingerprint, one speaker folder
    assert (tmp_path / "cache" / "audio").is_dir()                         # decoded audio kept for other CNNs
    pd.testing.assert_frame_equal(comparable(cached[cached.model == "a"]), comparable(plain))
    assert cached[cached.model == "b"].macro_f1.tolist() == cached[cached.model == "a"].macro_f1.tolist()


def test_stacked_grid_resumes_whole_stacks_and_reproduces_an_uninterrupted_run(esd_root, tmp_path):
    "A stacked shard cut after some of its lines (what kill -9 leaves, torn line included) completes to the same rows."
    kw = dict(speakers="0011", emotions="angry,sad,happy", k="2,4", trials=2, max_epochs=3, patience=2, threads=1,
              progress=False, config=TrialConfig(stack=4, lr=1e-3))
    whole = run_grid("tiny-wav2vec2", esd_root, tmp_path / "whole", **kw)
    assert len(whole) == 12 and set(whole.config_id) == {TrialConfig(stack=4, lr=1e-3, max_epochs=3, patience=2).config_id()}
    lines = shard_file(tmp_path / "whole", "tiny-wav2vec2", "0011").read_bytes().split(b"\n")[:-1]
    f = shard_file(tmp_path / "cut", "tiny-wav2vec2", "0011"); f.parent.mkdir(parents=True)
    f.write_bytes(b"\n".join(lines[:5]) + b"\n" + lines[5][:40])           # 5 finished trials, a stack half written
    again = run_grid("tiny-wav2vec2", esd_root, tmp_path / "cut", **kw)
    pd.testing.assert_frame_equal(comparable(again), comparable(whole))
    assert f.read_bytes().count(b"\n") == 12
    one_at_a_time = run_grid("tiny-wav2vec2", esd_root, tmp_path / "single", **{**kw, "config": TrialConfig(lr=1e-3)})
    assert set(one_at_a_time.config_id).isdisjoint(set(whole.config_id))   # the two engines' results are not mixed
    with pytest.raises(UserError, match="other trial settings"):
        run_grid("tiny-wav2vec2", esd_root, tmp_path / "whole", **{**kw, "config": TrialConfig(lr=1e-3)})
    with pytest.raises(UserError, match="stack=0"):
        run_grid("tiny-wav2vec2", esd_root, tmp_path / "x", **{**kw, "config": TrialConfig(stack=0)})


def test_grid_with_max_seconds_cuts_every_clip_and_keeps_its_own_settings(esd_root, tmp_path, monkeypatch):
    "`spft fewshot --max-seconds` through the CLI, and the same grid as a submitit job: one config, cut features only."
    from safetensors.torch import load_file
    args = ["--models", "tiny-wav2vec2", "--esd", esd_root, "--speakers", "0011", "--emotions", "angry", "--k", "2",
            "--trials", "2", "--max-epochs", "2", "--patience", "2", "--threads", "1", "--quiet"]
    p = spft_fewshot(*args, "--results", tmp_path / "r", "--cache-dir", tmp_path / "cache", "--max-seconds", "0.6")
    assert p.wait(timeout=300) == 0, p.stderr.read()
    df = load_results(tmp_path / "r")
    assert len(df) == 2 and set(df.config_id) == {TrialConfig(max_epochs=2, patience=2, max_seconds=0.6).config_id()}
    model = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"x": ("a", "b")})
    assert [f.name for f in (tmp_path / "cache" / "features").iterdir()] == [f"{model.cnn_fingerprint()}-start9600"]
    frames = int(model.encoder._get_feat_extract_output_lengths(torch.tensor(9600)))
    lengths = [t.shape[0] for f in (tmp_path / "cache" / "features").rglob("*.safetensors") for t in load_file(f).values()]
    assert max(lengths) == frames                                          # long clips were cut, none is longer
    with pytest.raises(UserError, match="other trial settings"):          # whole-clip trials never join a cut store
        run_grid("tiny-wav2vec2", esd_root, tmp_path / "r", speakers="0011", emotions="angry", k=2, trials=2, max_epochs=2,
                 patience=2, threads=1, progress=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))                            # submitit's job process imports the package
    sub = run_grid("tiny-wav2vec2", esd_root, tmp_path / "sub", speakers="0011", emotions="angry", k=2, trials=2, max_epochs=2,
                   patience=2, threads=1, progress=False, executor="submitit-local", cache_dir=tmp_path / "cache2",
                   config=TrialConfig(max_seconds=0.6))
    pd.testing.assert_frame_equal(comparable(sub), comparable(df))         # the job carried the cut in its TrialConfig
    assert [f.name for f in (tmp_path / "cache2" / "features").iterdir()] == [f"{model.cnn_fingerprint()}-start9600"]


def test_default_cache_is_the_shared_root(esd, tmp_path, monkeypatch):
    monkeypatch.setenv("SPFT_CACHE_DIR", str(tmp_path / "shared"))
    run_grid(["tiny-wav2vec2"], table=esd, results=tmp_path / "r", speakers="0012", emotions="sad", k=2, trials=1,
             max_epochs=1, threads=1, progress=False)
    assert [p.parent.name for p in (tmp_path / "shared" / "features").rglob("*.safetensors")] == ["0012"] * 2  # valid+test, train
    assert (tmp_path / "shared" / "audio" / "sr16000").is_dir()


@pytest.mark.parametrize("mask", [0o002, 0o077])
def test_every_file_and_folder_written_honours_the_umask(esd, tmp_path, mask):
    old = os.umask(mask)
    try: run_grid(["tiny-wav2vec2"], table=esd, results=tmp_path / "r", speakers="0011", emotions="sad", k=2, trials=1,
                  max_epochs=1, threads=1, progress=False, cache_dir=tmp_path / "c")
    finally: os.umask(old)
    made = [p for top in ("r", "c") for p in [tmp_path / top, *(tmp_path / top).rglob("*")]]
    kinds = {(p.is_dir(), p.suffix) for p in made}
    assert {(False, ".jsonl"), (False, ".safetensors"), (True, "")} <= kinds      # shards, feature chunks, folders
    for p in made:
        assert p.stat().st_mode & 0o777 == (0o777 if p.is_dir() else 0o666) & ~mask, (p, oct(p.stat().st_mode))
