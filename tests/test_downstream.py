"""Another downstream corpus end to end: `spft fewshot --downstream ravdess --root ...` (full and linear), the
per-speaker split, the leakage guard, then `spft report` on the results."""
import json
from pathlib import Path
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from speech_prefinetune.cli import main as spft
from speech_prefinetune.core import LABELS, UserError
from speech_prefinetune.config import TrialConfig
from speech_prefinetune.fewshot import sample_fewshot, sample_fewshot_multiclass
from speech_prefinetune.grid import downstream_table, load_results, run_grid
from speech_prefinetune.methods import make_runner
from speech_prefinetune.model import MultiTaskClassifier
from speech_prefinetune.synth import synth_corpora

GRID = ["--speakers", "01,02", "--emotions", "calm,sad", "--k", "2", "--trials", "1", "--max-epochs", "2",
        "--patience", "2", "--quiet"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    torch.set_num_threads(1)
    return synth_corpora(tmp_path_factory.mktemp("corpora"), size="tiny", corpora=("esd", "ravdess"))


def refused(capsys, args, says):
    "`spft ARGS` exits 2 with `says` in its one-line message."
    assert spft(list(map(str, args))) == 2
    assert says in capsys.readouterr().err


def fewshot_args(roots, results, cache, *extra):
    return ["fewshot", "--models", "tiny-wav2vec2", "--downstream", "ravdess", "--root", str(roots["ravdess"]),
            "--results", str(results), "--cache-dir", str(cache), *GRID, *map(str, extra)]


def fewshot(roots, results, cache, *extra):
    return spft(["fewshot", "--models", "tiny-wav2vec2", "--downstream", "ravdess", "--root", str(roots["ravdess"]),
                 "--results", str(results), "--cache-dir", str(cache), *GRID, *map(str, extra)])


@pytest.fixture(scope="module")
def store(roots, tmp_path_factory):
    "A RAVDESS store with `full` and `linear` rows, and an ESD grid's rows beside them."
    tmp = tmp_path_factory.mktemp("store")
    results, cache = tmp / "results", tmp / "cache"
    assert fewshot(roots, results, cache) == 0
    assert fewshot(roots, results, cache, "--method", "linear") == 0
    assert spft(["fewshot", "--models", "tiny-wav2vec2", "--esd", str(roots["esd"]), "--results", str(results),
                 "--cache-dir", str(cache), "--speakers", "0011", "--emotions", "angry,sad", "--k", "2",
                 "--trials", "1", "--max-epochs", "2", "--patience", "2", "--quiet"]) == 0
    return results, cache


def test_ravdess_rows_are_ravdess_trials(roots, store):
    "Rows under tiny-wav2vec2 and tiny-wav2vec2@linear, downstream ravdess, paired draws from the split's train clips."
    results, _ = store
    df = load_results(results)
    rav = df[df.downstream == "ravdess"]
    assert len(rav) == 2 * 2 * 2 and set(rav.model) == {"tiny-wav2vec2", "tiny-wav2vec2@linear"}
    assert set(rav.emotion) == {"calm", "sad"} and set(rav.language) == {"en"} and set(rav.speaker) == {"01", "02"}
    assert len(df[df.downstream == "esd"]) == 2 and set(df[df.downstream == "esd"].speaker) == {"0011"}
    table = downstream_table("ravdess", roots["ravdess"])
    for _, r in rav.iterrows():
        assert r.train_ids == sample_fewshot(table, r.speaker, r.emotion, 2, 0)   # paired: the same clips per method
        assert set(table.set_index("utt_id").loc[r.train_ids, "split"]) == {"train"}
    files = sorted(p.relative_to(results).as_posix() for p in results.glob("*/*.jsonl"))
    assert files == ["tiny-wav2vec2--linear/ravdess-01.jsonl", "tiny-wav2vec2--linear/ravdess-02.jsonl",
                     "tiny-wav2vec2/0011.jsonl", "tiny-wav2vec2/ravdess-01.jsonl", "tiny-wav2vec2/ravdess-02.jsonl"]


def test_rerun_writes_nothing_and_another_split_is_refused(roots, store, capsys):
    results, cache = store
    before = {p: p.read_bytes() for p in results.glob("*/*.jsonl")}
    assert fewshot(roots, results, cache) == 0
    assert {p: p.read_bytes() for p in results.glob("*/*.jsonl")} == before
    refused(capsys, fewshot_args(roots, results, cache, "--test-per-label", "1"), "another split of speaker 01")
    assert {p: p.read_bytes() for p in results.glob("*/*.jsonl")} == before


def test_multiclass_over_ravdess_emotions(roots, tmp_path):
    "Multi-class trials on RAVDESS: one class per emotion of the table, in LABELS order, scored over all of them."
    table = downstream_table("ravdess", roots["ravdess"])
    with pytest.raises(UserError, match="ravdess: speaker 01: 0 train clips of 'neutral'; multiclass k=1"):
        run_grid("tiny-wav2vec2", results=tmp_path / "r", table=table, speakers="01", k=1, trials=1,
                 config=TrialConfig(task="multiclass"), progress=False)
    table = table[table.label != "neutral"]                    # 2 clips per actor at this size: all held out
    emotions = [e for e in LABELS["ravdess"] if e != "neutral"]
    for method in ("full", "linear", "prototype", "top:1", "lora"):
        runner = make_runner("tiny-wav2vec2", table, "01", TrialConfig(method=method, task="multiclass", max_epochs=2))
        assert runner.emotions == tuple(emotions)
        r = runner.run("all", 1, 0, return_predictions=True)
        assert r["train_ids"] == sample_fewshot_multiclass(table, "01", 1, 0) and len(r["train_ids"]) == 7
        truth = table.set_index("utt_id").loc[r["test_ids"], "label"].map(emotions.index).to_numpy()
        assert set(r["test_pred"]) <= set(range(7)), method
        assert r["macro_f1"] == f1_score(truth, r["test_pred"], labels=range(7), average="macro", zero_division=0)


def test_too_small_speaker_names_speaker_emotion_and_split(roots, tmp_path, capsys):
    refused(capsys, fewshot_args(roots, tmp_path / "r", tmp_path / "c", "--emotions", "neutral"),
            "ravdess: speaker 01: 0 train clips of 'neutral' and 7 of other emotions; k=2 needs 1 of each (the "
            "per-speaker split keeps 1 validation and 2 test clips")
    refused(capsys, ["fewshot", "--models", "m", "--esd", roots["esd"], "--downstream", "ravdess", "--results", "r"],
            "--esd ROOT is ESD's root")


def test_leakage_guard(roots, tmp_path, capsys):
    "A model pre-finetuned on RAVDESS is refused on RAVDESS unless --allow-leakage; it is fine on ESD."
    m = MultiTaskClassifier.from_encoder("tiny-wav2vec2", {"ravdess": LABELS["ravdess"]})
    folder = tmp_path / "models" / "ravdess"
    m.save_pretrained(folder, metadata={"corpora": ["ravdess"]})
    assert json.loads((folder / "spft_model.json").read_text())["corpora"] == ["ravdess"]
    args = ["fewshot", "--models", str(folder), "--downstream", "ravdess", "--root", str(roots["ravdess"]),
            "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), *GRID]
    refused(capsys, args, "model ravdess was pre-finetuned on ravdess, the downstream corpus")
    assert not (tmp_path / "r").exists()                                   # refused before anything ran
    with pytest.warns(UserWarning, match="allowed"):
        assert spft([*args, "--speakers", "01", "--emotions", "sad", "--allow-leakage"]) == 0
    assert set(load_results(tmp_path / "r").corpora) == {"ravdess"}
    assert spft(["fewshot", "--models", str(folder), "--esd", str(roots["esd"]), "--results", str(tmp_path / "e"),
                 "--cache-dir", str(tmp_path / "c"), "--speakers", "0011", "--emotions", "sad", "--k", "2",
                 "--trials", "1", "--max-epochs", "1", "--quiet"]) == 0


def test_report_on_a_ravdess_store(store, tmp_path):
    results, _ = store
    out = tmp_path / "report"
    assert spft(["report", str(results), "--out", str(out), "--formats", "html", "--n-boot", "50"]) == 0
    assert (out / "report.html").is_file() and "ravdess" in (out / "report.html").read_text()
    fig4 = pd.read_csv(out / "fig4.csv")
    assert {"calm", "angry"} <= set(fig4.emotion)     # RAVDESS's calm beside ESD's angry: emotions from the data
    assert set(pd.read_csv(out / "vs_constant.csv").model) == {"tiny-wav2vec2", "tiny-wav2vec2@linear"}


def test_a_store_from_before_other_corpora_reads_as_esd_and_resumes_unchanged(roots, tmp_path):
    "Records without `downstream` and `split_id` (written before them): read as esd, resumed without running anything."
    kw = dict(results=tmp_path / "r", speakers="0011", emotions="sad", k=2, trials=1, max_epochs=1, progress=False,
              cache_dir=tmp_path / "c")
    first = run_grid("tiny-wav2vec2", roots["esd"], **kw)
    shard = tmp_path / "r" / "tiny-wav2vec2" / "0011.jsonl"
    old = [{k: v for k, v in json.loads(line).items() if k not in ("downstream", "split_id")}
           for line in shard.read_text().splitlines()]
    shard.write_text("".join(json.dumps(r) + "\n" for r in old))
    before = shard.read_bytes()
    again = run_grid("tiny-wav2vec2", roots["esd"], **kw)
    assert shard.read_bytes() == before and again.downstream.tolist() == ["esd"]
    assert again.macro_f1.tolist() == first.macro_f1.tolist()


def test_split_options_on_a_corpus_with_its_own_split_are_refused(roots, tmp_path, capsys):
    "--valid/--test-per-label would do nothing where the corpus keeps its own split (ESD, a manifest's split column)."
    refused(capsys, ["fewshot", "--models", "tiny-wav2vec2", "--esd", roots["esd"], "--results", tmp_path / "r",
                     "--test-per-label", "4", *GRID], "esd: it keeps its own split")
    assert not (tmp_path / "r").exists()
    rav = downstream_table("ravdess", roots["ravdess"])
    manifest = tmp_path / "m.csv"
    rav.assign(language="en")[["path", "speaker", "label", "split", "language"]].to_csv(manifest, index=False)
    with pytest.raises(UserError, match="valid_per_label apply only"):
        downstream_table("manifest", manifest, valid_per_label=3)
    test_split = downstream_table("manifest", manifest).set_index("path")["split"]
    assert test_split.to_dict() == rav.set_index("path")["split"].to_dict()   # the manifest's split, kept
