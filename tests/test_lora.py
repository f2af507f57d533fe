"`spft fewshot --method lora` end to end: one store with `full`, paired draws, reproducible in another process."
import os, subprocess, sys
import pandas as pd

from speech_prefinetune.cli import main as spft
from speech_prefinetune.grid import load_results

from functools import partial
from method_fixtures import CLI, ROOT, esd_root, fewshot_args   # noqa: F401 (esd_root: a fixture)

fewshot_args = partial(fewshot_args, emotions="angry", settings=("--max-epochs", "2"))

CELLS = ["emotion", "k", "trial"]




def records(results, model):
    df = load_results(results)
    return df[df.model == model].drop(columns=["seconds"]).sort_values(CELLS).reset_index(drop=True)


def test_lora_beside_full_and_reproducible(esd_root, tmp_path):
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert spft(fewshot_args(esd_root, results, cache, "--method", "lora")) == 0
    assert spft(fewshot_args(esd_root, results, cache)) == 0
    assert sorted(load_results(results).model.unique()) == ["tiny-wav2vec2", "tiny-wav2vec2@lora"]
    lora, full = records(results, "tiny-wav2vec2@lora"), records(results, "tiny-wav2vec2")
    assert len(lora) == len(full) == 4
    assert lora.train_ids.tolist() == full.train_ids.tolist()   # paired: the same draws
    assert set(lora.method) == {"lora"} and set(lora.trainable_params) == {2 * 2 * 8 * 64 + 66}
    assert lora.config_id.nunique() == 1 and lora.config_id.iloc[0] != full.config_id.iloc[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    again = fewshot_args(esd_root, tmp_path / "again", tmp_path / "cache2", "--method", "lora")
    subprocess.run([sys.executable, "-c", CLI, *again], env=env, check=True, capture_output=True)
    pd.testing.assert_frame_equal(records(tmp_path / "again", "tiny-wav2vec2@lora").drop(columns=["device"]),
                                  lora.drop(columns=["device"]), check_dtype=False)


def test_lora_settings_name_the_model(esd_root, tmp_path):
    "WavLM with adapters on q, k and v and rank 4: its own model name, its settings' trainable count."
    results = tmp_path / "results"
    args = fewshot_args(esd_root, results, tmp_path / "cache", "--method", "lora", "--lora-rank", "4",
                        "--lora-targets", "q_proj,k_proj,v_proj", model="tiny-wavlm")
    assert spft(args) == 0
    df = load_results(results)
    assert df.model.unique().tolist() == ["tiny-wavlm@lora-r4-q_proj+k_proj+v_proj"]
    assert set(df.trainable_params) == {2 * 3 * 4 * 64 + 66} and len(df) == 4
