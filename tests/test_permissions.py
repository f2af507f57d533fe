"""Everything we write honours the user's umask, so colleagues in the same group can read models, runs and caches on a
shared cluster (`mkdtemp` makes 0700 folders and safetensors 0600 files: without `core.apply_umask` they would not)."""
import os
from pathlib import Path
import pytest
from speech_prefinetune.model import MultiTaskClassifier
from speech_prefinetune.prefinetune import PrefinetuneConfig, prefinetune_tables
from speech_prefinetune.synth import toy_tables

# apply_umask itself (mkdtemp folders, mkstemp and atomic_write files) is pinned in nbs/00_core.ipynb; these are the
# end-to-end checks of what the package writes.


@pytest.fixture
def umask():
    "Set the process umask for one test (`umask(0o002)`), restored afterwards."
    old = os.umask(0o022)
    def set_(mask):
        os.umask(mask)
        return mask
    yield set_
    os.umask(old)


def modes(root):
    "`{relative path: permission bits}` of `root` and everything under it (symlinks left out)."
    root = Path(root)
    out = {".": root.stat().st_mode & 0o777}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not p.is_symlink(): out[p.relative_to(root).as_posix()] = p.stat().st_mode & 0o777
    return out


def wrong_modes(root, mask):
    "Paths under `root` whose mode is not what a plain open/mkdir under `mask` gives (files 0o666, folders 0o777)."
    root = Path(root)
    want = lambda rel: (0o777 if (root / rel).is_dir() else 0o666) & ~mask
    return {rel: oct(m) for rel, m in modes(root).items() if m != want(rel)}


@pytest.mark.parametrize("mask", [0o002, 0o077])
def test_saved_model_honours_the_umask(tmp_path, umask, mask):
    umask(mask)
    m = MultiTaskClassifier.from_encoder("tiny-wavlm", {"t": ("a", "b")}, projector_dim=4)
    out = m.save_pretrained(tmp_path / "model")
    m.save_pretrained(out)   # saving again over it (the trainer does) keeps the modes
    names = set(modes(out))
    assert {"encoder/model.safetensors", "encoder/preprocessor_config.json", "heads.safetensors"} <= names
    assert wrong_modes(out, mask) == {}
    if mask == 0o077: assert all(v & 0o077 == 0 for v in modes(out).values())   # owner-only when asked


@pytest.mark.parametrize("mask", [0o002, 0o027, 0o077])
def test_prefinetune_run_and_cache_honour_the_umask(tmp_path, umask, mask):
    "End to end: a tiny pre-finetuning run; its folder (model, metrics, checkpoint) and the audio cache it filled."
    umask(mask)
    tables = toy_tables(tmp_path / "wav", n_train=6, n_valid=3)
    cfg = PrefinetuneConfig(max_epochs=1, device="cpu", batch_size=4, cache_dir=str(tmp_path / "cache"),
                            keep_checkpoint=True)
    run = prefinetune_tables(tables, "tiny-wav2vec2", tmp_path / "run", cfg, progress=False)
    assert {"encoder/model.safetensors", "encoder/preprocessor_config.json", "heads.safetensors", "spft_model.json",
            "checkpoint.pt", "metrics.csv"} <= set(modes(run))
    problems = {"run": wrong_modes(run, mask), "cache": wrong_modes(tmp_path / "cache", mask)}
    assert problems == {"run": {}, "cache": {}}, problems
    if mask == 0o002:   # what a colleague in the group needs
        for root in (run, tmp_path / "cache"):
            for rel, m in modes(root).items():
                need = 0o050 if (Path(root) / rel).is_dir() else 0o040
                assert m & need == need, (root, rel, oct(m))
    elif mask == 0o077:
        assert all(m & 0o077 == 0 for root in (run, tmp_path / "cache") for m in modes(root).values())
