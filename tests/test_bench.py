"""The benchmarks keep running (smoke sizes) and print numbers that agree with each other and with the smoke
configuration: every ratio is the quotient of the printed numbers it is computed from (within their rounding), every
count is the one the configuration implies. Never how fast anything ran. The few-shot benchmark's FLOP counter agrees
with hand-computed counts."""
import argparse, importlib.util, json, math, re, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script, *args, timeout=600):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def load_bench(script):
    "A bench/ script imported as a module (its `main` not run)."
    spec = importlib.util.spec_from_file_location(f"bench_{Path(script).stem}", ROOT / "bench" / script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Printed(float):
    "A number as printed: its value and the half-unit of its last printed digit (the rounding it may carry)."
    def __new__(cls, text):
        x = super().__new__(cls, float(text))
        x.half = 0.5 * 10.0 ** -(len(text.split(".")[1]) if "." in text else 0)
        return x

    @property
    def low(self): return self - self.half

    @property
    def high(self): return self + self.half


def value(text, key):
    "The number printed on the line `key: <number>`."
    m = re.search(rf"^{re.escape(key)}: (-?[0-9.]+)", text, re.M)
    assert m, f"no '{key}:' line in:\n{text}"
    return Printed(m.group(1))


def numbers(pattern, text):
    "The numbers a line matching `pattern` prints (its groups), as `Printed`."
    m = re.search(pattern, text, re.M)
    assert m, f"no line matching {pattern!r} in:\n{text}"
    return [Printed(g) for g in m.groups()]


def bounds(x):
    "(lowest, highest) value a printed number may stand for; a count or a setting is exact."
    return (x.low, x.high) if isinstance(x, Printed) else (x, x)


def assert_quotient(q, a, b, scale=1.0):
    "`q` (printed) equals `scale * a / b` (each printed, so each rounded) within their rounding."
    (a_low, a_high), (b_low, b_high), (q_low, q_high) = bounds(a), bounds(b), bounds(q)
    assert b_low > 0, f"denominator {b} rounds to zero"
    low, high = scale * a_low / b_high, scale * a_high / b_low
    assert low - 1e-9 <= q_high and q_low <= high + 1e-9, f"{q} is not {scale} * {a} / {b} (in [{low}, {high}])"


def test_assert_quotient_catches_a_wrong_ratio():
    assert_quotient(Printed("1.85"), Printed("208.4"), Printed("112.9"))
    assert_quotient(Printed("34.7"), Printed("0.0007"), Printed("20"), scale=1e6)
    with pytest.raises(AssertionError):
        assert_quotient(Printed("1.90"), Printed("208.4"), Printed("112.9"))
    with pytest.raises(AssertionError):
        assert_quotient(Printed("1.85"), Printed("112.9"), Printed("208.4"))


@pytest.fixture(scope="module")
def fewshot_bench():
    return load_bench("fewshot.py")


def test_flop_counter_matches_hand_counts(fewshot_bench):
    x, w = torch.randn(7, 5), torch.randn(3, 5)
    with torch.inference_mode():   # composite ops arrive whole under inference_mode; they must still be counted
        _, n = fewshot_bench.count_flops(lambda: F.linear(x, w))
    assert n == 2 * 7 * 5 * 3
    q = torch.randn(2, 4, 9, 8)
    mask = torch.ones(2, 1, 9, 9, dtype=torch.bool)
    with torch.inference_mode():
        _, n = fewshot_bench.count_flops(lambda: F.scaled_dot_product_attention(q, q, q, attn_mask=mask))
    assert n == 2 * 2 * (2 * 4 * 9 * 9 * 8)   # QK^T and PV, 2 flops per multiply-add
    qg = torch.randn(2, 4, 9, 8, requires_grad=True)
    _, n = fewshot_bench.count_flops(lambda: F.scaled_dot_product_attention(qg, qg, qg).sum().backward())
    # forward: QK^T and PV; the flash backward recomputes QK^T, then dP, dV, dQ and dK: 7 matmuls in all
    assert n == 7 * 2 * (2 * 4 * 9 * 9 * 8)


def test_audio_cache_bench_small():
    files, small = 20, 10
    out = run_bench("audio_cache.py", "--files", str(files), "--small", str(small), "--repeats", "1")
    # the corpus is the larger of the speed set and the large (10x small) memory corpus; three caches are built of it
    assert numbers(r"^corpus: (\d+) files", out) == [max(files, 10 * small)]
    built = re.findall(r"^build (?:small|large|large as float32)\s*:\s+(\d+) files", out, re.M)
    assert built == [str(small), str(10 * small), str(10 * small)], out
    assert f"for {9 * small} more files" in out
    # bytes per audio-second: 16,000 samples of 2 bytes (int16) or 4 (float32); the index adds a little
    for dtype, width in (("int16", 2), ("float32", 4)):
        shards, with_index = numbers(rf"^bytes per audio-second, {dtype}\s*:\s+(\d+) in shards,\s+(\d+) with the index",
                                     out)
        assert shards == pytest.approx(16000 * width, rel=0.01) and with_index >= shards
    # per-file times are the best pass over the files; each ratio is the quotient of the times it names
    load_s, load_ms, load_first = numbers(r"^load_audio\s*: \d+ files, best ([0-9.]+) s \(([0-9.]+) ms/file\), "
                                          r"first pass ([0-9.]+) s", out)
    read_s, read_us, read_first = numbers(r"^cache read int16\s*: \d+ files, best ([0-9.]+) s \(([0-9.]+) us/file\), "
                                          r"first pass ([0-9.]+) s", out)
    read32_s, read32_us = numbers(r"^cache read float32\s*: \d+ files, best ([0-9.]+) s \(([0-9.]+) us/file\)", out)
    copy_us, copy_speedup = numbers(r"instead: ([0-9.]+) us/file \(([0-9.]+)x\)", out)
    assert_quotient(load_ms, load_s, files, scale=1e3)
    assert_quotient(read_us, read_s, files, scale=1e6)
    assert_quotient(read32_us, read32_s, files, scale=1e6)
    assert_quotient(value(out, "speedup"), load_ms, read_us, scale=1e3)
    assert_quotient(value(out, "speedup float32"), load_ms, read32_us, scale=1e3)
    assert_quotient(copy_speedup, load_ms, copy_us, scale=1e3)
    assert_quotient(value(out, "int16 read time / float32 read time"), read_us, read32_us)
    if read_first.low > 0:   # a first pass under 50 us prints as 0.0000
        assert_quotient(value(out, "first-pass speedup"), load_first, read_first)


def test_prefinetune_bench_small():
    clips, epochs = 16, 1
    out = run_bench("prefinetune.py", "--clips", str(clips), "--epochs", str(epochs), "--repeats", "1")
    # every clip is a training clip (the first eighth are validation clips too); batch size 8 is the default
    data = rf"^data: {clips} training clips, \d+ audio-s per epoch, batch size 8, {epochs} epochs"
    assert re.search(data, out, re.M), out
    random_padding, bucketed_padding = numbers(r"^padding: random batches (\d+)% of samples, bucketed (\d+)%", out)
    assert bucketed_padding < random_padding   # the same seeded clips: length buckets pad less than random batches
    rates = {name: numbers(rf"^{re.escape(name)}:\s+([0-9.]+) audio-s per CPU-s\s+([0-9.]+) audio-s per wall-s "
                           r"\(best of 1; wall median ([0-9.]+)\)", out)
             for name in ("Trainer (random sampler)", "Trainer (group_by_length)", "ours (prefinetune_tables)")}
    for cpu_rate, wall_rate, wall_median in rates.values():
        assert wall_median == wall_rate   # one repeat: its own median
    ours, trainer = rates["ours (prefinetune_tables)"], rates["Trainer (random sampler)"]
    assert_quotient(value(out, "speedup"), ours[0], trainer[0])
    assert_quotient(value(out, "wall-clock speedup (best of each)"), ours[1], trainer[1])
    if not torch.cuda.is_available():
        assert "MFU: no CUDA device; skipped" in out


def test_realsize_bench_tiny(tmp_path):
    clips, steps, budget = 80, 2, 8.0   # --tiny's corpus; the audio budget and the crop are both 8 s
    out = run_bench("realsize.py", "--tiny", "--steps", str(steps), "--batch-seconds", str(budget), "--max-seconds",
                    str(budget), "--json", str(tmp_path / "r.json"))
    r = json.loads((tmp_path / "r.json").read_text())
    res, s, ratios = r["results"], r["settings"], r["ratios"]
    assert set(res) == {"ours", "trainer", "trainer_group_by_length"} and s["clips"] == clips
    # ours' epoch, recomputed here from the same seeded corpus: its steps, real audio and padding are what ran
    bench = load_bench("realsize.py")
    lengths = bench.clip_lengths(clips, seed=0)
    plan_args = argparse.Namespace(seed=0, batch_seconds=budget, max_seconds=budget)
    crop = bench.crop_length(lengths, plan_args)
    batches = [b for b, _ in bench.ours_plan(lengths, crop, plan_args)]
    real = np.minimum(lengths, crop)
    real_s = [real[b].sum() / 16000 for b in batches]
    padded_s = [len(b) * real[b].max() / 16000 for b in batches]
    timed = slice(1, steps + 1)   # one warm-up step, then the timed ones
    ours = res["ours"]
    assert ours["epoch_steps"] == len(batches)
    assert ours["audio_s_per_step"] == pytest.approx(np.mean(real_s[timed]))
    assert ours["padded_fraction"] == pytest.approx(1 - sum(real_s[timed]) / sum(padded_s[timed]))
    assert ours["epoch_padded_fraction"] == pytest.approx(1 - sum(real_s) / sum(padded_s))
    assert ours["epoch_max_padded_audio_s"] == pytest.approx(max(padded_s)) and max(padded_s) <= budget
    assert s["ours_audio_seconds_per_batch"] == pytest.approx(np.mean(real_s))
    # the Trainer gets the same mean audio-seconds per step as ours (its batch size, rounded to whole clips)
    assert s["trainer_batch_size"] == max(1, round(np.mean(real_s) / s["mean_clip_seconds"]))
    assert res["trainer"]["epoch_steps"] == math.ceil(clips / s["trainer_batch_size"])
    # its fixed clip count lets a batch exceed the audio budget; both length-aware samplers pad less than its random one
    assert res["trainer"]["epoch_max_padded_audio_s"] > budget
    for name in ("ours", "trainer_group_by_length"):
        assert res[name]["epoch_padded_fraction"] < res["trainer"]["epoch_padded_fraction"]
    # every variant's numbers agree with each other
    for v in res.values():
        assert v["steps"] == steps and v["flops_per_step"] > 0   # FLOPs are counted with --tiny
        assert v["audio_s_per_s"] == pytest.approx(v["audio_s_per_step"] / v["s_per_step"])
        assert v["padded_fraction"] == pytest.approx(1 - v["audio_s_per_s"] * v["s_per_padded_audio_s"])
        epoch_rate = (1 - v["epoch_padded_fraction"]) / v["s_per_padded_audio_s"]   # the epoch at the measured cost
        assert v["projected_epoch_audio_s_per_s"] == pytest.approx(epoch_rate)
        assert v["max_padded_audio_s"] >= v["epoch_max_padded_audio_s"]   # the epoch's largest batch ran
        assert v["peak_rss_mb"] >= v["peak_rss_timed_mb"] >= v["rss_after_setup_mb"]
    # the ratios are the quotients of the results, and the printed lines are the ratios
    for name, q in ratios.items():
        for key, ratio in q.items():
            assert ratio == pytest.approx(res[name][key] / res["trainer"][key]), (name, key)
    lines = {"speedup_vs_trainer": ratios["ours"]["audio_s_per_s"],
             "speedup_vs_group_by_length": ours["audio_s_per_s"] / res["trainer_group_by_length"]["audio_s_per_s"],
             "epoch_speedup_vs_trainer": ratios["ours"]["projected_epoch_audio_s_per_s"],
             "peak_rss_ratio_vs_trainer": ratios["ours"]["peak_rss_mb"]}
    for key, ratio in lines.items():
        printed = value(out, key)
        assert abs(printed - ratio) <= printed.half + 1e-9, (key, printed, ratio)
    met = ratios["ours"]["audio_s_per_s"] >= 1.3 and ratios["ours"]["peak_rss_mb"] <= 1.0
    assert r["goal_met"] == met
    assert re.search(rf"^goal_met: {'yes' if met else 'no'} ", out, re.M)
    # the padding of ours' batches against random ones of the same mean audio, at every audio budget
    padding = re.findall(r"(\d+) s (\d+)% / (\d+)%", out.split("by ours' audio-s budget per batch:")[1].splitlines()[0])
    assert [int(b) for b, _, _ in padding] == [8, 16, 32, 64, 128, 256]
    for _, ours_pct, random_pct in padding:
        assert int(ours_pct) < int(random_pct)


PROTOCOLS = ("trainer_paper", "trainer_tuned", "ours", "ours_stacked")


def test_fewshot_bench_quick():
    trials, epochs, valid, test = 2, 2, 100, 150   # --quick: 2 trials of 2 epochs; ESD's split sizes for one speaker
    out = run_bench("fewshot.py", "--quick")
    speaker = rf"^speaker \w+: \d+ clips \({valid} valid, {test} test\), .*budget {epochs} epochs, patience {epochs}"
    assert re.search(speaker, out, re.M), out
    assert re.search(rf"CNN features of {valid + test} valid/test clips", out)
    row = (r"^{}\s+trials\s+(\d+)\s+epochs/trial\s+([0-9.]+)\s+s/trial\s+([0-9.]+)\s+trials/hour\s+([0-9.]+)\s+"
           r"mean_macro_f1 ([0-9.]+)")
    lines = {p: numbers(row.format(p), out) for p in PROTOCOLS}
    for n, epochs_per_trial, s_per_trial, per_hour, f1 in lines.values():
        # the budget equals the patience, so every trial runs the whole budget
        assert (n, epochs_per_trial) == (trials, epochs)
        assert_quotient(per_hour, 3600, s_per_trial)
    per_hour = {p: line[3] for p, line in lines.items()}
    assert_quotient(value(out, "speedup_vs_paper_protocol"), per_hour["ours"], per_hour["trainer_paper"])
    assert_quotient(value(out, "speedup_vs_tuned_trainer"), per_hour["ours"], per_hour["trainer_tuned"])
    assert_quotient(value(out, "stacked_speedup_vs_paper_protocol"), per_hour["ours_stacked"],
                    per_hour["trainer_paper"])
    assert_quotient(value(out, "stacked_vs_ours"), per_hour["ours_stacked"], per_hour["ours"])
    # the forward floor: one validation pass per epoch and a test pass; the ceiling is the paper's s/trial over it
    floor = (r"^ours_forward_floor_s_per_trial: [0-9.]+\s+\(([0-9.]+) validation passes over (\d+) clips "
             r"\+ 1 test pass over (\d+); ours spends ([0-9.]+)\)")
    passes, valid_clips, test_clips, ours_s = numbers(floor, out)
    assert (passes, valid_clips, test_clips, ours_s) == (epochs, valid, test, lines["ours"][2])
    paper_s = lines["trainer_paper"][2]
    assert_quotient(value(out, "ceiling_vs_paper_protocol"), paper_s, value(out, "ours_forward_floor_s_per_trial"))
    assert_quotient(value(out, "stacked_ceiling_vs_paper_protocol"), paper_s,
                    value(out, "ours_stacked_forward_floor_s_per_trial"))
    # the arithmetic of one trial of each: its rate, and ours does less of it (the frozen CNN runs once per clip)
    gflop = {p: numbers(rf"^{p}\s+GFLOP/trial\s+([0-9.]+)\s+GFLOP/s\s+([0-9.]+)", out) for p in PROTOCOLS[:3]}
    for p, (per_trial, per_s) in gflop.items():
        assert_quotient(per_s, per_trial, lines[p][2])
    ratio = value(out, "flop_ratio_paper_over_ours")
    assert_quotient(ratio, gflop["trainer_paper"][0], gflop["ours"][0])
    assert ratio > 1
