"Few-shot sampler and trials on the synthetic ESD corpus (tiny encoders, a few epochs)."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from speech_prefinetune.core import LABELS, UserError
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune.fewshot import (FeatureCache, TrialConfig, TrialRunner, load_trial_model, sample_fewshot,
                                        sample_fewshot_multiclass)
from speech_prefinetune.model import MultiTaskClassifier
from speech_prefinetune.synth import synth_corpora

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS = LABELS["esd"]


@pytest.fixture(scope="module")
def esd(tmp_path_factory):
    torch.set_num_threads(1)
    roots = synth_corpora(tmp_path_factory.mktemp("corpora"), size="tiny", corpora=("esd",))
    return load_corpus("esd", roots["esd"])


def test_sampler_balanced_from_the_right_speaker_and_split(esd):
    by_id = esd.set_index("utt_id")
    for spk in sorted(esd.speaker.unique()):
        for emotion in EMOTIONS:
            for k in (2, 4, 8, 16):
                for trial in range(3):
                    ids = sample_fewshot(esd, spk, emotion, k, trial)
                    rows = by_id.loc[ids]
                    assert len(ids) == len(set(ids)) == k
                    assert (rows.speaker == spk).all() and (rows.split == "train").all()
                    assert (rows.label == emotion).sum() == k // 2          # k/2 positives, k/2 negatives
                    assert ids == sample_fewshot(esd, spk, emotion, k, trial)  # pure


def test_sampler_ignores_row_order_and_extra_rows(esd):
    shuffled = esd.sample(frac=1, random_state=7).reset_index(drop=True)
    for emotion in EMOTIONS:
        for k in (2, 8):
            ids = sample_fewshot(esd, "0011", emotion, k, 1, seed=3)
            assert sample_fewshot(shuffled, "0011", emotion, k, 1, seed=3) == ids
            assert sample_fewshot(esd[esd.speaker == "0011"], "0011", emotion, k, 1, seed=3) == ids  # other speakers' rows


def test_sampler_trials_and_seeds_differ_and_negatives_are_pooled(esd):
    draws = {(t, s): tuple(sample_fewshot(esd, "0001", "sad", 8, t, seed=s)) for t in range(5) for s in range(2)}
    assert len(set(draws.values())) == len(draws)
    by_id = esd.set_index("utt_id")
    neg_labels = {by_id.label[u] for ids in draws.values() for u in ids[4:]}
    assert neg_labels <= set(EMOTIONS) - {"sad"} and len(neg_labels) >= 3


def test_sampler_same_draw_in_a_fresh_process(esd, tmp_path):
    f = tmp_path / "t.pkl"; esd.to_pickle(f)
    code = ("import pandas as pd, json, sys; from speech_prefinetune.fewshot import sample_fewshot; "
            f"t = pd.read_pickle({str(f)!r}); "
            "print(json.dumps([sample_fewshot(t, '0012', 'happy', 16, 2, seed=5), "
            "sample_fewshot(t, '0012', 'all', 3, 2, seed=5)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"})
    binary, multiclass = json.loads(out.stdout.strip().splitlines()[-1])
    assert binary == sample_fewshot(esd, "0012", "happy", 16, 2, seed=5)
    assert multiclass == sample_fewshot_multiclass(esd, "0012", 3, 2, seed=5) and len(multiclass) == 15   # k per emotion


def test_sampler_errors(esd):
    with pytest.raises(UserError, match="10 train clips of 'angry'.*k=22 needs 11"): sample_fewshot(esd, "0001", "angry", 22, 0)
    with pytest.raises(UserError, match="even number"): sample_fewshot(esd, "0001", "angry", 5, 0)
    with pytest.raises(UserError, match="expected one of"): sample_fewshot(esd, "0001", "fear", 2, 0)
    with pytest.raises(UserError, match="speaker 0020: 0 train clips"): sample_fewshot(esd, "0020", "sad", 2, 0)


def test_best_state_is_the_best_epochs_weights(esd):
    """With a constant learning rate, rerunning a trial with the budget cut at its best epoch must give the test
    predictions the full run reported: the full run really restored the weights of its (earliest) best epoch."""
    cfg = lambda n, lr: TrialConfig(max_epochs=n, patience=8, lr=lr, lr_schedule="constant")
    runner, k = TrialRunner("tiny-hubert", esd, "0002", cfg(8, 1e-2)), 8
    for lr, emotion in [(lr, e) for lr in (1e-2, 3e-3) for e in EMOTIONS]:   # a trial whose best epoch is inside
        runner.config = cfg(8, lr)
        full = runner.run(emotion, k, 0, return_predictions=True)
        if 1 < full["best_epoch"] < full["epochs"]: break
    else: pytest.fail("no trial with its best epoch strictly inside the budget: the check would be vacuous")
    runner.config = cfg(full["best_epoch"], lr)
    cut = runner.run(emotion, k, 0, return_predictions=True)
    assert cut["best_epoch"] == full["best_epoch"] and cut["valid_macro_f1"] == full["valid_macro_f1"]
    assert cut["test_pred"] == full["test_pred"] and cut["macro_f1"] == full["macro_f1"]

    runner.config = TrialConfig(max_epochs=8, patience=2, lr=1e-2, lr_schedule="constant")   # early stopping
    for e in ("sad", "neutral", "happy"):
        r = runner.run(e, 8, 0)
        assert r["epochs"] == 8 or r["epochs"] - r["best_epoch"] == 2


def test_trials_do_not_depend_on_what_ran_before(esd, tmp_path):
    cfg = TrialConfig(max_epochs=3, patience=3, lr=1e-3)
    a = TrialRunner("tiny-wav2vec2", esd, "0001", cfg)
    first = a.run("happy", 2, 0)
    a.run("neutral", 4, 1); a.run("surprise", 2, 2)
    again = a.run("happy", 2, 0)
    fresh = TrialRunner("tiny-wav2vec2", esd, "0001", cfg, features=FeatureCache(tmp_path / "feats")).run("happy", 2, 0)
    keys = ("macro_f1", "valid_macro_f1", "best_epoch", "epochs", "train_ids", "accuracy")
    assert {k: first[k] for k in keys} == {k: again[k] for k in keys} == {k: fresh[k] for k in keys}


def test_feature_cache_is_shared_by_models_with_the_same_cnn(esd, tmp_path):
    cache = FeatureCache(tmp_path / "feats")
    base = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"x": ("a", "b")})
    other = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"y": ("a", "b", "c")}, projector_dim=8)
    with torch.no_grad(): other.encoder.encoder.layers[0].feed_forward.output_dense.weight.add_(1.0)  # transformer differs
    TrialRunner(base, esd, "0012", TrialConfig(max_epochs=1), features=cache)
    files = list((tmp_path / "feats").rglob("*"))
    chunks = [f for f in files if f.is_file()]
    assert len(chunks) == 1 and chunks[0].suffix == ".safetensors" and chunks[0].parent.name == "0012"  # no temp file left
    stamp = chunks[0].stat().st_mtime_ns
    TrialRunner(other, esd, "0012", TrialConfig(max_epochs=1), features=FeatureCache(tmp_path / "feats"))
    assert sorted((tmp_path / "feats").rglob("*")) == sorted(files) and chunks[0].stat().st_mtime_ns == stamp  # read, not recomputed
    # the cached features are the CNN's: forward_from_features(cached) == forward(audio)
    from speech_prefinetune.audio import load_audio
    row = esd[(esd.speaker == "0012") & (esd.split == "test")].iloc[0]
    feats = cache.features(base, esd[esd.utt_id == row.utt_id], group="0012")[row.utt_id]
    base.eval()
    with torch.no_grad():
        direct = base(*base.prepare([load_audio(row.path, sr=base.sampling_rate)]), task="x")
        cached = base.forward_from_features(feats[None], torch.ones(1, feats.shape[0], dtype=torch.bool), task="x")
    assert torch.allclose(direct, cached, atol=1e-6)


# ---------------------------------------------------------------- preprocessing: the encoder's own feature extractor
def encoder_folder(path, style, sr=16000):
    "A small encoder saved with `save_pretrained` next to a real-layout `preprocessor_config.json`."
    from transformers import AutoModel, HubertConfig, Wav2Vec2Config, Wav2Vec2FeatureExtractor
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, conv_dim=(16, 16, 16),
                 conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    if style == "hubert":        # hubert-base-ls960 / wavlm-base-plus: group-norm CNN without bias, do_normalize false
        cfg, fe = HubertConfig(feat_extract_norm="group", conv_bias=False, **small), dict(do_normalize=False, return_attention_mask=False)
    elif style == "wav2vec2":    # wav2vec2-base: group-norm CNN, do_normalize true
        cfg, fe = Wav2Vec2Config(feat_extract_norm="group", conv_bias=False, **small), dict(do_normalize=True, return_attention_mask=False)
    else:                        # a layer-norm CNN with conv bias fed raw (the worst case of normalising by mistake), at 8 kHz
        cfg, fe = Wav2Vec2Config(feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True, **small), dict(do_normalize=False, return_attention_mask=True)
    torch.manual_seed(0)
    AutoModel.from_config(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sr, padding_value=0.0, **fe).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    "A normal-level and a quiet (std ~0.003) clip at 16 kHz, as an utterance table."
    import soundfile as sf
    d, rng, rows = tmp_path_factory.mktemp("clips"), np.random.default_rng(0), []
    for name, level in (("normal", 0.1), ("quiet", 0.003)):
        t = np.arange(9000) / 16000
        w = level * (np.sin(2 * np.pi * 180 * t) + 0.5 * rng.normal(size=t.size)) + 0.3 * level
        sf.write(d / f"{name}.wav", w.astype(np.float32), 16000, subtype="FLOAT")
        rows.append(dict(utt_id=name, path=str(d / f"{name}.wav")))
    return pd.DataFrame(rows)


def hf_cnn(folder, path, do_normalize=None):
    "What transformers computes: `AutoFeatureExtractor` output at its rate through `AutoModel`'s CNN."
    from transformers import AutoFeatureExtractor, AutoModel
    from speech_prefinetune.audio import load_audio
    fe, enc = AutoFeatureExtractor.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    if do_normalize is not None: fe.do_normalize = do_normalize
    x = fe(load_audio(path, sr=fe.sampling_rate), sampling_rate=fe.sampling_rate, return_tensors="pt").input_values
    with torch.no_grad(): return enc.feature_extractor(x)[0].T


@pytest.mark.parametrize("style, sr", [("hubert", 16000), ("wav2vec2", 16000), ("layer", 8000)])
def test_cnn_features_are_autofeatureextractor_then_automodel(clips, tmp_path, style, sr):
    folder = encoder_folder(tmp_path / style, style, sr)
    model = load_trial_model(folder)
    got = FeatureCache().features(model, clips)
    for row in clips.itertuples():
        ref = hf_cnn(folder, row.path)
        assert got[row.utt_id].shape == ref.shape
        assert torch.allclose(got[row.utt_id], ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    quiet = clips.path[clips.utt_id == "quiet"].iloc[0]
    flipped = hf_cnn(folder, quiet, do_normalize=not model.preprocessor.do_normalize)   # the check can fail: the setting matters
    assert not torch.allclose(got["quiet"], flipped, rtol=1e-3, atol=1e-3 * flipped.abs().max().item())


def test_feature_store_key_follows_the_preprocessor(clips, tmp_path):
    import shutil
    raw = encoder_folder(tmp_path / "raw", "hubert")
    normed = Path(shutil.copytree(raw, tmp_path / "normed"))             # the same weights...
    cfg = json.loads((normed / "preprocessor_config.json").read_text())
    (normed / "preprocessor_config.json").write_text(json.dumps({**cfg, "do_normalize": True}))   # ...normalised input
    a, b = load_trial_model(raw), load_trial_model(normed)
    assert a.cnn_fingerprint() != b.cnn_fingerprint()
    cache = FeatureCache(tmp_path / "feats")
    fa, fb = cache.features(a, clips), FeatureCache(tmp_path / "feats").features(b, clips)
    for folder, f in ((raw, fa), (normed, fb)):
        ref = hf_cnn(folder, clips.path[clips.utt_id == "quiet"].iloc[0])
        assert torch.allclose(f["quiet"], ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())   # never the other's features
    assert not torch.allclose(fa["quiet"], fb["quiet"], rtol=1e-3, atol=1e-3)
    assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == sorted([a.cnn_fingerprint(), b.cnn_fingerprint()])


# ---------------------------------------------------------------- the on-disk store: append-only chunks
def test_feature_store_appends_chunks_and_skips_corrupt_ones(esd, tmp_path, monkeypatch):
    model = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"x": ("a", "b")})
    rows = esd[esd.speaker == "0011"].sort_values("utt_id").reset_index(drop=True)
    folder = tmp_path / "feats" / model.cnn_fingerprint() / "0011"
    first = FeatureCache(tmp_path / "feats").features(model, rows[:4], group="0011")
    (old,) = folder.iterdir()
    old_bytes = old.read_bytes()
    FeatureCache(tmp_path / "feats").features(model, rows[:7], group="0011")       # 3 new clips: one new chunk
    chunks = sorted(folder.iterdir())
    assert len(chunks) == 2 and old in chunks and old.read_bytes() == old_bytes
    new = next(c for c in chunks if c != old)
    from safetensors.torch import load_file
    assert sorted(load_file(new)) == sorted(rows.utt_id[4:7])                          # only the new clips
    def no_compute(*a, **kw): raise AssertionError("recomputed clips that are on disk")
    with monkeypatch.context() as m:
        m.setattr(FeatureCache, "_compute", no_compute)
        again = FeatureCache(tmp_path / "feats").features(model, rows[:7], group="0011")
    assert all(torch.equal(again[u], first[u]) for u in first)
    # a torn chunk (the disk lost its tail) and a foreign file: ignored with a warning, their clips recomputed
    new.write_bytes(new.read_bytes()[:200])
    (folder / "zz.safetensors").write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="unreadable CNN-feature chunk"):
        fixed = FeatureCache(tmp_path / "feats").features(model, rows[:7], group="0011")
    assert all(torch.allclose(fixed[u], again[u], atol=1e-6) for u in again)
    assert len(load_file(new)) == 3                                                    # rewritten whole (same clips, same name)
    assert old.read_bytes() == old_bytes


def test_feature_store_never_unpickles(esd, tmp_path):
    "A pickle planted as a chunk (or as the old `.pt` file) is never executed."
    model = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"x": ("a", "b")})
    folder = tmp_path / "feats" / model.cnn_fingerprint() / "0011"; folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    class Evil:
        def __reduce__(self): return (os.system, (f"touch {marker}",))
    import pickle
    for f in (folder / "evil.safetensors", folder.parent / "0011.pt"): f.write_bytes(pickle.dumps({"x": Evil()}))
    rows = esd[esd.speaker == "0011"][:2]
    with pytest.warns(UserWarning, match="evil.safetensors"):
        FeatureCache(tmp_path / "feats").features(model, rows, group="0011")
    assert not marker.exists()


WRITER = """
import sys, pandas as pd, torch
from speech_prefinetune.fewshot import FeatureCache
from speech_prefinetune.model import MultiTaskClassifier
torch.set_num_threads(1)
rows = pd.read_pickle(sys.argv[1])
FeatureCache(sys.argv[2]).features(MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"x": ("a", "b")}), rows, group="0011")
"""


def test_two_workers_adding_different_clips_concurrently(esd, tmp_path, monkeypatch):
    rows = esd[esd.speaker == "0011"].sort_values("utt_id").reset_index(drop=True)[:12]
    files = [tmp_path / "a.pkl", tmp_path / "b.pkl"]
    rows[:8].to_pickle(files[0]); rows[4:].to_pickle(files[1])                      # overlapping, different sets
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(f), str(tmp_path / "feats")], env=env, stderr=subprocess.PIPE,
                              text=True) for f in files]
    for p in procs: assert p.wait(timeout=300) == 0, p.stderr.read()
    def no_compute(*a, **kw): raise AssertionError("a clip written by a worker is missing")
    monkeypatch.setattr(FeatureCache, "_compute", no_compute)
    model = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"x": ("a", "b")})
    got = FeatureCache(tmp_path / "feats").features(model, rows, group="0011")
    assert sorted(got) == sorted(rows.utt_id)
    monkeypatch.undo()
    ref = FeatureCache().features(model, rows, group="0011")
    assert all(torch.equal(got[u], ref[u]) for u in ref)


# ---------------------------------------------------------------- evaluation batches bounded by audio-seconds
def test_eval_batches_bounded_by_seconds_and_predictions_do_not_depend_on_them(esd):
    model = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"init": ("a", "b")}, seed=3).eval()
    logits = {}
    for secs in (0.01, 4.0, 15.0, 1000.0):
        r = TrialRunner(model, esd, "0011", TrialConfig(eval_batch_seconds=secs, eval_batch_size=64))
        budget = secs * r.frame_rate
        assert r.frame_rate == 50.0
        for split in ("valid", "test"):
            sizes = [(x.shape[0], x.shape[1]) for x, _, _ in r._batches[split]]
            assert all(b == 1 or b * L <= budget for b, L in sizes) and sum(b for b, _ in sizes) == len(r._splits[split])
            logits[secs, split] = r.logits(split, "init")
        if secs == 0.01: assert all(x.shape[0] == 1 for x, _, _ in r._batches["valid"])
        if secs == 1000.0: assert len(r._batches["valid"]) == 1
    ids = r._splits["test"].utt_id.tolist()                                          # one clip at a time, unpadded
    with torch.no_grad():
        alone = torch.cat([model.forward_from_features(r._feats[u][None], torch.ones(1, r._feats[u].shape[0], dtype=torch.bool),
                                                       task="init") for u in ids])
    for secs in (0.01, 4.0, 15.0, 1000.0):
        assert torch.allclose(logits[secs, "test"], alone, atol=1e-5), secs
        assert torch.allclose(logits[secs, "valid"], logits[0.01, "valid"], atol=1e-5), secs


def test_eval_batch_seconds_keeps_the_config_id_of_existing_stores():
    "Hashes of `TrialConfig()` and of a grid's settings as computed before `eval_batch_seconds` existed."
    assert TrialConfig().config_id() == "7ca3908931d2"
    assert TrialConfig(max_epochs=3, patience=2).config_id() == "18f25a6b8057"
    assert TrialConfig(stack=4, lr=1e-3).config_id() == "49ee30f0f361"
    assert TrialConfig(eval_batch_seconds=50.0).config_id() == TrialConfig().config_id()   # memory only: a rerun with a smaller budget resumes
    with pytest.raises(UserError, match="eval_batch_seconds=0"): TrialConfig(eval_batch_seconds=0)


# ---------------------------------------------------------------- long clips: cut before the CNN (max_seconds)
@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    "A 2.3 s clip at 16 kHz whose level and offset grow along it: normalising before or after a cut differ."
    import soundfile as sf
    d, rng = tmp_path_factory.mktemp("long"), np.random.default_rng(1)
    t = np.arange(int(2.3 * 16000)) / 16000
    w = (0.02 + 0.2 * t) * (np.sin(2 * np.pi * 220 * t) + 0.3 * rng.normal(size=t.size)) + 0.05 * t
    sf.write(d / "long.wav", w.astype(np.float32), 16000, subtype="FLOAT")
    return pd.DataFrame([dict(utt_id="long", path=str(d / "long.wav"))])


def hf_cut_cnn(folder, wave, max_length=None):
    "transformers' pipeline: `AutoFeatureExtractor(truncation=True, max_length=...)` output through `AutoModel`'s CNN."
    from transformers import AutoFeatureExtractor, AutoModel
    fe, enc = AutoFeatureExtractor.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    kw = dict(truncation=True, max_length=max_length) if max_length else {}
    x = fe(wave, sampling_rate=fe.sampling_rate, return_tensors="pt", **kw).input_values
    if max_length: assert x.shape[-1] == max_length                    # the oracle really cut
    with torch.no_grad(): return enc.feature_extractor(x)[0].T


def close(a, b): return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


@pytest.mark.parametrize("style", ["wav2vec2", "layer"])
def test_max_seconds_cuts_before_the_cnn_as_transformers_truncation(long_clip, tmp_path, style):
    "wav2vec2-base style (group-norm CNN) and a layer-norm CNN with conv bias, both with do_normalize=True."
    from speech_prefinetune.audio import load_audio
    folder = encoder_folder(tmp_path / style, style)
    cfg = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**cfg, "do_normalize": True}))
    model = load_trial_model(folder)
    assert model.preprocessor.do_normalize
    wave = load_audio(long_clip.path[0], sr=16000)
    cache = FeatureCache()
    whole = cache.features(model, long_clip)["long"]
    cut = cache.features(model, long_clip, max_seconds=1.0)["long"]
    assert close(whole, hf_cut_cnn(folder, wave)) and close(cut, hf_cut_cnn(folder, wave, 16000))
    assert cut.shape[0] < whole.shape[0] and not torch.allclose(cut, whole[:len(cut)], rtol=1e-2, atol=1e-2)
    if style == "layer":   # a layer-norm CNN with conv bias is not invariant to the input's level: normalising the
        from transformers import AutoFeatureExtractor, AutoModel   # whole clip and then cutting would differ
        normed = AutoFeatureExtractor.from_pretrained(folder)(wave, sampling_rate=16000, return_tensors="pt").input_values
        with torch.no_grad(): wrong = AutoModel.from_pretrained(folder).eval().feature_extractor(normed[:, :16000])[0].T
        assert not torch.allclose(cut, wrong, rtol=1e-2, atol=1e-2)
    s = (len(wave) - 16000) // 2                                         # crop="centre": the middle second
    assert close(cache.features(model, long_clip, max_seconds=1.0, crop="centre")["long"], hf_cut_cnn(folder, wave[s:s + 16000]))
    assert torch.equal(cache.features(model, long_clip, max_seconds=5.0)["long"], whole)   # shorter than the cut: whole


def test_whole_and_cut_features_live_in_different_store_folders(esd, tmp_path, monkeypatch):
    model = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"x": ("a", "b")})
    rows = esd[esd.speaker == "0011"].sort_values("utt_id").reset_index(drop=True)[:8]
    store, fp = tmp_path / "feats", model.cnn_fingerprint()
    cache = FeatureCache(store)                                          # one object: memory keeps the kinds apart too
    whole = cache.features(model, rows, group="0011")
    cut = cache.features(model, rows, group="0011", max_seconds=0.5)
    centre = cache.features(model, rows, group="0011", max_seconds=0.5, crop="centre")
    assert sorted(p.name for p in store.iterdir()) == sorted([fp, f"{fp}-start8000", f"{fp}-centre8000"])
    for name in (fp, f"{fp}-start8000", f"{fp}-centre8000"): assert [p.name for p in (store / name).iterdir()] == ["0011"]
    frames = int(model.encoder._get_feat_extract_output_lengths(torch.tensor(8000)))
    longer = [u for u in whole if whole[u].shape[0] > frames]
    assert longer and all(cut[u].shape[0] == frames for u in longer) and not torch.equal(cut[longer[0]], centre[longer[0]])
    assert all(torch.equal(cut[u], whole[u]) for u in whole if u not in longer)
    def no_compute(*a, **kw): raise AssertionError("recomputed clips that are on disk")
    monkeypatch.setattr(FeatureCache, "_compute", no_compute)
    again = FeatureCache(store)                                          # another process: each folder gives its own
    for kw, ref in ((dict(max_seconds=0.5), cut), ({}, whole), (dict(max_seconds=0.5, crop="centre"), centre)):
        got = again.features(model, rows, group="0011", **kw)
        assert all(torch.equal(got[u], ref[u]) for u in ref), kw


def test_trial_runner_cuts_every_clip_of_its_trials(esd):
    runner = TrialRunner("tiny-wav2vec2", esd, "0011", TrialConfig(max_epochs=2, patience=2, max_seconds=0.5))
    r = runner.run("angry", 2, 0, return_predictions=True)
    frames = int(runner.model.encoder._get_feat_extract_output_lengths(torch.tensor(8000)))
    assert set(runner._feats) >= set(r["train_ids"]) | set(runner._splits["test"].utt_id)
    assert max(f.shape[0] for f in runner._feats.values()) == frames   # valid, test and train clips alike
    y = (esd.set_index("utt_id").label.loc[r["test_ids"]] == "angry").astype(int).to_numpy()
    assert r["macro_f1"] == pytest.approx(f1_score(y, r["test_pred"], average="macro", zero_division=0), abs=1e-12)


def test_max_seconds_keeps_the_config_id_of_existing_stores():
    assert TrialConfig(max_seconds=None).config_id() == "7ca3908931d2"
    assert TrialConfig(max_epochs=3, patience=2, crop="centre").config_id() == "18f25a6b8057"   # no cut: the crop is moot
    assert TrialConfig(stack=4, lr=1e-3, max_seconds=None).config_id() == "49ee30f0f361"
    ids = {TrialConfig(max_seconds=s, crop=c).config_id() for s in (5.0, 3.0) for c in ("start", "centre")}
    assert len(ids) == 4 and "7ca3908931d2" not in ids
    for bad, msg in ((dict(max_seconds=0), "max_seconds=0"), (dict(max_seconds=-1.0), "max_seconds=-1.0"),
                     (dict(max_seconds=float("inf")), "max_seconds=inf"), (dict(crop="end"), "crop='end'")):
        with pytest.raises(UserError, match=msg): TrialConfig(**bad)


def test_pretrained_model_folder_keeps_its_corpora(esd, tmp_path):
    m = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"iemocap": ("neutral", "angry"), "mandarin_as": ("a", "b")})
    m.save_pretrained(tmp_path / "m", metadata={"corpora": ["mandarin_as", "iemocap"]})
    runner = TrialRunner(tmp_path / "m", esd, "0011", TrialConfig(max_epochs=1))
    assert runner.corpora == "iemocap+mandarin_as"
    r = runner.run("angry", 2, 0, return_predictions=True)
    assert list(runner.model.tasks) == ["angry"] and runner.model.tasks["angry"] == ("not_angry", "angry")
    same = TrialRunner(m, esd, "0011", TrialConfig(max_epochs=1)).run("angry", 2, 0, return_predictions=True)
    for key in ("macro_f1", "valid_macro_f1", "best_epoch", "epochs", "train_ids", "test_pred"):
        assert r[key] == same[key], key      # the folder holds the model's weights: the same trial, the same numbers
    assert TrialRunner("tiny-wav2vec2", esd, "0011", TrialConfig(max_epochs=1)).corpora == "base"
    with pytest.raises(UserError, match="neither a pre-finetuned model folder"): TrialRunner(tmp_path, esd, "0011")


def test_paper_code_schedule():
    c = TrialConfig(paper_code_schedule=True)
    assert [c.limits(k) for k in (2, 8, 16, 64)] == [(200, 30), (200, 30), (50, 5), (50, 5)]
