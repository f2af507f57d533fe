"""Pre-finetuning: the paper-defect guard, kill -9 resume with identical weights, safe checkpoints, validation metric,
the encoder's preprocessor, batches by audio-seconds, gradient checkpointing, umask, settings checks; the methods
(top:N, lora with peft adapters and a merged encoder, kill -9 resume of a lora run) and the SUPERB layer weights."""
import json, os, pickle, signal, subprocess, sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from speech_prefinetune.core import LABELS, UserError
import speech_prefinetune.prefinetune as pf
from speech_prefinetune.audio import open_audio_cache
from speech_prefinetune.model import MultiTaskClassifier, load_preprocessor, prepare_batch
from speech_prefinetune.prefinetune import (CHECKPOINT, ClipBatches, PrefinetuneConfig, load_checkpoint, make_accelerator,
                                            prefinetune_tables, scaled_loss, training_step)
from speech_prefinetune.synth import toy_tables
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
        data = ClipBatches([("iemocap", [0, 1, 2], [0, 0, 0]), ("mandarin_as", [3, 4], [0, 0])], paths, labels, audio,
                           model.preprocessor)
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


def _run_code(out, wav, max_epochs, method="full"):
    return (f"import torch; torch.set_num_threads(1)\n"
            f"from speech_prefinetune.prefinetune import PrefinetuneConfig, prefinetune_tables\n"
            f"from speech_prefinetune.synth import toy_tables\n"
            f"tables = toy_tables({str(wav)!r}, n_train=24, n_valid=6)\n"
            f"cfg = PrefinetuneConfig(max_epochs={max_epochs}, patience=100, lr=1e-3, batch_size=4, device='cpu', keep_checkpoint=True,"
            f" max_seconds=0.5, cache_dir={str(wav / 'cache')!r}, method={method!r})\n"
            f"prefinetune_tables(tables, 'tiny-wav2vec2', {str(out)!r}, cfg, progress=False)\n")


@pytest.mark.parametrize("method", ["full", "lora"])
def test_kill_9_then_resume_gives_identical_weights(tmp_path, method):
    "A lora run's checkpoint holds only adapters and heads: resuming adds the adapters again, then loads them."
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    wav, a, b = tmp_path / "wav", tmp_path / "a", tmp_path / "b"
    subprocess.run([sys.executable, "-c", _run_code(a, wav, 4, method)], env=env, check=True, timeout=600)
    proc = subprocess.Popen([sys.executable, "-c", _run_code(b, wav, 4, method)], env=env)
    t0 = time.time()
    while not (b / CHECKPOINT).exists():
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.time() - t0 < 300; time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL); proc.wait()
    killed_at = load_checkpoint(b / CHECKPOINT)["state"]["epoch"]
    assert killed_at < 4, "the kill did not land mid-run"
    subprocess.run([sys.executable, "-c", _run_code(b, wav, 4, method)], env=env, check=True, timeout=600)
    ca, cb = load_checkpoint(a / CHECKPOINT), load_checkpoint(b / CHECKPOINT)
    assert ca["model"].keys() == cb["model"].keys() and (method == "full") == any("feature_projection" in k for k in ca["model"])
    assert (method == "lora") == (ca["frozen"] is not None) and any("lora_B" in k for k in ca["model"]) == (method == "lora")
    plain = torch.load(b / CHECKPOINT, map_location="cpu", weights_only=True)      # tensors and plain values only
    assert plain["sampler"] == cb["sampler"] and isinstance(plain["rng"][0]["numpy"]["keys"], torch.Tensor)
    assert ca["state"]["epoch"] == cb["state"]["epoch"] == 4
    for k, v in ca["model"].items(): assert torch.equal(v, cb["model"][k]), k
    for k, v in ca["optimizer"]["state"].items():
        for name, t in v.items(): assert torch.equal(t, cb["optimizer"]["state"][k][name]), (k, name)
    for f in ("heads.safetensors", "encoder/model.safetensors") + (("adapter/adapter_model.safetensors",) if method == "lora" else ()):
        ha, hb = load_file(a / f), load_file(b / f)
        assert ha.keys() == hb.keys() and all(torch.equal(ha[k], hb[k]) for k in ha), f
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
    assert [l.split(":")[0] for l in lines] == ["plan", "epoch 1", "epoch 2"] and "valid" in lines[1]
    assert "2 steps/epoch, batches of 8 clips" in lines[0] and "estimated peak memory" in lines[0]
    bars.clear(); lines.clear()
    prefinetune_tables(two, "tiny-wav2vec2", tmp_path / "quiet", cfg, progress=False, tqdm_class=Recording)
    assert all(b.silenced for b in bars) and len(bars) == 3 and lines == []

def test_heterogeneous_steps_and_uniform_sampling_train(tables, tmp_path):
    cfg = PrefinetuneConfig(max_epochs=2, lr=1e-3, batch_seconds=2.0, max_seconds=1.0, tasks_per_step=3, task_sampling="uniform",
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
    script.write_text("import sys, torch; torch.set_num_threads(1)\nfrom speech_prefinetune.prefinetune import PrefinetuneConfig, prefinetune_tables\n"
                      "from speech_prefinetune.synth import toy_tables\n"
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
from speech_prefinetune.prefinetune import all_subsets
from speech_prefinetune.cli import add_prefinetune_command


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
    assert not (tmp_path / "audio_cache").exists()                    # one cache shared by the 15 runs (and by other commands):
    assert (Path(os.environ["SPFT_CACHE_DIR"]) / "audio" / "sr16000").is_dir()   # the cache root


def test_cli_user_errors_name_the_culprit(synth, tmp_path):
    with pytest.raises(UserError, match="nowhere.toml"): spft("--corpora", "iemocap", "--roots", tmp_path / "nowhere.toml", "--out", tmp_path / "x", *FAST)
    with pytest.raises(UserError, match="timit"): spft("--corpora", "iemocap,timit", "--roots", synth, "--out", tmp_path / "x", *FAST)
    with pytest.raises(UserError, match="no root for esd"): spft("--corpora", "esd", "--roots", synth, "--out", tmp_path / "x", *FAST)
    roots = tmp_path / "only.toml"; roots.write_text(f'iemocap = "{synth.parent / "IEMOCAP_full_release"}"\n')
    with pytest.raises(UserError, match="no root for mandarin_as"):
        spft("--corpora", "iemocap,mandarin_as", "--roots", roots, "--out", tmp_path / "x", *FAST)
    with pytest.raises(UserError, match="no-such-encoder"):
        spft("--corpora", "iemocap", "--roots", synth, "--out", tmp_path / "y", "--encoder", "/no-such-encoder", "--device", "cpu", "--quiet")


def test_designs_over_any_registered_corpora(tmp_path):
    "A subset design over corpora beyond the paper's four: one run per set, tasks named after the corpora, rank order."
    from speech_prefinetune.synth import synth_corpora
    from speech_prefinetune.prefinetune import design_sets, prefinetune_sets
    synth_corpora(tmp_path / "c", size="tiny", corpora=("iemocap", "crema_d", "ravdess"))
    cfg = PrefinetuneConfig(max_epochs=1, max_steps_per_epoch=1, batch_size=8, lr=1e-3, device="cpu")
    sets = design_sets("leave-one-out:ravdess,crema_d,iemocap")
    assert sets == [("crema_d", "ravdess"), ("iemocap", "ravdess"), ("iemocap", "crema_d")]
    runs = prefinetune_sets(sets[:2], tmp_path / "c" / "corpora.toml", "tiny-wav2vec2", tmp_path / "runs", cfg, progress=False)
    assert [r.name for r in runs] == ["crema_d+ravdess", "iemocap+ravdess"]
    m = MultiTaskClassifier.from_pretrained(runs[0])
    assert m.tasks == {"crema_d": LABELS["crema_d"], "ravdess": LABELS["ravdess"]}
    assert m.metadata["corpora"] == ["crema_d", "ravdess"] and m.metadata["corpus_set"] == "crema_d+ravdess"


def test_shared_head_trains_one_head_over_the_common_labels(tables, tmp_path):
    "head='shared': one head `common` over the common emotions of all tasks; per-task metrics and sampling stay."
    from speech_prefinetune.core import COMMON_LABELS, common_map
    cfg = PrefinetuneConfig(max_epochs=2, patience=100, lr=1e-3, batch_size=4, max_seconds=0.5, device="cpu",
                            cache_dir=str(tmp_path / "cache"), head="shared")
    run = prefinetune_tables(tables, "tiny-wav2vec2", tmp_path / "shared", cfg, progress=False)
    m = MultiTaskClassifier.from_pretrained(run)
    used = {c for t in tables for c in common_map(t).values()}
    assert m.tasks == {"common": tuple(c for c in COMMON_LABELS if c in used)}
    assert set(load_file(run / "heads.safetensors")) == {"heads.common.weight", "heads.common.bias"}
    hist = pd.read_csv(run / "metrics.csv")
    assert {f"{t}/scaled_loss" for t in tables} <= set(hist.columns) and m.metadata["settings"]["head"] == "shared"
    assert m.metadata["corpora"] == ["iemocap", "msp_improv", "mandarin_as"]
    per_corpus = prefinetune_tables(tables, "tiny-wav2vec2", tmp_path / "own", replace(cfg, head="per_corpus"),
                                    progress=False)
    assert set(MultiTaskClassifier.from_pretrained(per_corpus).tasks) == set(tables)
    with pytest.raises(UserError, match="other settings"):   # a checkpoint of one head mode does not resume the other
        cfg_keep = replace(cfg, keep_checkpoint=True, max_epochs=1)
        prefinetune_tables(tables, "tiny-wav2vec2", tmp_path / "k", cfg_keep, progress=False)
        (tmp_path / "k" / "spft_model.json").unlink()
        prefinetune_tables(tables, "tiny-wav2vec2", tmp_path / "k", replace(cfg_keep, head="per_corpus"), progress=False)


# ---- safe resume: a planted pickle is refused, never run ----
class _Planted:
    "What an attacker could put in a checkpoint: unpickling it would create `marker`."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (open, (self.marker, "w"))


@pytest.mark.parametrize("raw", [False, True], ids=["torch.save-zip", "raw-pickle"])
def test_resume_refuses_a_planted_pickle_and_runs_nothing(tables, tmp_path, raw):
    run, marker = tmp_path / "run", tmp_path / "PWNED"
    run.mkdir()
    evil = dict(model={}, optimizer=_Planted(marker), state=dict(epoch=1))
    if raw: (run / CHECKPOINT).write_bytes(pickle.dumps(evil))
    else: torch.save(evil, run / CHECKPOINT)
    assert not marker.exists()
    two = {t: tables[t] for t in ("iemocap", "mandarin_as")}
    with pytest.raises(UserError, match=CHECKPOINT) as e:
        prefinetune_tables(two, "tiny-wav2vec2", run, PrefinetuneConfig(max_epochs=1, batch_size=8, device="cpu"), progress=False)
    assert "refused" in str(e.value) and not marker.exists()
    with pytest.raises(UserError, match="refused"): load_checkpoint(run / CHECKPOINT)
    assert not marker.exists()
    with pytest.raises(Exception): torch.load(run / CHECKPOINT, weights_only=True)   # the oracle: torch's safe loader refuses it too


# ---- the encoder's own preprocessor decides rate and normalisation, and is saved with the model ----
def _encoder_folder(path, do_normalize, sampling_rate):
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor
    from speech_prefinetune.model import tiny_config
    torch.manual_seed(0)
    HubertModel(HubertConfig(**tiny_config("tiny-hubert").to_diff_dict())).save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sampling_rate, padding_value=0.0, do_normalize=do_normalize,
                             return_attention_mask=True).save_pretrained(path)
    return path


def test_the_encoder_preprocessor_sets_rate_normalisation_and_is_saved(tables, tmp_path):
    from transformers import AutoFeatureExtractor, AutoModel
    enc = _encoder_folder(tmp_path / "hubert-like", do_normalize=False, sampling_rate=8000)
    cfg = PrefinetuneConfig(max_epochs=1, batch_size=8, device="cpu", cache_dir=str(tmp_path / "cache"))
    two = {t: tables[t] for t in ("iemocap", "mandarin_as")}
    run = prefinetune_tables(two, str(enc), tmp_path / "run", cfg, progress=False)
    assert (tmp_path / "cache" / "audio" / "sr8000").is_dir() and not (tmp_path / "cache" / "audio" / "sr16000").exists()
    fe = AutoFeatureExtractor.from_pretrained(run / "encoder")            # the saved model folder is plain transformers
    assert fe.do_normalize is False and fe.sampling_rate == 8000
    assert type(AutoModel.from_pretrained(run / "encoder")).__name__ == "HubertModel"
    m = MultiTaskClassifier.from_pretrained(run)
    assert m.sampling_rate == 8000 and m.preprocessor.do_normalize is False
    # what the loop feeds equals the feature extractor's own output (no per-clip normalisation for this encoder)
    audio = open_audio_cache(tmp_path / "cache", sr=8000)
    paths = {"iemocap": list(two["iemocap"].path)}
    b = ClipBatches([("iemocap", [0, 1], [0, 0])], paths, {"iemocap": np.array([0, 1])}, audio, m.preprocessor)[0]
    ref = fe([audio[paths["iemocap"][0]], audio[paths["iemocap"][1]]], sampling_rate=8000, padding=True, return_tensors="pt")
    torch.testing.assert_close(b["input_values"], ref["input_values"])
    assert abs(float(b["input_values"][0][b["attention_mask"][0].bool()].std()) - 1.0) > 0.2   # not normalised


# ---- batches bounded by audio-seconds (default) and the old count path ----
def test_batches_by_seconds_by_default_and_exact_counts_on_request(tables, tmp_path):
    two = {t: tables[t] for t in ("iemocap", "mandarin_as")}
    cfg = PrefinetuneConfig(max_epochs=1, batch_seconds=2.0, max_seconds=0.8, eval_batch_seconds=1.5, max_eval_seconds=1.0,
                            device="cpu", cache_dir=str(tmp_path / "cache"))
    assert cfg.batch_size is None and PrefinetuneConfig().batch_size is None        # seconds are the default
    run = prefinetune_tables(two, "tiny-wav2vec2", tmp_path / "sec", cfg, progress=False)
    plan = json.loads((run / "spft_model.json").read_text())["plan"]
    assert plan["padded_max"] <= 2.0 and plan["clips_at_max"] >= 2 and plan["clip_seconds_at_max"] <= 0.8
    # validation batches are bounded too, each clip exactly once, centre-cropped at max_eval_seconds
    audio = open_audio_cache(tmp_path / "cache", sr=16000)
    n = np.array([audio.num_samples(p) for p in two["iemocap"].query("split == 'valid'").path])
    items = pf.valid_plan_items("iemocap", n, cfg, 16000)
    assert sorted(np.concatenate([r for _, r, _ in items]).tolist()) == list(range(len(n)))
    for _, rows, offs in items:
        eff = np.minimum(n[rows], 16000)
        assert len(rows) * eff.max() <= 1.5 * 16000 and (offs == (n[rows] - eff) // 2).all()
    # an explicit batch_size gives the old batches: counts of clips, 16 per validation batch
    old = PrefinetuneConfig(max_epochs=1, batch_size=4, batch_seconds=0.5, max_seconds=15.0, device="cpu",
                            cache_dir=str(tmp_path / "cache"))
    run = prefinetune_tables(two, "tiny-wav2vec2", tmp_path / "count", old, progress=False)
    plan = json.loads((run / "spft_model.json").read_text())["plan"]
    assert plan["batches"] == 2 * 3 and plan["clips_at_max"] == 4                  # 10 clips per task -> 4 + 4 + 2
    assert [len(r) for _, r, _ in pf.valid_plan_items("iemocap", np.arange(20) + 8000, old, 16000)] == [16, 4]


# ---- gradient checkpointing changes memory, not gradients ----
@pytest.mark.parametrize("method", ["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(method):
    tasks = {"a": ("x", "y", "z")}
    rng = np.random.default_rng(0)
    x, mask = prepare_batch([rng.normal(size=n).astype(np.float32) for n in (9000, 6000, 4000)], load_preprocessor("tiny-wav2vec2"))
    y = torch.tensor([0, 1, 2])
    grads = []
    for ckpt in (False, True):
        m = MultiTaskClassifier.from_encoder("tiny-wav2vec2", tasks, seed=0, projector_dim=8).train()   # dropout and LayerDrop on
        if ckpt: pf._checkpoint_layers(m.encoder, "tiny-wav2vec2")
        assert m.encoder.is_activation_checkpointing == ckpt
        m = pf.adapt_model(m, PrefinetuneConfig(method=method))        # as the loop does: checkpointing, then adapters
        with torch.no_grad():                                          # B away from its zero start: every adapter learns
            for k, p in m.named_parameters():
                if "lora_B" in k: p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        seed = 1 if method == "full" else 2               # (a seed at which LayerDrop keeps both layers)
        torch.manual_seed(seed); np.random.seed(seed)    # dropout and LayerDrop draw from torch, SpecAugment from NumPy
        scaled_loss(m(x, mask, task="a"), y, 3).backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    assert (method == "lora") == all("lora_" in k or k.startswith(("heads.", "projector.")) for k in grads[0])
    assert all(g.abs().sum() > 0 for g in grads[1].values())
    for k in grads[0]: torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7, msg=k)


def test_gradient_checkpointing_flag_reaches_the_encoder(tables, tmp_path, monkeypatch):
    seen = []
    orig = MultiTaskClassifier.forward
    def spy(self, *a, **k):
        seen.append(self.encoder.is_activation_checkpointing and self.training); return orig(self, *a, **k)
    monkeypatch.setattr(MultiTaskClassifier, "forward", spy)
    cfg = PrefinetuneConfig(max_epochs=1, batch_size=8, device="cpu", gradient_checkpointing=True, max_steps_per_epoch=1,
                            cache_dir=str(tmp_path / "cache"))
    prefinetune_tables({t: tables[t] for t in ("iemocap",)}, "tiny-wav2vec2", tmp_path / "run", cfg, progress=False)
    assert seen[0] is True


# ---- shared clusters: everything the run writes honours the umask ----
def test_cli_batching_flags(tmp_path):
    from speech_prefinetune.cli import add_prefinetune_arguments
    from speech_prefinetune.config import config_from_args as from_args
    p = add_prefinetune_arguments(argparse.ArgumentParser())
    def config_from_args(args): return from_args(PrefinetuneConfig, args).check()
    base = ["--corpora", "iemocap", "--roots", "r.toml", "--out", "o"]
    d = config_from_args(p.parse_args(base))
    assert (d.batch_size, d.batch_seconds, d.max_seconds, d.gradient_checkpointing) == (None, 240.0, 15.0, False)
    c = config_from_args(p.parse_args(base + ["--batch-seconds", "60", "--max-seconds", "5", "--gradient-checkpointing",
                                              "--eval-batch-seconds", "90", "--max-eval-seconds", "20"]))
    assert (c.batch_seconds, c.max_seconds, c.gradient_checkpointing, c.eval_batch_seconds, c.max_eval_seconds) == (60, 5, True, 90, 20)
    assert config_from_args(p.parse_args(base + ["--batch-size", "8"])).batch_size == 8
    with pytest.raises(UserError, match="max_seconds=30"): config_from_args(p.parse_args(base + ["--batch-seconds", "20", "--max-seconds", "30"]))


# ---- methods: top:N, lora (adapters in peft's format + a merged encoder), the SUPERB weighted sum ----
def test_cli_top_1_trains_only_the_top_layer(synth, tmp_path):
    from transformers import AutoModel
    from speech_prefinetune.model import load_encoder
    assert spft("--corpora", "mandarin_as", "--roots", synth, "--out", tmp_path / "top", "--max-epochs", "2",
                "--method", "top:1", *FAST[:-1], "1e-2") == 0
    meta = json.loads((tmp_path / "top" / "spft_model.json").read_text())
    assert meta["method"] == "top:1" and meta["settings"]["method"] == "top:1"
    base, after = load_encoder("tiny-wav2vec2", seed=0).state_dict(), AutoModel.from_pretrained(tmp_path / "top" / "encoder").state_dict()
    assert base.keys() == after.keys()
    top = [k for k in base if k.startswith(("encoder.layers.1.", "encoder.layer_norm."))]
    for k in base:
        if k not in top: assert torch.equal(base[k], after[k]), k           # CNN, feature projection, layer 0: untouched
    assert any(k.startswith("feature_projection.") for k in base) and any(k.startswith("encoder.layers.0.") for k in base)
    assert all(not torch.equal(base[k], after[k]) for k in top if k.endswith("q_proj.weight"))
    assert not MultiTaskClassifier.from_pretrained(tmp_path / "top").encoder.training


def _tiny_folder(path):
    "tiny-wav2vec2 (seed 0) saved as a transformers folder, LayerDrop off (04's layer recorder fails when it drops layer 0)."
    from speech_prefinetune.model import load_encoder
    encoder = load_encoder("tiny-wav2vec2", seed=0)
    encoder.config.layerdrop = 0.0
    encoder.save_pretrained(path)
    load_preprocessor("tiny-wav2vec2").save_pretrained(path)
    return path


def test_cli_layer_weights_are_saved_and_load_back(synth, tmp_path):
    assert spft("--corpora", "mandarin_as", "--roots", synth, "--out", tmp_path / "lw", "--max-epochs", "2",
                "--layer-weights", *FAST[:-1], "1e-2", "--encoder", _tiny_folder(tmp_path / "base")) == 0
    meta = json.loads((tmp_path / "lw" / "spft_model.json").read_text())
    assert meta["layer_weights"] is True and "method" not in meta
    m = MultiTaskClassifier.from_pretrained(tmp_path / "lw")
    saved = load_file(tmp_path / "lw" / "heads.safetensors")["layer_weights"]
    assert m.layer_weights is not None and torch.equal(m.layer_weights.detach(), saved)
    assert not torch.allclose(saved, torch.full_like(saved, 1 / 3))             # trained away from the uniform start


def test_lora_run_saves_peft_adapters_and_a_merged_encoder(tables, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel
    base_dir = _tiny_folder(tmp_path / "base")
    cfg = PrefinetuneConfig(max_epochs=2, batch_size=8, lr=1e-2, device="cpu", method="lora", lora_rank=4, layer_weights=True,
                            cache_dir=str(tmp_path / "cache"))
    run = prefinetune_tables({t: tables[t] for t in ("iemocap", "mandarin_as")}, str(base_dir), tmp_path / "run", cfg, progress=False)
    meta = json.loads((run / "spft_model.json").read_text())
    assert meta["method"] == "lora" and meta["adapter"] == "adapter" and meta["lora"]["rank"] == 4 and meta["layer_weights"]
    adapter_config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base_dir.resolve()) and adapter_config["r"] == 4
    merged = AutoModel.from_pretrained(run / "encoder").eval()                  # plain transformers, adapters merged
    peft = PeftModel.from_pretrained(AutoModel.from_pretrained(base_dir), run / "adapter").eval()
    x = torch.randn(2, 8000)
    with torch.no_grad():
        h_merged, h_peft = merged(x).last_hidden_state, peft(input_values=x).last_hidden_state
    torch.testing.assert_close(h_merged, h_peft, rtol=1e-4, atol=1e-5)
    base, after = AutoModel.from_pretrained(base_dir).state_dict(), merged.state_dict()
    assert base.keys() == after.keys()
    targets = [k for k in base if k.endswith(("q_proj.weight", "v_proj.weight"))]
    assert len(targets) == 4 and all(not torch.equal(base[k], after[k]) for k in targets)
    assert all(torch.equal(base[k], after[k]) for k in base if k not in targets)
    m = MultiTaskClassifier.from_pretrained(run)                                  # loads for few-shot like any run
    assert m.layer_weights is not None and not any("lora" in k for k in m.state_dict())


def test_resume_refuses_another_method(tables, tmp_path):
    cfg = PrefinetuneConfig(max_epochs=1, batch_size=8, device="cpu", keep_checkpoint=True, method="top:1",
                            cache_dir=str(tmp_path / "cache"))
    one = {"iemocap": tables["iemocap"]}
    run = prefinetune_tables(one, "tiny-wav2vec2", tmp_path / "run", cfg, progress=False)
    assert set(load_checkpoint(run / CHECKPOINT)["model"]) == {k for k, p in _top1_params().items()}
    meta = json.loads((run / "spft_model.json").read_text()); meta["finished"] = False
    (run / "spft_model.json").write_text(json.dumps(meta))
    for other in ("full", "lora", "top:2"):
        with pytest.raises(UserError, match="method"):
            prefinetune_tables(one, "tiny-wav2vec2", run, replace(cfg, method=other, max_epochs=2),
                               progress=False)


def _top1_params():
    m = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"iemocap": LABELS["iemocap"]}).train_top_layers(1)
    return {k: p for k, p in m.named_parameters() if p.requires_grad}

