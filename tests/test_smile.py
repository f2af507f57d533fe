"The `opensmile` method end to end: `spft fewshot --method opensmile` into one store with `linear`, across processes."
import json, os, subprocess, sys
from pathlib import Path
import opensmile

from speech_prefinetune.cli import main as spft
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune.fewshot import sample_fewshot_multiclass
from speech_prefinetune.grid import load_results

from method_fixtures import CLI, ROOT, esd_root, fewshot_args   # noqa: F401 (esd_root: a fixture)





def chunks(cache):
    return sorted((Path(cache) / "opensmile").glob("*/*/*.safetensors"))


def test_opensmile_beside_linear(esd_root, tmp_path):
    "Rows under NAME@opensmile-...; paired with `linear`; features once per clip, read back by another process."
    results, cache = tmp_path / "results", tmp_path / "cache"
    smile = ["--method", "opensmile", "--smile-set", "eGeMAPSv02", "--standardize"]
    assert spft(fewshot_args(esd_root, results, cache, *smile)) == 0
    stored = [c.parent.parent.name for c in chunks(cache)]
    assert stored == [f"eGeMAPSv02-opensmile{opensmile.__version__}"]   # one speaker: one chunk
    assert spft(fewshot_args(esd_root, results, cache, "--method", "linear")) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = fewshot_args(esd_root, results, cache, *smile, "--smile-head", "mlp")
    subprocess.run([sys.executable, "-c", CLI, *args], cwd=ROOT, env=env, check=True, timeout=600)
    assert len(chunks(cache)) == 1   # the other process read the stored functionals, computed none
    df = load_results(results)
    names = ["tiny-wav2vec2@linear", "tiny-wav2vec2@opensmile-egemaps-mlp-std", "tiny-wav2vec2@opensmile-egemaps-std"]
    assert sorted(df.model.unique()) == names
    cells = ["emotion", "k", "trial"]
    runs = {m: df[df.model == m].sort_values(cells).reset_index(drop=True) for m in names}
    assert all(len(r) == 8 for r in runs.values())
    assert runs[names[1]].train_ids.tolist() == runs[names[2]].train_ids.tolist() == runs[names[0]].train_ids.tolist()
    for name in names[1:]:
        r = runs[name]
        assert set(r.method) == {"opensmile"} and set(r.corpora) == {"base"} and set(r.device) == {"cpu"}
        assert r.macro_f1.between(0, 1).all() and (r.epochs == 0).all() and r.config_id.nunique() == 1
    before = {f: f.read_bytes() for f in results.glob("*/*.jsonl")}
    assert spft(fewshot_args(esd_root, results, cache, *smile)) == 0   # done: nothing runs, nothing is written
    assert {f: f.read_bytes() for f in results.glob("*/*.jsonl")} == before


def test_opensmile_multiclass(esd_root, tmp_path):
    "`--task multiclass`: one cell per (k, trial), k clips of each emotion, the multi-class draw."
    results, cache = tmp_path / "results", tmp_path / "cache"
    args = fewshot_args(esd_root, results, cache, "--method", "opensmile", "--smile-set", "eGeMAPSv02",
                        "--task", "multiclass")
    del args[args.index("--emotions"):args.index("--emotions") + 2]
    args[args.index("2,4")] = "1,3"
    assert spft(args) == 0
    df = load_results(results)
    assert df.model.unique().tolist() == ["tiny-wav2vec2@opensmile-egemaps-mc"]
    esd = load_corpus("esd", esd_root)
    df = df.sort_values(["k", "trial"])
    assert set(df.emotion) == {"all"} and list(zip(df.k, df.trial)) == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert df.train_ids.tolist() == [sample_fewshot_multiclass(esd, "0011", k, t) for k, t in zip(df.k, df.trial)]
    assert df.f1_pos.isna().all() and df.macro_f1.between(0, 1).all()


def test_smile_rows_record_the_model_corpora(tmp_path):
    "An opensmile row of a pre-finetuned folder records its corpora (not `base`); a tiny name or hub id is base."
    from speech_prefinetune.smile import smile_corpora
    (tmp_path / "spft_model.json").write_text(json.dumps({"metadata": {"corpora": ["iemocap"]}}))
    assert smile_corpora(str(tmp_path)) == smile_corpora(tmp_path) != "base"
    assert smile_corpora("tiny-wav2vec2") == "base"
