"""Few-shot trials per hour and mean test macro-F1 of each adaptation method, on the same cells, in one run.

The demo's data and trials: synthetic demo-size ESD (`spft synth --size demo`: four speakers, 34 train, 10
validation and 12 test clips per emotion, 1-2 s), the tiny random wav2vec2 (`tiny-wav2vec2`), the demo's cells
(every speaker x five emotions x k = 2, 8, 32, one trial) and the demo's trial settings for `full` (lr 3e-3, 30
epochs, patience 8: `cli.DEMO["trial"]`). Methods:

- `full`: `fewshot.TrialRunner.run` (fine-tuning, early stopping on validation), one runner per speaker, its
  set-up (model load, CNN features) included.
- `linear`, `prototype`: `methods.ProbeRunner.run` on pooled features of the frozen encoder. Two rates each:
  *cold* includes computing the speaker's pooled features from nothing (a fresh in-memory store, CNN features
  too), as the first method run on a model does; *warm* reads them from the store the cold pass filled (every
  later trial of the model, of any method, emotion, k or trial: the steady state of a grid). `+std`: the same
  with per-speaker standardisation (`TrialConfig.standardize`), warm.

Prints one line per method (trials, seconds, trials/hour, mean test macro-F1 over the same cells) and the ratio of
each rate to `full`'s. The ratio to the paper's `Trainer` protocol is `bench/fewshot.py`'s
`speedup_vs_paper_protocol` times this ratio (both against `TrialRunner`).

    PYTHONPATH=. python bench/methods.py            # the demo's 60 cells per method, about a minute on 2 CPU cores
    PYTHONPATH=. python bench/methods.py --quick    # smoke run: one speaker, two emotions, k = 2, 2 epochs
"""
from __future__ import annotations
import argparse, tempfile, time
from dataclasses import replace
from pathlib import Path
import numpy as np
import torch

from speech_prefinetune.cli import DEMO
from speech_prefinetune.config import TrialConfig
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune.fewshot import ESD_EMOTIONS, FeatureCache, TrialRunner, load_trial_model
from speech_prefinetune.methods import PooledCache, ProbeRunner
from speech_prefinetune.synth import synth_corpora


def run_method(method, model, table, speakers, cells, config, pooled=None):
    "Run `cells` on every speaker with `method`; returns (results, seconds including each runner's set-up)."
    t0, out = time.perf_counter(), []
    for s in speakers:
        if method == "full":
            runner = TrialRunner(model, table, s, config, "cpu", FeatureCache())
        else:
            runner = ProbeRunner(model, table, s, replace(config, method=method), "cpu", pooled)
        out += [runner.run(e, k, t) for e, k, t in cells]
    return out, time.perf_counter() - t0


def line(name, results, seconds, full_rate=None):
    "One row of the table: trials, seconds, trials/hour, mean test macro-F1, ratio to full."
    rate = len(results) / seconds * 3600
    ratio = "" if full_rate is None else f"  x{rate / full_rate:,.0f} full"
    f1 = np.mean([r["macro_f1"] for r in results])
    print(f"{name:20s} trials {len(results):4d}  seconds {seconds:8.2f}  trials/hour {rate:12,.0f}  "
          f"mean_macro_f1 {f1:.4f}{ratio}")
    return rate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: one speaker, two emotions, k = 2, 2 epochs")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="spft-bench-methods-"))
    table = load_corpus("esd", synth_corpora(tmp, size="demo", corpora=("esd",))["esd"])
    speakers, emotions, ks, trials = DEMO["speakers"], ESD_EMOTIONS, DEMO["k"], DEMO["trials"]
    config = TrialConfig(**DEMO["trial"])
    if args.quick:
        speakers, emotions, ks, config = speakers[2:3], emotions[:2], (2,), replace(config, max_epochs=2, patience=2)
    cells = [(e, k, t) for e in emotions for k in ks for t in range(trials)]
    model = load_trial_model(DEMO["encoder"])
    print(f"{len(speakers)} speakers x {len(cells)} cells; encoder {DEMO['encoder']}; full: lr {config.lr}, "
          f"max_epochs {config.max_epochs}, patience {config.patience}")
    full, seconds = run_method("full", model, table, speakers, cells, config)
    full_rate = line("full", full, seconds)
    for method in ("linear", "prototype"):
        pooled = PooledCache()   # cold: no pooled and no CNN features yet
        cold, cold_s = run_method(method, model, table, speakers, cells, config, pooled)
        warm, warm_s = run_method(method, model, table, speakers, cells, config, pooled)
        assert [r["macro_f1"] for r in cold] == [r["macro_f1"] for r in warm]
        assert [r["train_ids"] for r in warm] == [r["train_ids"] for r in full]   # paired with full
        line(f"{method} (cold)", cold, cold_s, full_rate)
        line(f"{method} (warm)", warm, warm_s, full_rate)
        print(f"{method}_features_computed: {pooled.computed}")
        std, std_s = run_method(method, model, table, speakers, cells, replace(config, standardize=True), pooled)
        line(f"{method}+std (warm)", std, std_s, full_rate)


if __name__ == "__main__":
    main()
