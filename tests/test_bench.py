"""The benchmarks keep running (smoke sizes) and print the lines the README and the notebooks quote; the few-shot
benchmark's FLOP counter agrees with hand-computed counts."""
import importlib.util, json, math, re, subprocess, sys
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script, *args, timeout=600):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def value(text, key):
    m = re.search(rf"^{re.escape(key)}: ([0-9.]+)", text, re.M)
    assert m, f"no '{key}:' line in:\n{text}"
    return float(m.group(1))


@pytest.fixture(scope="module")
def fewshot_bench():
    spec = importlib.util.spec_from_file_location("bench_fewshot", ROOT / "bench" / "fewshot.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


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


def test_fewshot_bench_quick():
    out = run_bench("fewshot.py", "--quick")
    for key in ("speedup_vs_paper_protocol", "speedup_vs_tuned_trainer", "ours_forward_floor_s_per_trial",
                "ceiling_vs_paper_protocol", "flop_ratio_paper_over_ours"):
        assert value(out, key) > 0
    # ours does less arithmetic than the paper's protocol (the frozen CNN runs once per clip, not every epoch)
    assert value(out, "flop_ratio_paper_over_ours") > 1
    gflop = dict(re.findall(r"^(\w+)\s+GFLOP/trial\s+([0-9.]+)", out, re.M))
    assert set(gflop) == {"trainer_paper", "trainer_tuned", "ours"}, out


def test_audio_cache_bench_small():
    assert value(run_bench("audio_cache.py", "--files", "20", "--small", "10", "--repeats", "1"), "speedup") > 0


def test_prefinetune_bench_small():
    assert value(run_bench("prefinetune.py", "--clips", "16", "--epochs", "1", "--repeats", "1"), "speedup") > 0


def test_realsize_bench_tiny(tmp_path):
    out = run_bench("realsize.py", "--tiny", "--steps", "2", "--batch-seconds", "8", "--max-seconds", "8", "--json", str(tmp_path / "r.json"))
    r = json.loads((tmp_path / "r.json").read_text())
    res, s = r["results"], r["settings"]
    assert set(res) == {"ours", "trainer", "trainer_group_by_length"}
    for v in res.values():
        assert v["steps"] == 2 and v["s_per_step"] > 0 and v["audio_s_per_s"] > 0 and v["flops_per_step"] > 0
        assert 0 <= v["padded_fraction"] < 1 and v["peak_rss_mb"] >= v["peak_rss_timed_mb"] > 0
    # the Trainer gets the same mean audio-seconds per step as ours (its batch size, rounded to whole clips)
    assert abs(s["trainer_batch_size"] * s["mean_clip_seconds"] - s["ours_audio_seconds_per_batch"]) <= s["mean_clip_seconds"] / 2
    # ours' batches stay within the audio budget over a whole epoch; the Trainer's fixed clip count does not
    assert res["ours"]["epoch_max_padded_audio_s"] <= 8 < res["trainer"]["epoch_max_padded_audio_s"]
    for v in ("ours", "trainer_group_by_length"): assert res[v]["epoch_padded_fraction"] < res["trainer"]["epoch_padded_fraction"]
    assert r["ratios"]["ours"]["audio_s_per_s"] == pytest.approx(res["ours"]["audio_s_per_s"] / res["trainer"]["audio_s_per_s"])
    assert value(out, "speedup_vs_trainer") > 0 and value(out, "peak_rss_ratio_vs_trainer") > 0
    assert re.search(r"^goal_met: (yes|no)", out, re.M)
