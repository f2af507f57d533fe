"""Model tests on padded batches of real-shaped audio.

The oracle tests (logits equal transformers' `*ForSequenceClassification` for the three tiny encoders; batched equals
one by one; the split forward pass), saving and loading (plain `AutoModel`, saving twice into one folder) and the error
messages live in nbs/04_model.ipynb; here: padding, a training step, a failing disk, transformers' load reports."""
import numpy as np
import pytest
import torch
import transformers
from transformers import AutoModel
from speech_prefinetune.model import MultiTaskClassifier, load_encoder, tiny_config

torch.set_num_threads(1)


def waves(lengths=(16000, 9000, 4321), seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=n) * 0.1 + 0.01).astype(np.float32) for n in lengths]


def test_padding_does_not_leak_into_pooling():
    m = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"t": ("x", "y")}).eval()
    w = waves((8000,))[0]
    x, mask = m.prepare([w])
    x2 = torch.cat([x, torch.randn(1, 8000)], 1); mask2 = torch.cat([mask, torch.zeros(1, 8000, dtype=torch.long)], 1)
    with torch.no_grad(): assert (m(x, mask) - m(x2, mask2)).abs().max() < 1e-5


def test_training_step_trains_heads_and_respects_frozen_cnn():
    m = MultiTaskClassifier.from_encoder("tiny-hubert", {"a": ("x", "y"), "b": ("x", "y", "z")}).train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x, mask = m.prepare(waves())
    torch.nn.functional.cross_entropy(m(x, mask, task="b"), torch.tensor([0, 1, 2])).backward()
    opt.step()
    after = m.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"heads.b.weight", "heads.b.bias"} <= changed
    assert not any(k.startswith(("heads.a", "encoder.feature_extractor")) for k in changed)


def test_failed_save_keeps_the_previous_files(tmp_path, monkeypatch):
    import speech_prefinetune.model as model_mod
    m = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"esd": ("a", "b")}).eval()
    m.save_pretrained(tmp_path, metadata={"corpora": []})
    heads, meta = (tmp_path / "heads.safetensors").read_bytes(), (tmp_path / "spft_model.json").read_text()
    def full_disk(state, path):
        path.write_bytes(b"torn"); raise OSError("No space left on device")
    monkeypatch.setattr(model_mod, "save_file", full_disk)
    with pytest.raises(OSError, match="No space"): m.replace_heads({"esd": ("a", "b", "c")}).save_pretrained(tmp_path)
    assert (tmp_path / "heads.safetensors").read_bytes() == heads and (tmp_path / "spft_model.json").read_text() == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder", "heads.safetensors", "spft_model.json"]
    assert MultiTaskClassifier.from_pretrained(tmp_path).tasks == {"esd": ("a", "b")}

@pytest.fixture
def hf_log():
    "Every record transformers logs (its library logger does not propagate to the root, so caplog cannot see them)."
    import logging
    records = []
    handler = logging.Handler(); handler.emit = lambda r: records.append(r.getMessage())
    log = logging.getLogger("transformers"); log.addHandler(handler)
    yield records
    log.removeHandler(handler)


def _pretraining_checkpoint(path):
    "A folder saved like facebook/wav2vec2-base: from Wav2Vec2ForPreTraining (quantizer, project_q, project_hid)."
    from transformers import Wav2Vec2ForPreTraining
    Wav2Vec2ForPreTraining(tiny_config("tiny-wav2vec2")).save_pretrained(path)
    return path


def test_pretraining_checkpoint_loads_without_the_load_report(tmp_path, hf_log):
    folder = _pretraining_checkpoint(tmp_path / "pretrain")
    AutoModel.from_pretrained(folder)   # transformers alone logs its report of unexpected keys...
    assert any("LOAD REPORT" in r and "UNEXPECTED" in r for r in hf_log)
    hf_log.clear()
    enc = load_encoder(folder)          # ...we do not
    m = MultiTaskClassifier.from_encoder(str(folder), {"t": ("a", "b")})
    m.save_pretrained(tmp_path / "run"); MultiTaskClassifier.from_pretrained(tmp_path / "run")
    assert not any("LOAD REPORT" in r for r in hf_log), hf_log
    assert type(enc).__name__ == "Wav2Vec2Model"


def test_a_genuine_load_warning_still_shows(tmp_path, hf_log):
    "Weights missing from the checkpoint (the encoder would run partly random): the report stays, as do other warnings."
    from safetensors.torch import load_file, save_file
    folder = _pretraining_checkpoint(tmp_path / "pretrain")
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".layers.1." not in k}, folder / "model.safetensors", metadata={"format": "pt"})
    load_encoder(folder)
    assert any("LOAD REPORT" in r and "MISSING" in r and "layers.1" in r for r in hf_log), hf_log
    transformers.utils.logging.get_logger("transformers.modeling_utils").warning("a real warning")
    assert hf_log[-1] == "a real warning"   # the filter is gone after loading, and never drops other records


# Every encoder family, end to end (issue 11): few-shot trials and pre-finetuning through the CLI. The oracles
# (logits equal transformers' classification models), batched == one by one and the save/load round trips of every
# family live in nbs/04_model.ipynb.
from speech_prefinetune.model import TINY_ENCODERS


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    "Tiny synthetic ESD and Mandarin-AS corpora (`spft synth --size tiny`): the roots file."
    from speech_prefinetune.synth import synth_corpora
    out = tmp_path_factory.mktemp("corpora")
    synth_corpora(out, size="tiny", corpora=("esd", "mandarin_as"))
    return out / "corpora.toml"


@pytest.mark.parametrize("name", TINY_ENCODERS)
def test_fewshot_trial_runs_for_every_family(corpora, name):
    "A short few-shot trial (cached front-end features, 2 epochs) runs and is reproducible, for each family."
    from speech_prefinetune.core import read_roots
    from speech_prefinetune.corpora import load_corpus
    from speech_prefinetune.fewshot import TrialConfig, TrialRunner
    esd = load_corpus("esd", read_roots(corpora)["esd"])
    runner = TrialRunner(name, esd, "0001", TrialConfig(max_epochs=2), device="cpu")
    first, again = runner.run("happy", 4, 0), runner.run("happy", 4, 0)
    assert 0.0 <= first["macro_f1"] <= 1.0 and first["epochs"] == 2
    assert (first["macro_f1"], first["train_ids"]) == (again["macro_f1"], again["train_ids"])
    assert runner.frame_rate == 50.0


@pytest.mark.parametrize("name", ["tiny-whisper", "tiny-data2vec-audio"])
def test_spft_prefinetune_runs_on_new_families(corpora, tmp_path, name):
    "`spft prefinetune --encoder tiny-whisper` (and data2vec-audio) trains, saves and loads back with its own extractor."
    from speech_prefinetune.cli import main
    out = tmp_path / "run"
    argv = ["prefinetune", "--corpora", "mandarin_as", "--roots", str(corpora), "--out", str(out), "--encoder", name,
            "--max-epochs", "1", "--batch-size", "4", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    m = MultiTaskClassifier.from_pretrained(out)
    assert m.metadata["encoder"] == name and m.metadata["finished"]
    assert type(m.preprocessor).__name__ == ("WhisperFeatureExtractor" if name == "tiny-whisper"
                                             else "Wav2Vec2FeatureExtractor")
    assert type(load_encoder(out)).__name__ == ("WhisperEncoder" if name == "tiny-whisper" else "Data2VecAudioModel")
