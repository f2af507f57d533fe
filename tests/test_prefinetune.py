"Pre-finetuning: the paper-defect guard, kill -9 resume with identical weights, validation metric, settings checks."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from speech_prefinetune.core import LABELS, UserError
from speech_prefinetune.model import MultiTaskClassifier
from speech_prefinetune.prefinetune import (CHECKPOINT, ClipBatches, PrefinetuneConfig, load_checkpoint, make_accelerator,
                                            prefinetune_tables, selection_metric, task_metrics, toy_tables, training_step)
from transformers import get_linear_schedule_with_warmup

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return toy_tables(tmp_path_factory.mktemp("wav"), tasks=("iemocap", "msp_improv", "mandarin_as"), n_train=10, n_valid=5)


def test_one_step_changes_exactly_the_heads_that_got_data(tables):
    "The paper's code never trained its heads (a plain dict, attached after the optimizer existed)."
    from speech_prefinetune.audio import AudioCache
    import tempfile
    tasks = {t: LABELS[t] for t in tables}
    model = MultiTaskClassifier.from_encoder("tiny-hubert", tasks, projector_dim=8).train()
    with tempfile.TemporaryDirectory() as d:
        audio = AudioCache(d).add([p for t in tables.values() for p in t.path], progress=False)
        paths = {t: list(tab.path) for t, tab in tables.items()}
        labels = {t: np.array([LABELS[t].index(l) for l in tab.label]) for t, tab in tables.items()}
        data = ClipBatches([("iemocap", [0, 1, 2], [0, 0, 0]), ("mandarin_as", [3, 4], [0, 0])], paths, labels, audio)
        acc = make_accelerator(PrefinetuneConfig(device="cpu"))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.1)
        sched = get_linear_schedule_with_warmup(opt, 0, 10)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        training_step(acc, model, opt, sched, [data[0], data[1]], {t: len(l) for t, l in tasks.items()})
    after = model.state_dict()
    heads_changed = {k.split(".")[1] for k in after if k.startswith("heads.") and not torch.equal(before[k], after[k])}
    assert heads_changed == {"iemocap", "mandarin_as"}          # msp_improv got no data (and weight decay must not touch it)
    assert not torch.equal(before["projector.weight"], after["projector.weight"])
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("encoder.feature_extractor."))


def test_validation_metric_is_mean_of_task_means():
    a = task_metrics([1.0] * 100, [0] * 100, [0] * 100, 2)      # big task
    b = task_metrics([3.0], [1], [0], 2)                         # small task
    assert selection_metric({"a": a, "b": b}, "loss") == pytest.approx(2.0)   # not (100 + 3) / 101
    assert b["macro_f1"] == 0.0 and a["accuracy"] == 1.0


def _run_code(out, wav, max_epochs):
    return (f"import torch; torch.set_num_threads(1)\n"
            f"from speech_prefinetune.prefinetune import *\n"
            f"tables = toy_tables({str(wav)!r}, n_train=24, n_valid=6)\n"
            f"cfg = PrefinetuneConfig(max_epochs={max_epochs}, patience=100, lr=1e-3, batch_size=4, device='cpu', keep_checkpoint=True,"
            f" max_clip_seconds=0.5, cache_dir={str(wav / 'cache')!r})\n"
            f"prefinetune_tables(tables, 'tiny-wav2vec2', {str(out)!r}, cfg, progress=False)\n")


def test_kill_9_then_resume_gives_identical_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    wav, a, b = tmp_path / "wav", tmp_path / "a", tmp_path / "b"
    subprocess.run([sys.executable, "-c", _run_code(a, wav, 4)], env=env, check=True, timeout=600)
    proc = subprocess.Popen([sys.executable, "-c", _run_code(b, wav, 4)], env=env)
    t0 = time.time()
    while not (b / CHECKPOINT).exists():
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.time() - t0 < 300; time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL); proc.wait()
    killed_at = load_checkpoint(b / CHECKPOINT)["state"]["epoch"]
    assert killed_at < 4, "the kill did not land mid-run"
    subprocess.run([sys.executable, "-c", _run_code(b, wav, 4)], env=env, check=True, timeout=600)
    ca, cb = load_checkpoint(a / CHECKPOINT), load_checkpoint(b / CHECKPOINT)
    assert ca["state"]["epoch"] == cb["state"]["epoch"] == 4
    for k, v in ca["model"].items(): assert torch.equal(v, cb["model"][k]), k
    for k, v in ca["optimizer"]["state"].items():
        for name, t in v.items(): assert torch.equal(t, cb["optimizer"]["state"][k][name]), (k, name)
    ha, hb = load_file(a / "heads.safetensors"), load_file(b / "heads.safetensors")
    assert all(torch.equal(ha[k], hb[k]) for k in ha)
    cols = [c for c in pd.read_csv(a / "metrics.csv").columns if "seconds" not in c]
    pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv")[cols], pd.read_csv(b / "metrics.csv")[cols])
    assert json.loads((b / "spft_model.json").read_text())["finished"] is True


def test_resume_refuses_other_settings_and_finished_runs_are_skipped(tables, tmp_path):
    cfg = PrefinetuneConfig(max_epochs=1, batch_size=8, device="cpu", keep_checkpoint=True, cache_dir=str(tmp_path / "cache"))
    two = {t: tables[t] for t in ("iemocap", "mandarin_as")}
    run = prefinetune_tables(two, "tiny-wavlm", tmp_path / "run", cfg, progress=False)
    meta = json.loads((run / "spft_model.json").read_text())
    assert meta["finished"] and meta["epochs"] == 1 and meta["corpus_set"] == "iemocap+mandarin_as"
    assert meta["settings"]["batch_size"] == 8 and set(meta["metrics"]) >= {"valid_metric", "iemocap/macro_f1", "mandarin_as/accuracy"}
    # a finished run is skipped, even with other settings
    prefinetune_tables(two, "tiny-wavlm", run, PrefinetuneConfig(max_epochs=1, batch_size=4, device="cpu"), progress=False)
    # an unfinished run with a checkpoint refuses a different batch size
    meta["finished"] = False; (run / "spft_model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="batch_size"):
        prefinetune_tables(two, "tiny-wavlm", run, PrefinetuneConfig(max_epochs=2, batch_size=4, device="cpu",
                                                                     cache_dir=str(tmp_path / "cache")), progress=False)


def test_progress_and_epoch_lines_go_through_tqdm_class(tables, tmp_path, monkeypatch):
    import io
    import speech_prefinetune.audio as audio_mod, speech_prefinetune.prefinetune as pf
    from tqdm.std import tqdm as std_tqdm
    bars, lines = [], []
    class Recording(std_tqdm):
        def __init__(self, *a, **k):
            self.silenced = k.get("disable", False); bars.append(self); super().__init__(*a, file=io.StringIO(), **k)
        @classmethod
        def write(cls, s, file=None, end="\n", nolock=False): lines.append(s)
    monkeypatch.setattr(pf, "tqdm", None); monkeypatch.setattr(audio_mod, "tqdm", None)  # module globals are not used
    cfg = PrefinetuneConfig(max_epochs=2, batch_size=8, device="cpu", max_steps_per_epoch=2)
    two = {t: tables[t] for t in ("iemocap", "mandarin_as")}
    prefinetune_tables(two, "tiny-wav2vec2", tmp_path / "run", cfg, tqdm_class=Recording)
    assert [b.desc for b in bars] == ["caching audio at 16000 Hz", "epoch 1", "epoch 2"]
    assert bars[0].n == 30 and [b.n for b in bars[1:]] == [2, 2] and not any(b.silenced for b in bars)
    assert [l.split(":")[0] for l in lines] == ["epoch 1", "epoch 2"] and "valid" in lines[0]
    bars.clear(); lines.clear()
    prefinetune_tables(two, "tiny-wav2vec2", tmp_path / "quiet", cfg, progress=False, tqdm_class=Recording)
    assert all(b.silenced for b in bars) and len(bars) == 3 and lines == []

def test_heterogeneous_steps_and_uniform_sampling_train(tables, tmp_path):
    cfg = PrefinetuneConfig(max_epochs=2, lr=1e-3, batch_seconds=2.0, tasks_per_step=3, task_sampling="uniform",
                            device="cpu", projector_dim=8, num_workers=1, cache_dir=str(tmp_path / "cache"))
    run = prefinetune_tables(tables, "tiny-wav2vec2", tmp_path / "run", cfg, progress=False)
    hist = pd.read_csv(run / "metrics.csv")
    assert list(hist.epoch) == [1, 2]
    expected = np.mean([hist[f"{t}/scaled_loss"] for t in tables], axis=0)
    np.testing.assert_allclose(hist.valid_metric, expected)
    m = MultiTaskClassifier.from_pretrained(run)
    assert m.projector.out_features == 8 and set(m.tasks) == set(tables)


def test_ddp_two_processes_on_cpu(tmp_path):
    "The same loop under torch.distributed (gloo, 2 CPU processes): half the steps per epoch, validation over all clips."
    script = tmp_path / "run.py"
    script.write_text("import sys, torch; torch.set_num_threads(1)\nfrom speech_prefinetune.prefinetune import *\n"
                      f"tables = toy_tables({str(tmp_path / 'wav')!r}, n_train=16, n_valid=7)\n"
                      "cfg = PrefinetuneConfig(max_epochs=2, patience=100, lr=1e-3, batch_size=4, device='cpu')\n"
                      "prefinetune_tables(tables, 'tiny-wav2vec2', sys.argv[1], cfg, progress=False)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                    str(script), str(tmp_path / "run")], env=env, check=True, timeout=600, capture_output=True)
    hist = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(hist.step) == [4, 8]                       # 2 tasks x 16 clips / 4 per batch = 8 batches, over 2 ranks
    assert (hist["iemocap/n"] == 7).all() and (hist["mandarin_as/n"] == 7).all()   # every validation clip, once
    assert MultiTaskClassifier.from_pretrained(tmp_path / "run").tasks["iemocap"] == LABELS["iemocap"]


# ---- end to end on the synthetic corpora, through the command line ----
import argparse
from speech_prefinetune.core import PREFINETUNE_CORPORA, corpus_set_name
from speech_prefinetune.prefinetune import add_prefinetune_command, all_subsets


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from speech_prefinetune.synth import synth_corpora
    out = tmp_path_factory.mktemp("synth")
    synth_corpora(out, size="tiny", corpora=PREFINETUNE_CORPORA)
    return out / "corpora.toml"


def spft(*argv):
    p = argparse.ArgumentParser(); sub = p.add_subparsers()
    add_prefinetune_command(sub)
    args = p.parse_args(["prefinetune", *map(str, argv)])
    return args.func(args)


FAST = ("--encoder", "tiny-wav2vec2", "--device", "cpu", "--quiet", "--batch-size", "8", "--lr", "1e-3")


def test_cli_single_corpus_and_pair(synth, tmp_path):
    assert spft("--corpora", "mandarin_as", "--roots", synth, "--out", tmp_path / "one", "--max-epochs", "2", *FAST) == 0
    m = MultiTaskClassifier.from_pretrained(tmp_path / "one")
    assert m.tasks == {"mandarin_as": LABELS["mandarin_as"]} and m.metadata["corpus_set"] == "mandarin_as"
    assert m.metadata["settings"]["max_epochs"] == 2 and m.metadata["finished"]
    # the paper's spellings work; the run folder is the model folder; dir/encoder is plain transformers
    assert spft("--corpora", "msp_podcast,iemocap_emotion", "--roots", synth, "--out", tmp_path / "pair", "--max-epochs", "1",
                "--max-steps-per-epoch", "3", "--projector-dim", "16", *FAST) == 0
    pair = MultiTaskClassifier.from_pretrained(tmp_path / "pair")
    assert list(pair.tasks) == ["iemocap", "msp_podcast"] and pair.metadata["corpus_set"] == "iemocap+msp_podcast"
    assert pair.metadata["corpora"] == ["iemocap", "msp_podcast"] and pair.projector.out_features == 16
    hist = pd.read_csv(tmp_path / "pair" / "metrics.csv")
    assert list(hist.step) == [3] and {"iemocap/macro_f1", "msp_podcast/scaled_loss"} <= set(hist.columns)
    from transformers import AutoModel
    assert type(AutoModel.from_pretrained(tmp_path / "pair" / "encoder")).__name__ == "Wav2Vec2Model"


def test_cli_all_subsets_then_skips_finished(synth, tmp_path):
    args = ("--corpora", "all-subsets", "--roots", synth, "--out", tmp_path, "--max-epochs", "1", "--max-steps-per-epoch", "1", *FAST)
    assert spft(*args) == 0
    names = sorted(p.name for p in tmp_path.iterdir() if (p / "spft_model.json").exists())
    assert names == sorted(corpus_set_name(s) for s in all_subsets()) and len(names) == 15
    full = json.loads((tmp_path / "iemocap+msp_improv+msp_podcast+mandarin_as" / "spft_model.json").read_text())
    assert sorted(full["tasks"]) == sorted(PREFINETUNE_CORPORA) and full["finished"]
    stamps = {n: (tmp_path / n / "heads.safetensors").stat().st_mtime_ns for n in names}
    assert spft(*args) == 0                                           # everything finished: nothing is retrained
    assert stamps == {n: (tmp_path / n / "heads.safetensors").stat().st_mtime_ns for n in names}
    assert (tmp_path / "audio_cache").is_dir()                        # one cache shared by the 15 runs


def test_cli_user_errors_name_the_culprit(synth, tmp_path):
    with pytest.raises(UserError, match="nowhere.toml"): spft("--corpora", "iemocap", "--roots", tmp_path / "nowhere.toml", "--out", tmp_path / "x", *FAST)
    with pytest.raises(UserError, match="timit"): spft("--corpora", "iemocap,timit", "--roots", synth, "--out", tmp_path / "x", *FAST)
    with pytest.raises(UserError, match="esd"): spft("--corpora", "esd", "--roots", synth, "--out", tmp_path / "x", *FAST)
    roots = tmp_path / "only.toml"; roots.write_text(f'iemocap = "{synth.parent / "IEMOCAP_full_release"}"\n')
    with pytest.raises(UserError, match="no root for mandarin_as"):
        spft("--corpora", "iemocap,mandarin_as", "--roots", roots, "--out", tmp_path / "x", *FAST)
    with pytest.raises(UserError, match="no-such-encoder"):
        spft("--corpora", "iemocap", "--roots", synth, "--out", tmp_path / "y", "--encoder", "/no-such-encoder", "--device", "cpu", "--quiet")
