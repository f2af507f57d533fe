"Few-shot sampler and trials on the synthetic ESD corpus (tiny encoders, a few epochs)."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from speech_prefinetune.core import LABELS, UserError
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune.fewshot import (FeatureCache, TrialConfig, TrialRunner, binary_metrics, macro_f1, run_trial,
                                        sample_fewshot)
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
            f"t = pd.read_pickle({str(f)!r}); print(json.dumps(sample_fewshot(t, '0012', 'happy', 16, 2, seed=5)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == sample_fewshot(esd, "0012", "happy", 16, 2, seed=5)


def test_sampler_errors(esd):
    with pytest.raises(UserError, match="10 train clips of 'angry'.*k=22 needs 11"): sample_fewshot(esd, "0001", "angry", 22, 0)
    with pytest.raises(UserError, match="even number"): sample_fewshot(esd, "0001", "angry", 5, 0)
    with pytest.raises(UserError, match="expected one of"): sample_fewshot(esd, "0001", "fear", 2, 0)
    with pytest.raises(UserError, match="speaker 0020: 0 train clips"): sample_fewshot(esd, "0020", "sad", 2, 0)


def test_fast_macro_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    for n in (1, 3, 20, 100):
        for _ in range(200):
            yt, yp = rng.integers(0, 2, n), rng.integers(0, 2, n)
            assert macro_f1(yt, yp) == pytest.approx(f1_score(yt, yp, labels=[0, 1], average="macro", zero_division=0), abs=1e-12)


def test_trial_metrics_match_an_independent_computation(esd):
    cfg = TrialConfig(max_epochs=4, patience=2, lr=1e-3)
    r = run_trial("tiny-wav2vec2", esd, "0011", "angry", 4, 0, config=cfg, return_predictions=True)
    test = esd[(esd.speaker == "0011") & (esd.split == "test")].set_index("utt_id")
    assert sorted(r["test_ids"]) == sorted(test.index)
    y = (test.label.loc[r["test_ids"]] == "angry").astype(int).to_numpy()
    p = np.asarray(r["test_pred"])
    assert r["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)
    assert r["f1_pos"] == pytest.approx(f1_score(y, p, pos_label=1, zero_division=0), abs=1e-12)
    assert r["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p), abs=1e-12)
    assert r["train_ids"] == sample_fewshot(esd, "0011", "angry", 4, 0)
    assert 1 <= r["best_epoch"] <= r["epochs"] <= 4 and r["epochs"] - r["best_epoch"] <= 2
    assert r["seconds"] > 0 and set(r) >= {"macro_f1", "f1_pos", "accuracy", "balanced_accuracy", "best_epoch", "epochs",
                                            "train_ids", "seconds"}


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
    files = list((tmp_path / "feats").rglob("*.pt"))
    assert [f.name for f in files] == ["0012.pt"]
    assert [p.name for p in (tmp_path / "feats").rglob("*") if p.is_file()] == ["0012.pt"]  # no temporary file left
    stamp = files[0].stat().st_mtime_ns
    TrialRunner(other, esd, "0012", TrialConfig(max_epochs=1), features=FeatureCache(tmp_path / "feats"))
    assert files[0].stat().st_mtime_ns == stamp                     # nothing recomputed: read from disk
    # the cached features are the CNN's: forward_from_features(cached) == forward(audio)
    from speech_prefinetune.audio import load_audio
    from speech_prefinetune.model import pad_batch
    row = esd[(esd.speaker == "0012") & (esd.split == "test")].iloc[0]
    feats = cache.features(base, esd[esd.utt_id == row.utt_id], group="0012")[row.utt_id]
    base.eval()
    with torch.no_grad():
        direct = base(*pad_batch([load_audio(row.path)]), task="x")
        cached = base.forward_from_features(feats[None], torch.ones(1, feats.shape[0], dtype=torch.bool), task="x")
    assert torch.allclose(direct, cached, atol=1e-6)


def test_pretrained_model_folder_keeps_its_corpora(esd, tmp_path):
    m = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"iemocap": ("neutral", "angry"), "mandarin_as": ("a", "b")})
    m.save_pretrained(tmp_path / "m", metadata={"corpora": ["mandarin_as", "iemocap"]})
    runner = TrialRunner(tmp_path / "m", esd, "0011", TrialConfig(max_epochs=1))
    assert runner.corpora == "iemocap+mandarin_as"
    r = runner.run("angry", 2, 0)
    assert list(runner.model.tasks) == ["angry"] and runner.model.tasks["angry"] == ("not_angry", "angry")
    assert 0 <= r["macro_f1"] <= 1
    assert TrialRunner("tiny-wav2vec2", esd, "0011", TrialConfig(max_epochs=1)).corpora == "base"
    with pytest.raises(UserError, match="neither a pre-finetuned model folder"): TrialRunner(tmp_path, esd, "0011")


def test_paper_code_schedule():
    c = TrialConfig(paper_code_schedule=True)
    assert [c.limits(k) for k in (2, 8, 16, 64)] == [(200, 30), (200, 30), (50, 5), (50, 5)]


# ---------------------------------------------------------------- stacked trials
from speech_prefinetune.fewshot import StackedForward, pad_features, stack_weights
from speech_prefinetune.model import tiny_config


def quiet_config(name="tiny-wav2vec2", **kw):
    "A tiny encoder config with no dropout, LayerDrop or SpecAugment: training is then deterministic given the seeds."
    c = tiny_config(name)
    for a in ("hidden_dropout", "attention_dropout", "activation_dropout", "layerdrop", "mask_time_prob"): setattr(c, a, 0.0)
    for a, v in kw.items(): setattr(c, a, v)
    return c


@pytest.mark.parametrize("name, kw", [("tiny-wav2vec2", {}), ("tiny-hubert", {}),
                                      ("tiny-wav2vec2", dict(do_stable_layer_norm=False, feat_extract_norm="group"))])
def test_stacked_forward_on_real_features_matches_the_model(esd, name, kw):
    "Logits of the stacked pass (rows = different trained heads) against the model's own modules, on ESD features."
    model = MultiTaskClassifier.from_encoder(quiet_config(name, **kw), {"t": ("a", "b")}).eval()
    runner = TrialRunner(model, esd, "0011", TrialConfig())
    ids = esd[(esd.speaker == "0011") & (esd.split == "test")].utt_id.tolist()[:6]
    x, mask = pad_features([runner._feats[u] for u in ids])
    heads = [torch.nn.Linear(32, 2) for _ in range(3)]
    W = stack_weights(model, heads[0], 3)
    W["head.w"] = torch.stack([h.weight.detach().t() for h in heads]); W["head.b"] = torch.stack([h.bias.detach() for h in heads])
    with torch.no_grad():
        got = StackedForward(model)(W, x[None], mask[None])
        for r, h in enumerate(heads):
            model.heads["t"] = h
            assert (got[r] - model.forward_from_features(x, mask, task="t")).abs().max() < 1e-5


def test_stack_equals_one_at_a_time_without_randomness_and_metrics_match_sklearn(esd):
    model = MultiTaskClassifier.from_encoder(quiet_config("tiny-hubert"), {"init": ("a", "b")})
    runner = TrialRunner(model, esd, "0012", TrialConfig(max_epochs=4, patience=2, lr=3e-3))
    cells = [("angry", 2, 0), ("neutral", 2, 1), ("sad", 2, 0), ("surprise", 2, 2)]
    stacked = runner.run_stack(cells, return_predictions=True)
    test = esd[(esd.speaker == "0012") & (esd.split == "test")].set_index("utt_id")
    for c, s in zip(cells, stacked):
        r = runner.run(*c, return_predictions=True)
        assert (s["best_epoch"], s["epochs"], s["train_ids"], s["test_pred"]) == (r["best_epoch"], r["epochs"], r["train_ids"], r["test_pred"])
        assert s["valid_macro_f1"] == pytest.approx(r["valid_macro_f1"], abs=1e-12)
        y = (test.label.loc[s["test_ids"]] == c[0]).astype(int).to_numpy()
        assert s["macro_f1"] == pytest.approx(f1_score(y, s["test_pred"], average="macro"), abs=1e-12)
        assert s["train_ids"] == sample_fewshot(esd, "0012", c[0], 2, c[2])


def test_stack_layerdrop_skipped_layers_are_not_updated(esd, monkeypatch):
    "LayerDrop 1.0 skips every layer in every step: their weights must come out as they went in; the rest must train."
    import speech_prefinetune.fewshot as fs
    model = MultiTaskClassifier.from_encoder(quiet_config(layerdrop=1.0), {"init": ("a", "b")})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    runner = TrialRunner(model, esd, "0011", TrialConfig(max_epochs=2, patience=2, lr=1e-2, lr_schedule="constant"))
    seen, real = {}, fs.stacked_adamw_
    def spy(W, G, M, V, S, used, *a, **kw):
        real(W, G, M, V, S, used, *a, **kw)
        seen.update({n: w.clone() for n, w in W.items()}, S={n: s.clone() for n, s in S.items()})
    monkeypatch.setattr(fs, "stacked_adamw_", spy)
    runner.run_stack([("angry", 4, 0), ("sad", 4, 0)])
    assert torch.equal(seen["0.o.w"][0], before["encoder.encoder.layers.0.attention.out_proj.weight"].t())
    assert torch.equal(seen["1.ff1.b"][1], before["encoder.encoder.layers.1.feed_forward.intermediate_dense.bias"])
    assert (seen["S"]["0.o.w"] == 0).all() and (seen["S"]["fp.w"] == 2).all()      # 2 epochs x 1 step, per trial
    assert not torch.equal(seen["fp.w"][0], before["encoder.feature_projection.projection.weight"].t())
