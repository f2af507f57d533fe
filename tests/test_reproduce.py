"""`spft reproduce` end to end on synthetic corpora with the tiny encoder and a reduced grid (2 sets, 1 speaker, k=4,
1 trial, 2 epochs): the dry run trains nothing and its counts match the run; a second run changes nothing and rewrites
the same report; a run killed with SIGKILL in pre-finetuning, then in the grid, resumes (the last part through
submitit) to the same results; bad roots exit 2."""
import contextlib, hashlib, io, os, re, signal, subprocess, sys, time
from pathlib import Path

import pytest

from speech_prefinetune.cli import main
from speech_prefinetune.core import read_roots, write_roots
from speech_prefinetune.grid import load_results
from speech_prefinetune.reproduce import model_status
from speech_prefinetune.synth import synth_corpora

ROOT = Path(__file__).resolve().parents[1]
SETS = ("iemocap", "mandarin_as")
GRID = ["--encoder", "tiny-wav2vec2", "--subsets", *SETS, "--speakers", "0001", "--k", "4", "--trials", "1",
        "--max-epochs", "2", "--trial-max-epochs", "2", "--device", "cpu", "--quiet"]
DRY = ["--dry-run", "--calibration-steps", "1", "--calibration-seconds", "2"]
N_TRIALS = 3 * 1 * 5 * 1 * 1  # (base + 2 sets) x 1 speaker x 5 emotions x 1 k x 1 trial


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpora")
    synth_corpora(d, size="tiny", corpora=(*SETS, "esd"))
    return d / "corpora.toml"


def spft(*args, cache, popen=False):
    "Run `python -m speech_prefinetune.cli ARGS` with its own cache folder."
    env = {**os.environ, "SPFT_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "speech_prefinetune.cli", "reproduce", *map(str, args)]
    if popen: return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)


def counts(text):
    "(models finished, partial, todo), (trials total, done, todo) from a dry run's output."
    m = re.search(r"pre-finetuning: \d+ models \(finished (\d+), partial (\d+), todo (\d+)\)", text)
    t = re.search(r"= (\d+) trials \(done (\d+), todo (\d+)\)", text)
    assert m and t, text
    return tuple(map(int, m.groups())), tuple(map(int, t.groups()))


def snapshot(out):
    "md5 of every file the run wrote under OUT (models, results, report; the cache lives elsewhere)."
    return {str(p.relative_to(out)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(Path(out).rglob("*"))
            if p.is_file() and ".submitit" not in p.parts}


def scores(out):
    r = load_results(Path(out) / "results")
    return {(m, s, e, int(k), int(t)): (f, ids) for m, s, e, k, t, f, ids in
            zip(r.model, r.speaker, r.emotion, r.k, r.trial, r.macro_f1, map(tuple, r.train_ids))}


@pytest.fixture(scope="module")
def full_run(roots, tmp_path_factory):
    "A dry run, then the run, on a fresh folder: (out, cache, dry-run output, run output)."
    base = tmp_path_factory.mktemp("full")
    out, cache = base / "out", base / "cache"
    dry = spft("--roots", roots, "--out", out, *GRID, *DRY, cache=cache)
    assert dry.returncode == 0, dry.stderr
    written = [p for d in (out, cache) if d.exists() for p in d.rglob("*") if p.is_file()]
    run = spft("--roots", roots, "--out", out, *GRID, cache=cache)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, cache, dry.stdout, run.stdout, written


def test_dry_run_trains_nothing_and_its_counts_match_the_run(full_run):
    out, cache, dry, run, written = full_run
    assert written == [], f"the dry run wrote {written}"
    (fin, part, todo), (total, done, trials_todo) = counts(dry)
    assert (fin, part, todo) == (0, 0, len(SETS)) and (total, done, trials_todo) == (N_TRIALS, 0, N_TRIALS)
    for line in ("audio cache (int16, 16000 Hz)", "checkpoint.pt", "calibration on cpu", "projected device time", "memory: a pre-finetuning step", "assumptions:"):
        assert line in dry, line
    # what the run did is what the plan said
    assert [model_status(out / "models" / s)[0] for s in SETS] == ["finished"] * len(SETS)
    r = load_results(out / "results")
    assert len(r) == trials_todo and set(r.model) == {"base", *SETS} and set(r.corpora) == {"base", *SETS}
    assert set(r.k) == {4} and set(r.speaker) == {"0001"} and (r.max_epochs == 2).all()
    for f in ("report.html", "table1.csv", "fig2.csv", "fig3.csv", "fig4.csv"): assert (out / "report" / f).is_file(), f
    assert "[3/3] report from 15 trials" in run


def test_second_run_is_a_noop_that_rewrites_the_same_report(full_run, roots):
    out, cache, *_ = full_run
    before = snapshot(out)
    report = out / "report" / "report.html"
    report.unlink()                               # it is rewritten, not left alone
    again = spft("--roots", roots, "--out", out, *GRID, cache=cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(finished 2, partial 0, todo 0)" in again.stdout
    assert snapshot(out) == before                # same models, same results, byte-identical report
    dry = spft("--roots", roots, "--out", out, *GRID, *DRY, cache=cache)
    assert counts(dry.stdout) == ((2, 0, 0), (N_TRIALS, N_TRIALS, 0))


def kill_when(p, ready, what):
    "SIGKILL process `p` as soon as `ready()` holds."
    try:
        deadline = time.time() + 600
        while not ready():
            assert p.poll() is None, f"ended before {what}: " + p.communicate()[1][-3000:]
            assert time.time() < deadline, f"no {what} in 10 min"
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
    finally:
        p.kill(); p.communicate()


def test_a_killed_run_resumes_also_through_submitit(full_run, roots, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    run = lambda: spft("--roots", roots, "--out", out, *GRID, cache=cache, popen=True)
    kill_when(run(), lambda: model_status(out / "models" / SETS[0])[0] == "finished", "first model")   # in stage 1
    dry = spft("--roots", roots, "--out", out, *GRID, *DRY, cache=cache)
    (fin, part, todo), (total, done, trials_todo) = counts(dry.stdout)
    assert fin >= 1 and (fin < 2 or trials_todo > 0), dry.stdout   # killed part-way
    stage1 = spft("--roots", roots, "--out", out, *GRID, "--stop-after", "prefinetune", cache=cache)
    assert stage1.returncode == 0 and "stopped after prefinetune" in stage1.stdout, stage1.stderr[-3000:]
    assert [model_status(out / "models" / s)[0] for s in SETS] == ["finished"] * len(SETS)
    assert not (out / "results").exists() and not (out / "report").exists()
    trials = lambda: sum(f.read_bytes().count(b"\n") for f in (out / "results").glob("*/*.jsonl"))
    kill_when(run(), lambda: (out / "results").is_dir() and trials() >= 1, "first trial")             # in stage 2
    # the rest of the grid through submitit (the SLURM path, run by local processes), with the grid's cluster options
    again = spft("--roots", roots, "--out", out, *GRID, "--executor", "submitit-local", "--time", "20", "--cpus", "1", cache=cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert any((out / "results" / ".submitit").rglob("*_result.pkl")), "no shard ran through submitit"
    assert [model_status(out / "models" / s)[0] for s in SETS] == ["finished"] * len(SETS)
    assert scores(out) == scores(full_run[0])     # the same trials with the same samples and the same scores
    assert (out / "report" / "table1.csv").read_bytes() == (full_run[0] / "report" / "table1.csv").read_bytes()


def _error(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err): status = main(argv)
    return status, err.getvalue().strip()


@pytest.mark.parametrize("dry", [[], DRY], ids=["run", "dry-run"])
def test_bad_roots_exit_2_with_one_line(roots, tmp_path, dry):
    out = tmp_path / "out"
    no_esd = tmp_path / "no_esd.toml"
    no_esd.write_text("".join(l + "\n" for l in roots.read_text().splitlines() if not l.startswith("esd")))
    gone = tmp_path / "gone.toml"
    gone.write_text(f'iemocap = "{roots.parent}/nowhere"\nmandarin_as = "{roots.parent}"\nesd = "{roots.parent}"\n')
    wrong = tmp_path / "wrong.toml"   # IEMOCAP's entry names the MASC folder: the loader says what it misses, before training
    r = read_roots(roots); r["iemocap"] = r["mandarin_as"]; write_roots(r, wrong)
    for path, says in ((tmp_path / "missing.toml", "missing.toml: roots file not found"),
                       (no_esd, "no root for esd"), (gone, "root of iemocap is not a folder"), (wrong, "iemocap: no Session1..Session5 folders")):
        status, err = _error(["reproduce", "--roots", str(path), "--out", str(out), *GRID, *dry])
        assert status == 2 and len(err.splitlines()) == 1 and says in err, err
        assert str(path if path != wrong else r["iemocap"]) in err, err
    assert not out.exists()


def test_bad_grid_fails_before_training(roots, tmp_path):
    status, err = _error(["reproduce", "--roots", str(roots), "--out", str(tmp_path / "out"), *GRID, "--k", "64"])
    assert status == 2 and "k=64 needs 32" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "models").exists()


def test_corpora_without_subsets_trains_every_subset_of_them(roots, tmp_path):
    "`--corpora A,B` alone means the 3 non-empty subsets of A and B (the README's command has no --subsets)."
    grid = [a for a in GRID if a not in ("--subsets", *SETS)]
    dry = spft("--roots", roots, "--out", tmp_path / "out", *grid, "--corpora", ",".join(SETS), "--dry-run",
               "--calibration-steps", "0", cache=tmp_path / "cache")
    assert dry.returncode == 0, dry.stderr
    assert counts(dry.stdout) == ((0, 0, 3), (4 * 5, 0, 4 * 5))   # base + 3 sets, 5 emotions each


def test_a_design_over_corpora_beyond_the_paper(tmp_path):
    "`--subsets leave-one-out --corpora A,B,C` plans the N sets of N - 1 corpora, any registered ones; ESD in a set: exit 2."
    synth_corpora(tmp_path / "c", size="tiny", corpora=("iemocap", "crema_d", "ravdess", "esd"))
    grid = [a for a in GRID if a not in ("--subsets", *SETS)]
    dry = spft("--roots", tmp_path / "c" / "corpora.toml", "--out", tmp_path / "out", *grid, "--subsets", "leave-one-out",
               "--corpora", "ravdess,crema_d,iemocap", "--dry-run", "--calibration-steps", "0", cache=tmp_path / "cache")
    assert dry.returncode == 0, dry.stderr
    assert counts(dry.stdout) == ((0, 0, 3), (4 * 5, 0, 4 * 5))   # base + 3 sets, 5 emotions each
    for name in ("crema_d+ravdess", "iemocap+ravdess", "iemocap+crema_d"):
        assert name in dry.stdout, dry.stdout
    bad = spft("--roots", tmp_path / "c" / "corpora.toml", "--out", tmp_path / "out", *grid, "--subsets", "iemocap+esd",
               "--dry-run", "--calibration-steps", "0", cache=tmp_path / "cache")
    assert bad.returncode == 2 and "esd is the downstream corpus" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_multiclass_dry_run_plans_all_cells(roots, tmp_path):
    "`--task multiclass`: the plan's cells are ('all', k) with odd k allowed, one per k (not five ESD emotions)."
    grid = [a if a != "4" else "3" for a in GRID]
    dry = spft("--roots", roots, "--out", tmp_path / "out", *grid, "--task", "multiclass", "--dry-run",
               "--calibration-steps", "0", cache=tmp_path / "cache")
    assert dry.returncode == 0, dry.stderr
    assert counts(dry.stdout) == ((0, 0, 2), (3, 0, 3))   # base + 2 sets x 1 speaker x 1 cell


@pytest.mark.parametrize("extra,says", [(["--task", "multiclass", "--emotions", "neutral"], "emotion 'all'"),
                                        (["--trial-method", "top:3"], "has 2 transformer layers"),
                                        (["--trial-method", "top:1", "--layer-weights"], "--layer-weights")],
                         ids=["multiclass-emotion", "top-too-deep", "top-layer-weights"])
def test_bad_trial_settings_fail_before_training(roots, tmp_path, extra, says):
    status, err = _error(["reproduce", "--roots", str(roots), "--out", str(tmp_path / "out"), *GRID, *extra])
    assert status == 2 and says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "models").exists()
