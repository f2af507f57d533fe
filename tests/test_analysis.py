"""`spft report` and the analysis tables against an independent computation (plain loops over csv rows).

The synthetic results are written in the paper scripts' own format (scaled_esd_downstream.csv): paper corpus
names hyphen-joined in random order, `Mandarin`/`English`, capitalised emotions, speakers without leading zeros.
The oracle below never uses pandas or the package's helpers: it reads the file with `csv` and computes every
figure from the definitions in DESIGN.md. The planted effects' order and the paired comparison's sign and identity
cases are pinned in nbs/08_analysis.ipynb.
"""
import argparse, csv, itertools, math, random, statistics, sys, types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from speech_prefinetune.core import UserError
from speech_prefinetune.cli import add_report_command
from speech_prefinetune.analysis import (fig2_table, fig3_table, fig4_table, paired_comparison,
                                         read_any_results, table1, write_report)

PAPER_NAMES = {"iemocap_emotion": "iemocap", "msp_improv": "msp_improv", "msp_podcast": "msp_podcast", "mandarin_aff": "mandarin_as"}
OURS = ["iemocap", "msp_improv", "msp_podcast", "mandarin_as"]
EFFECT = {"iemocap": -0.05, "msp_improv": 0.01, "msp_podcast": 0.10, "mandarin_as": 0.04}  # planted, shrinking with k
EMOTIONS = ["Neutral", "Angry", "Happy", "Sad", "Surprise"]
SPEAKERS = [1, 2, 11, 12]
KS = [2, 4, 8]
TRIALS = 3


def write_paper_csv(path, seed=0, drop=0.0):
    "A paper-format results file: all 16 corpus sets x speakers x emotions x k x trials (some rows dropped if `drop`)."
    rng = random.Random(seed)
    rows = []
    for n in range(5):
        for subset in itertools.combinations(PAPER_NAMES, n):
            for spk in SPEAKERS:
                for emo in EMOTIONS:
                    for k in KS:
                        for t in range(TRIALS):
                            if drop and rng.random() < drop: continue
                            names = list(subset); rng.shuffle(names)
                            gain = sum(EFFECT[PAPER_NAMES[c]] for c in subset) / math.log2(2 * k)
                            f1 = min(1.0, max(0.0, 0.45 + 0.05 * math.log2(k) + gain + rng.gauss(0, 0.06)))
                            rows.append({"corpora": "-".join(names) if names else "base", "speaker": spk,
                                         "language": "Mandarin" if spk <= 10 else "English", "emotion": emo, "k": k,
                                         "trial": t, "test_accuracy": round(rng.random(), 6), "test_macro_f1": round(f1, 6),
                                         "test_weighted_f1": round(f1, 6)})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    return path


# ---------------------------------------------------------------- the independent oracle
def oracle_rows(path):
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            s = frozenset(PAPER_NAMES[c] for c in r["corpora"].split("-")) if r["corpora"] != "base" else frozenset()
            out.append(dict(set=s, spk=int(r["speaker"]), lang="en" if r["language"] == "English" else "zh",
                            emo=r["emotion"].lower(), k=int(r["k"]), trial=int(r["trial"]), f1=float(r["test_macro_f1"])))
    return out

def mean(xs): return sum(xs) / len(xs)

def oracle_fig2(rows):
    groups = {}
    for r in rows: groups.setdefault((r["k"], len(r["set"])), []).append(r["f1"])
    return {key: (mean(v), statistics.stdev(v) / math.sqrt(len(v)), len(v)) for key, v in groups.items()}

def oracle_cells(rows):
    cells = {}
    for r in rows: cells.setdefault((r["spk"], r["emo"], r["k"]), {}).setdefault(r["set"], []).append(r["f1"])
    return cells

def oracle_fig3(rows):
    per_k = {}
    for (spk, emo, k), models in oracle_cells(rows).items():
        if frozenset() not in models: continue
        base = mean(models[frozenset()])
        for c in OURS:
            pooled = [f for s, fs in models.items() if c in s for f in fs]
            if pooled: per_k.setdefault((k, c), []).append(mean(pooled) - base)
    return {key: mean(v) for key, v in per_k.items()}

def oracle_table1(rows):
    cells, out = oracle_cells(rows), {}
    for k in KS:
        for c in OURS:
            a_set, b_set = frozenset([c]), frozenset(o for o in OURS if o != c)
            a, b = [], []
            for (spk, emo, kk), models in cells.items():
                if kk == k and a_set in models and b_set in models:
                    a.append(mean(models[a_set])); b.append(mean(models[b_set]))
            out[(k, c)] = (mean(a), mean(b), mean(a) - mean(b))
    return out

def oracle_fig4(rows):
    full, base = {}, {}
    for r in rows:
        key = (r["lang"], r["emo"], r["k"])
        if r["set"] == frozenset(OURS): full.setdefault(key, []).append(r["f1"])
        if r["set"] == frozenset(): base.setdefault(key, []).append(r["f1"])
    return {key: (mean(full[key]), mean(base[key])) for key in full}

def oracle_pairs(rows, a_set, b_set):
    a = {(r["spk"], r["emo"], r["k"], r["trial"]): r["f1"] for r in rows if r["set"] == a_set}
    b = {(r["spk"], r["emo"], r["k"], r["trial"]): r["f1"] for r in rows if r["set"] == b_set}
    diffs = {}
    for key in sorted(a.keys() & b.keys()): diffs.setdefault(key[2], []).append(a[key] - b[key])
    return {k: np.array(v) for k, v in diffs.items()}


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def paper_csv(tmp_path_factory):
    return write_paper_csv(tmp_path_factory.mktemp("paper") / "scaled_esd_downstream.csv")

@pytest.fixture(scope="module")
def ragged_csv(tmp_path_factory):
    return write_paper_csv(tmp_path_factory.mktemp("ragged") / "scaled_esd_downstream.csv", seed=1, drop=0.25)

def check_fig2(t, rows):
    exp = oracle_fig2(rows)
    assert list(t.columns) == ["k", "n_corpora", "mean_f1", "se", "n"] and len(t) == len(exp)
    for r in t.itertuples():
        m, se, n = exp[(r.k, r.n_corpora)]
        assert r.n == n and r.mean_f1 == pytest.approx(m, abs=1e-12) and r.se == pytest.approx(se, abs=1e-12)

def check_fig3(t, rows):
    exp = oracle_fig3(rows)
    assert list(t.columns) == ["k", "corpus", "delta_f1"] and len(t) == len(exp)
    for r in t.itertuples(): assert r.delta_f1 == pytest.approx(exp[(r.k, r.corpus)], abs=1e-12)

def check_table1(t, rows):
    exp = oracle_table1(rows)
    assert list(t.columns) == ["k", "corpus", "f1_in", "f1_ex", "delta"] and len(t) == len(exp)
    for r in t.itertuples():
        assert (r.f1_in, r.f1_ex, r.delta) == pytest.approx(exp[(r.k, r.corpus)], abs=1e-12)

def check_fig4(t, rows):
    exp = oracle_fig4(rows)
    assert list(t.columns) == ["language", "emotion", "k", "f1_full", "f1_base"] and len(t) == len(exp)
    for r in t.itertuples():
        assert (r.f1_full, r.f1_base) == pytest.approx(exp[(r.language, r.emotion, r.k)], abs=1e-12)

@pytest.mark.parametrize("which", ["paper_csv", "ragged_csv"])
def test_tables_match_oracle(which, request):
    path = request.getfixturevalue(which)
    res, rows = read_any_results(path), oracle_rows(path)
    assert len(res) == len(rows)
    check_fig2(fig2_table(res), rows); check_fig3(fig3_table(res), rows)
    check_table1(table1(res), rows); check_fig4(fig4_table(res), rows)

def test_normalised_columns(paper_csv):
    res = read_any_results(paper_csv)
    assert set(res.speaker) == {"0001", "0002", "0011", "0012"}
    assert set(res.language) == {"en", "zh"} and set(res.emotion) == {"neutral", "angry", "happy", "sad", "surprise"}
    assert res.corpora.nunique() == 16 and "iemocap+msp_improv+msp_podcast+mandarin_as" in set(res.corpora)
    assert res.groupby("corpora").n_corpora.first().to_dict()["msp_podcast+mandarin_as"] == 2
    assert ((res.language == "zh") == (res.speaker <= "0010")).all()

@pytest.mark.parametrize("which", ["paper_csv", "ragged_csv"])
def test_paired_comparison_vs_scipy(which, request):
    path = request.getfixturevalue(which)
    rows, res = oracle_rows(path), read_any_results(path)
    pc = paired_comparison(res, "iemocap_emotion-msp_improv-msp_podcast-mandarin_aff", "base", n_boot=4000, seed=3)
    diffs = oracle_pairs(rows, frozenset(OURS), frozenset())
    assert list(pc.k) == sorted(diffs)
    for r in pc.itertuples():
        d = diffs[r.k]
        assert r.n == len(d) and r.mean_diff == pytest.approx(d.mean(), abs=1e-12)
        assert r.p_wilcoxon == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-9)
        ref = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=4000, rng=np.random.default_rng(99)).confidence_interval
        width = ref.high - ref.low
        assert abs(r.ci_low - ref.low) < 0.1 * width and abs(r.ci_high - ref.high) < 0.1 * width
    again = paired_comparison(res, "full", "base", n_boot=4000, seed=3)
    pd.testing.assert_frame_equal(pc, again)  # seeded, and `full` names the same model

def test_report_cli_writes_contract_files(paper_csv, tmp_path):
    p = argparse.ArgumentParser(); sub = p.add_subparsers(); add_report_command(sub)
    args = p.parse_args(["report", str(paper_csv), "--out", str(tmp_path / "rep"), "--formats", "svg,png", "--n-boot", "500"])
    assert args.func(args) == 0
    out, rows = tmp_path / "rep", oracle_rows(paper_csv)
    check_fig2(pd.read_csv(out / "fig2.csv"), rows); check_fig3(pd.read_csv(out / "fig3.csv"), rows)
    check_table1(pd.read_csv(out / "table1.csv"), rows); check_fig4(pd.read_csv(out / "fig4.csv"), rows)
    for n in ("fig2", "fig3", "fig4"):
        assert (out / f"{n}.svg").read_text().startswith("<svg")
        assert (out / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count("<svg") >= 3 and "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "MSP-PODCAST" in page and "Table 1" in page

def test_report_html_chart_is_self_contained(paper_csv, tmp_path):
    rep = write_report(paper_csv, tmp_path, formats=("html",), n_boot=100)
    chart = (rep.parent / "fig2.html").read_text()
    assert "vegaEmbed" in chart and "<script src=" not in chart  # vega bundled inline, works offline

def test_our_csv_and_paper_csv_agree(paper_csv, tmp_path):
    res = read_any_results(paper_csv)
    ours = tmp_path / "ours.csv"
    res.to_csv(ours, index=False)
    again = read_any_results(ours)
    for f in (fig2_table, fig3_table, table1, fig4_table): pd.testing.assert_frame_equal(f(res), f(again))

def test_results_store_directory(tmp_path, monkeypatch, paper_csv):
    "A directory goes through grid.load_results; its frame (contract columns) is normalised like the CSV."
    res = read_any_results(paper_csv)
    store = res[["model", "corpora", "speaker", "language", "emotion", "k", "trial", "macro_f1", "accuracy"]].copy()
    store["model"] = "runs/" + store["corpora"]
    store["train_ids"] = [["0001_000051", "0001_000400"]] * len(store)
    seen = []
    def load_results(path): seen.append(Path(path)); return store
    monkeypatch.setitem(sys.modules, "speech_prefinetune.grid", types.SimpleNamespace(load_results=load_results))
    got = read_any_results(tmp_path)
    assert seen == [tmp_path] and list(got.columns[:10]) == list(res.columns[:10]) and "train_ids" in got.columns
    pd.testing.assert_frame_equal(fig3_table(got), fig3_table(res))
    pc = paired_comparison(got, "runs/iemocap+msp_improv+msp_podcast+mandarin_as", "runs/base", n_boot=100)
    assert len(pc) == len(KS)
    monkeypatch.setitem(sys.modules, "speech_prefinetune.grid", types.SimpleNamespace(load_results=lambda p: store.iloc[:0]))
    with pytest.raises(UserError, match="no finished trials"): read_any_results(tmp_path)


def _lines(path): return Path(path).read_text().splitlines()

@pytest.mark.parametrize("edit, message", [
    (lambda ls: [], "empty file"),
    (lambda ls: ls[:1], "no result rows"),
    (lambda ls: [ls[0].replace("test_accuracy", "acc")] + ls[1:], "missing column(s) test_accuracy"),
    (lambda ls: [ls[0].replace(",test_macro_f1", ",f1")] + ls[1:], "not a results file"),
    (lambda ls: ls[:5] + [ls[5].replace("Angry", "Bored").replace("Neutral", "Bored")] + ls[6:], "line 6: bad emotion 'Bored'"),
    (lambda ls: ls[:3] + ["timit" + ls[3][4:]] + ls[4:], "line 4: bad corpora 'timit'"),   # ravdess is registered
    (lambda ls: ls[:2] + [ls[2].replace("Mandarin", "Klingon")] + ls[3:], "line 3: bad language 'Klingon'"),
    (lambda ls: ls + ["base,1,Mandarin,Angry,2,0,0.5,1.7,0.5"], "bad test_macro_f1"),
    (lambda ls: ls + ["base,1,Mandarin,Angry,two,0,0.5,0.5,0.5"], "bad k 'two'"),
    (lambda ls: ls + ["base,1,Mandarin,Angry,2"], "bad trial nan"),
    (lambda ls: ls + ['"base,1,Mandarin'], "not a readable CSV"),
])
def test_malformed_inputs(paper_csv, tmp_path, edit, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(edit(_lines(paper_csv))) + "\n")
    p = argparse.ArgumentParser(); sub = p.add_subparsers(); add_report_command(sub)
    args = p.parse_args(["report", str(bad), "--out", str(tmp_path / "out")])
    with pytest.raises(UserError) as e: args.func(args)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg
    assert message.replace("test_", "") in msg.replace("test_", ""), msg

def test_missing_and_binary_inputs(tmp_path):
    with pytest.raises(UserError, match="results not found"): read_any_results(tmp_path / "nope.csv")
    b = tmp_path / "results.csv"; b.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match="results.csv"): read_any_results(b)

def test_bad_formats_option(paper_csv, tmp_path):
    p = argparse.ArgumentParser(); sub = p.add_subparsers(); add_report_command(sub)
    args = p.parse_args(["report", str(paper_csv), "--out", str(tmp_path), "--formats", "svg,pdf"])
    with pytest.raises(UserError, match="pdf"): args.func(args)


def test_real_results_store(paper_csv, tmp_path):
    "Through grid's own store: shard files written with grid.append_record, read back by read_any_results."
    grid = pytest.importorskip("speech_prefinetune.grid", reason="grid needs the model module (merged by the lead)")
    res = read_any_results(paper_csv)
    store = tmp_path / "results"
    for (model, spk), g in res.groupby(["corpora", "speaker"]):
        fd = grid.open_shard(grid.shard_file(store, model, spk))
        for r in g.itertuples():
            grid.append_record(fd, {"model": model, "corpora": model, "speaker": spk, "language": r.language,
                                    "emotion": r.emotion, "k": int(r.k), "trial": int(r.trial), "seed": 0,
                                    "macro_f1": r.macro_f1, "accuracy": r.accuracy, "train_ids": ["0001_000051"]})
    got = read_any_results(store)
    assert len(got) == len(res) and "seed" in got.columns
    rows = oracle_rows(paper_csv)
    check_fig2(fig2_table(got), rows); check_fig3(fig3_table(got), rows)
    check_table1(table1(got), rows); check_fig4(fig4_table(got), rows)
    one = read_any_results(grid.shard_file(store, "base", "0011"))  # a single shard file
    assert set(one.speaker) == {"0011"} and set(one.corpora) == {"base"}
    empty = tmp_path / "empty"; empty.mkdir()
    with pytest.raises(UserError, match="no finished trials"): read_any_results(empty)


# ---------------------------------------------------------------- adaptation methods and the constant baseline
METHODS = {"base": ("", 0.0), "base@linear": ("linear", -0.08), "base@top2": ("top:2", -0.02)}   # model: method, shift

def write_methods_csv(path, seed=0):
    "Our CSV format: three binary methods of one model (paired cells) and a multi-class run (`@full-mc`, emotion all)."
    rng = random.Random(seed)
    rows = []
    for spk in ("0001", "0011"):
        for k in (2, 4):
            for t in range(2):
                cell = [(emo, 0.5 + rng.gauss(0, 0.1)) for emo in ("angry", "sad", "happy")]
                for model, (method, shift) in METHODS.items():
                    rows += [dict(model=model, method=method, corpora="base", speaker=spk, language="zh" if spk == "0001" else "en",
                                  emotion=emo, k=k, trial=t, macro_f1=round(f1 + shift, 6), accuracy=0.5) for emo, f1 in cell]
                rows.append(dict(model="base@full-mc", method="full", corpora="base", speaker=spk,
                                 language="zh" if spk == "0001" else "en", emotion="all", k=k, trial=t,
                                 macro_f1=round(0.2 + rng.random() / 10, 6), accuracy=0.3))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    return path, rows

def constant_oracle(labels, predict):
    "scikit-learn's macro-F1 of one constant prediction on a test split's labels."
    from sklearn.metrics import f1_score
    return f1_score(labels, [predict] * len(labels), labels=sorted(set(labels)), average="macro", zero_division=0)

def test_report_compares_methods_beside_constants(tmp_path, capsys):
    from speech_prefinetune.cli import main as spft
    from speech_prefinetune.synth import synth_corpora
    esd = synth_corpora(tmp_path / "corpora", size="tiny", corpora=("esd",))["esd"]
    for wav in sorted((Path(esd) / "0001" / "Angry" / "test").glob("*.wav"))[:3]:
        wav.unlink()   # speaker 0001's test split: 3 angry clips of 27, the other speaker 6 of 30
    test_labels = {spk: [p.parent.parent.name.lower() for p in sorted((Path(esd) / spk).glob("*/test/*.wav"))]
                   for spk in ("0001", "0011")}
    csv_path, rows = write_methods_csv(tmp_path / "results.csv")
    out = tmp_path / "rep"
    args = ["report", str(csv_path), "--out", str(out), "--formats", "svg", "--n-boot", "300", "--esd", str(esd)]
    assert spft(args + ["--compare", "base@linear,base@top2"]) == 0
    assert "constant prediction 'rest'" in capsys.readouterr().out
    # Fig. 2 per method: binary rows of each method, constants from the true test splits, averaged over the same rows
    f2 = pd.read_csv(out / "fig2_methods.csv")
    assert f2.method.tolist() == ["full", "full", "linear", "linear", "top2", "top2"]
    binary = [r for r in rows if r["emotion"] != "all"]
    for r in f2.itertuples():
        mine = [x for x in binary if METHODS[x["model"]][0].replace(":", "") == (r.method if r.method != "full" else "")
                and x["k"] == r.k]
        assert r.n == len(mine) and r.mean_f1 == pytest.approx(mean([x["macro_f1"] for x in mine]), abs=1e-9)
        rest = mean([constant_oracle([int(e == x["emotion"]) for e in test_labels[x["speaker"]]], 0) for x in mine])
        emo = mean([constant_oracle([int(e == x["emotion"]) for e in test_labels[x["speaker"]]], 1) for x in mine])
        assert (r.const_rest_f1, r.const_emotion_f1) == pytest.approx((rest, emo), abs=1e-12)
        assert r.gain_over_const == pytest.approx(r.mean_f1 - rest, abs=1e-12)
    assert f2.const_rest_f1.iloc[0] != pytest.approx(4 / 9)   # the missing clips count
    f4 = pd.read_csv(out / "fig4_methods.csv")
    assert set(f4.method) == {"full", "linear", "top2"} and f4.f1_full.isna().all() and len(f4) == 3 * 2 * 3 * 2
    # multi-class: its own table, against the majority constant of each speaker's test split
    mc = pd.read_csv(out / "multiclass.csv")
    assert mc.method.unique().tolist() == ["full-mc"] and mc.n.tolist() == [4, 4]
    majority = mean([constant_oracle(test_labels[s], max(set(test_labels[s]), key=test_labels[s].count))
                     for s in ("0001", "0011")])
    assert mc.const_majority_f1.tolist() == pytest.approx([majority] * 2, abs=1e-12)
    # paired differences of every two binary methods of `base`, and of the chosen pair
    pairs = pd.read_csv(out / "paired_methods.csv")
    assert list(dict.fromkeys(zip(pairs.model_a, pairs.model_b))) == [
        ("base@linear", "base"), ("base@top2", "base"), ("base@top2", "base@linear")]
    assert pairs.mean_diff.tolist() == pytest.approx([-0.08, -0.08, -0.02, -0.02, 0.06, 0.06], abs=1e-6)
    assert pairs.n.tolist() == [12] * 6   # per k: 2 speakers x 3 emotions x 2 trials
    compare = pd.read_csv(out / "compare.csv")
    flipped = pairs.iloc[4:].reset_index(drop=True)   # top2 - linear there, linear - top2 here
    assert (compare.model_a.unique().tolist(), compare.model_b.unique().tolist()) == (["base@linear"], ["base@top2"])
    assert compare.mean_diff.tolist() == pytest.approx((-flipped.mean_diff).tolist(), abs=1e-12)
    assert compare.mean_a.tolist() == pytest.approx(flipped.mean_b.tolist(), abs=1e-12)
    # each model and method against always predicting "rest" (multi-class: the majority), trial by trial
    vc = pd.read_csv(out / "vs_constant.csv").set_index(["model", "k"])
    for model in METHODS:
        for k in (2, 4):
            mine = [x for x in binary if x["model"] == model and x["k"] == k]
            rest = [constant_oracle([int(e == x["emotion"]) for e in test_labels[x["speaker"]]], 0) for x in mine]
            d = np.array([x["macro_f1"] for x in mine]) - np.array(rest)
            assert vc.loc[(model, k), "mean_diff"] == pytest.approx(d.mean(), abs=1e-9)
            assert vc.loc[(model, k), "p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-9)
    assert vc.loc[("base@full-mc", 2), "constant"] == "majority"
    page = (out / "report.html").read_text()
    for heading in ("Fig. 2 per method", "Fig. 4 per method", "Multi-class trials", "Paired differences between methods",
                    "Paired comparison of the chosen models", f"read from {esd}"):
        assert heading in page, heading
    # a rerun without them leaves none of the method files behind
    full_only = tmp_path / "full.csv"
    pd.read_csv(csv_path).query("model == 'base'").to_csv(full_only, index=False)
    assert spft(["report", str(full_only), "--out", str(out), "--formats", "svg", "--n-boot", "100"]) == 0
    for name in ("compare", "multiclass", "methods", "paired_methods"):   # vs_constant.csv: rewritten
        assert not (out / f"{name}.csv").exists(), name
    assert pd.read_csv(out / "fig2_methods.csv").const_rest_f1.tolist() == pytest.approx([4 / 9] * 2)   # p = 1/5
    assert "assume each emotion is 1/5" in (out / "report.html").read_text()

def test_report_compare_names_unknown_models(tmp_path, capsys):
    from speech_prefinetune.cli import main as spft
    csv_path, _ = write_methods_csv(tmp_path / "results.csv")
    assert spft(["report", str(csv_path), "--out", str(tmp_path / "rep"), "--compare", "base@lora,base"]) == 2
    err = capsys.readouterr().err
    assert "model 'base@lora' not in the results" in err and "base@linear" in err and "\n" not in err.strip()

def test_report_of_multiclass_trials_only(tmp_path):
    "A store of multi-class trials alone: the paper's tables are empty (they read binary trials), multiclass.csv is not."
    csv_path, rows = write_methods_csv(tmp_path / "results.csv")
    only = tmp_path / "mc.csv"
    pd.read_csv(csv_path).query("emotion == 'all'").to_csv(only, index=False)
    rep = write_report(only, tmp_path / "rep", formats=("svg",), n_boot=100)
    assert len(pd.read_csv(rep.parent / "fig2.csv")) == 0 and len(pd.read_csv(rep.parent / "fig2_methods.csv")) == 0
    mc = pd.read_csv(rep.parent / "multiclass.csv")
    assert mc.mean_f1.tolist() == pytest.approx([mean([r["macro_f1"] for r in rows if r["emotion"] == "all" and r["k"] == k])
                                                 for k in (2, 4)])
    assert "Multi-class trials" in rep.read_text()


# ---------------------------------------------------------------- any pool of corpora, any downstream corpus
RAV_EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"]
POOL = ["crema_d", "ravdess", "emodb"]   # three pre-finetuning corpora beyond the paper's (rank order)

def write_pool_csv(path, seed=1):
    "RAVDESS downstream results of the 2N + 1 design (singles, leave-one-out, all) and base, beside a few ESD rows."
    rng, rows = random.Random(seed), []
    sets = [()] + [(c,) for c in POOL] + [tuple(o for o in POOL if o != c) for c in POOL] + [tuple(POOL)]
    for s in sets:
        for spk in ("01", "02"):
            for emo in RAV_EMOTIONS:
                for k in (2, 8):
                    for t in range(2):
                        rows.append(dict(corpora="+".join(s) or "base", downstream="ravdess", speaker=spk, language="en",
                                         emotion=emo, k=k, trial=t, macro_f1=round(rng.uniform(0.3, 0.9), 6)))
    for emo in ("neutral", "happy", "sad"):   # ESD rows of the base model: they meet RAVDESS's on common emotions
        rows.append(dict(corpora="base", downstream="", speaker="11", language="English", emotion=emo.capitalize(), k=2,
                         trial=0, macro_f1=0.5))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    return path, rows

def test_report_of_any_pool_and_downstream_corpus(tmp_path, capsys):
    "Fig. 2/3, Table 1, Fig. 4 over a pool of three non-paper corpora on RAVDESS, constants 1/8, the common table."
    from speech_prefinetune.cli import main as spft
    path, rows = write_pool_csv(tmp_path / "pool.csv")
    rav = [r for r in rows if r["downstream"] == "ravdess"]
    out = tmp_path / "rep"
    assert spft(["report", str(path), "--out", str(out), "--formats", "svg", "--n-boot", "100"]) == 0
    f2 = pd.read_csv(out / "fig2.csv")
    assert sorted(set(f2.n_corpora)) == [0, 1, 2, 3]
    key = lambda r: frozenset(r["corpora"].split("+")) if r["corpora"] != "base" else frozenset()
    t1 = pd.read_csv(out / "table1.csv")
    assert t1.corpus.tolist() == POOL * 2   # per k, in rank order (registration order beyond the paper's four)
    for r in t1.itertuples():
        alone = mean([x["macro_f1"] for x in rav if key(x) == {r.corpus} and x["k"] == r.k])
        others = mean([x["macro_f1"] for x in rav if key(x) == set(POOL) - {r.corpus} and x["k"] == r.k])
        assert (r.f1_in, r.f1_ex) == pytest.approx((alone, others), abs=1e-9)
    f3 = pd.read_csv(out / "fig3.csv")
    assert f3.corpus.tolist() == POOL * 2
    for r in f3.itertuples():   # cells (speaker, emotion, k) of RAVDESS, ESD's own cells kept apart
        cells = {(x["speaker"], x["emotion"]) for x in rav if x["k"] == r.k}
        d = [mean([x["macro_f1"] for x in rav if (x["speaker"], x["emotion"]) == c and x["k"] == r.k and r.corpus in key(x)])
             - mean([x["macro_f1"] for x in rav if (x["speaker"], x["emotion"]) == c and x["k"] == r.k and not key(x)])
             for c in cells]
        assert r.delta_f1 == pytest.approx(mean(d), abs=1e-9)
    f4 = pd.read_csv(out / "fig4.csv")   # the full model is the whole pool; emotions in ESD's, then common order
    assert f4.query("k == 8").emotion.tolist() == ["neutral", "angry", "happy", "sad", "surprise", "fear", "disgust", "calm"]
    full = [x["macro_f1"] for x in rav if key(x) == set(POOL) and x["k"] == 8 and x["emotion"] == "calm"]
    assert f4.query("k == 8 and emotion == 'calm'").f1_full.item() == pytest.approx(mean(full))
    f2m = pd.read_csv(out / "fig2_methods.csv")   # ESD rows 1/5, RAVDESS rows 1/8, averaged over the same rows
    at = f2m.query("k == 8")
    assert at.const_rest_f1.tolist() == pytest.approx([(1 - 1 / 8) / (2 - 1 / 8)] * len(at))
    common = pd.read_csv(out / "common.csv").query("k == 2")
    neutral = common.query("common == 'neutral'")
    assert neutral.downstream.tolist() == ["esd", "ravdess"] and neutral.emotions.tolist() == ["neutral", "calm+neutral"]
    both = [x["macro_f1"] for x in rav if x["k"] == 2 and x["emotion"] in ("neutral", "calm")]
    assert neutral.mean_f1.tolist() == pytest.approx([0.5, mean(both)])
    page = (out / "report.html").read_text()
    for text in ("Downstream: ESD, RAVDESS", "on the other two", "all three corpora vs. base", "Per common emotion",
                 "RAVDESS: each of its 8 emotions assumed 1/8"):
        assert text in page, text
    assert "CREMA-D" in (out / "fig3.svg").read_text()
