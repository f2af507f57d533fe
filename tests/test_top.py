"`top:N` end to end: `spft fewshot --method top:1` beside `full` in one store, its layer cache reused by another process."
import os, subprocess, sys
from pathlib import Path
import pandas as pd

from speech_prefinetune.cli import main as spft
from speech_prefinetune.grid import load_results

from functools import partial
from method_fixtures import CLI, ROOT, esd_root, fewshot_args   # noqa: F401 (esd_root: a fixture)

fewshot_args = partial(fewshot_args, trials=1, settings=("--max-epochs", "2", "--patience", "2"))





def layer_chunks(cache):
    return sorted((Path(cache) / "layers").glob("*/*/*.safetensors"))


def test_top_beside_full_and_reused_by_another_process(esd_root, tmp_path):
    "top:1 rows of their own, paired with full's; one layer-cache chunk; a second process reads it, same records."
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert spft(fewshot_args(esd_root, results, cache, "--method", "top:1")) == 0
    assert spft(fewshot_args(esd_root, results, cache)) == 0
    before = layer_chunks(cache)
    assert len(before) == 1 and before[0].parent.parent.name.endswith("-layer1")   # one speaker, layer 1 of 2
    df = load_results(results)
    cells = ["emotion", "k", "trial"]
    top = df[df.model != "tiny-wav2vec2"].sort_values(cells).reset_index(drop=True)
    full = df[df.model == "tiny-wav2vec2"].sort_values(cells).reset_index(drop=True)
    assert len(top) == len(full) == 4 and top.model.nunique() == 1 and top.model.iloc[0].startswith("tiny-wav2vec2@")
    assert set(top.method) == {"top:1"} and full["method"].isna().all()
    assert top.train_ids.tolist() == full.train_ids.tolist()   # paired: the same draws
    assert top.config_id.iloc[0] != full.config_id.iloc[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    again = tmp_path / "again"
    subprocess.run([sys.executable, "-c", CLI, *fewshot_args(esd_root, again, cache, "--method", "top:1")], env=env,
                   check=True, capture_output=True)
    assert layer_chunks(cache) == before   # read, not computed again
    rerun = load_results(again).sort_values(cells).reset_index(drop=True)
    pd.testing.assert_frame_equal(rerun.drop(columns=["seconds"]), top.drop(columns=["seconds"]))


def test_top_refuses_more_layers_than_the_encoder_has(esd_root, tmp_path, capsys):
    assert spft(fewshot_args(esd_root, tmp_path / "r", tmp_path / "c", "--method", "top:3")) == 2
    assert "has 2 transformer layers" in capsys.readouterr().err
