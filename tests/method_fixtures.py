"What the end-to-end tests of the few-shot methods share: a tiny synthetic ESD, `spft fewshot`'s arguments, `spft`."
from pathlib import Path
import pytest
import torch

from speech_prefinetune.synth import synth_corpora

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from speech_prefinetune.cli import main; sys.exit(main(sys.argv[1:]))"   # `spft` in a subprocess


@pytest.fixture(scope="module")
def esd_root(tmp_path_factory):
    "A tiny synthetic ESD, written once per test module (import this fixture into the module)."
    torch.set_num_threads(1)
    return synth_corpora(tmp_path_factory.mktemp("corpora"), size="tiny", corpora=("esd",))["esd"]


def fewshot_args(esd_root, results, cache, *extra, model="tiny-wav2vec2", emotions="angry,sad", trials=2,
                 settings=()):
    "`spft fewshot` of `model` on speaker 0011, k = 2, 4 into `results`, cached under `cache`; `settings`, then `extra`."
    return ["fewshot", "--models", model, "--esd", str(esd_root), "--results", str(results), "--cache-dir", str(cache),
            "--speakers", "0011", "--emotions", emotions, "--k", "2,4", "--trials", str(trials), *map(str, settings),
            "--quiet", *map(str, extra)]
