"""Few-shot trials per hour and mean test macro-F1 of each adaptation method, on the same cells, in one run.

The demo's data and trials: synthetic demo-size ESD (`spft synth --size demo`: four speakers, 34 train, 10
validation and 12 test clips per emotion, 1-2 s), the tiny random wav2vec2 (`tiny-wav2vec2`, two transformer
layers), the demo's cells (every speaker x five emotions x k = 2, 8, 32, one trial) and the demo's trial settings
for the fine-tuning methods (lr 3e-3, 30 epochs, patience 8: `cli.DEMO["trial"]`). Every method runs through
`methods.make_runner`, one runner per speaker, its set-up included, with a fresh on-disk cache (*cold*: CNN
features, cached layers or pooled features computed from nothing); the methods that read a feature store run a
second time on the store the first pass filled (*warm*: every later trial of the model, of any method, emotion, k
or trial, i.e. the steady state of a grid). Methods:

- `full`: fine-tuning of the whole transformer (the paper), early stopping on validation.
- `top:1`, `top:2`, `top:3`: fine-tuning of the top N layers on cached outputs of the layers below (the tiny
  encoder has two layers: `top:2` is all of them and `top:3` is skipped).
- `lora`: LoRA adapters (rank 8 on q_proj, v_proj) and the head.
- `linear`, `prototype`: a head on frozen pooled features; `+std` with per-speaker standardisation.
- `opensmile`: logistic regression on ComParE-2016 functionals (standardised per speaker), and on eGeMAPS.
- the paper's protocol: transformers `Trainer` with the paper code's arguments (batch 1, gradient accumulation 4,
  evaluate and save a checkpoint every epoch, a new model per trial: `bench/fewshot.py`'s `trainer_paper`). It is
  slow, so it runs `--paper-trials` of the cells of the first speaker, spread over the k values; `full` ran the same
  cells, so their time ratio (`paper_protocol_vs_full_same_cells`) scales `full`'s rate over all cells to the
  paper protocol's, the baseline of the `x paper` column.

Prints one line per method: trials, seconds, trials/hour, mean test macro-F1 over the same cells, ratio of the rate
to `full`'s and to the paper protocol's, the same ratio for the trials' own time (`alone`: without each runner's
set-up, i.e. a grid shard's steady state, where one set-up serves 105 trials), and for the fine-tuning methods the
trainable parameters of a trial and their AdamW memory (weights + gradients + two moments, float32). Then
`constant_rest_macro_f1`, the macro-F1 of always predicting "not the emotion" on the same test splits (what the
paper's openSMILE baseline could not beat).

    PYTHONPATH=. python bench/methods.py            # the demo's 60 cells per method, a few minutes on 2 CPU cores
    PYTHONPATH=. python bench/methods.py --quick    # smoke run: one speaker, two emotions, k = 2, 2 epochs
    PYTHONPATH=. python bench/methods.py --encoder random-base --device cuda   # on a GPU: wav2vec2-base-sized
    PYTHONPATH=. python bench/methods.py --encoder random-large --device cuda  # and large-sized (random weights)

`--encoder` takes any encoder spec (a tiny name, a model folder, a hub id) or `random-base` / `random-large`
(`Wav2Vec2Config()` and a 24-layer, 1024-wide stable-layer-norm config, random weights: sizes, not accuracy).
"""
from __future__ import annotations
import argparse, copy, sys, tempfile, time
from dataclasses import replace
from pathlib import Path
import numpy as np
import torch
from transformers import Wav2Vec2Config

sys.path.insert(0, str(Path(__file__).parent))
from fewshot import trainer_trial   # bench/fewshot.py: the paper's Trainer protocol
from speech_prefinetune.audio import load_audio
from speech_prefinetune.cli import DEMO
from speech_prefinetune.config import TrialConfig
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune.fewshot import ESD_EMOTIONS, FeatureCache, binary_metrics
from speech_prefinetune.methods import make_runner
from speech_prefinetune.model import MultiTaskClassifier
from speech_prefinetune.synth import synth_corpora

# name -> TrialConfig changes; `warm`: the method reads a feature store, so it runs a second time on it
METHODS = {
    "full": dict(),
    "top:1": dict(method="top:1"),
    "top:2": dict(method="top:2"),
    "top:3": dict(method="top:3"),
    "lora": dict(method="lora"),
    "linear": dict(method="linear"),
    "linear+std": dict(method="linear", standardize=True),
    "prototype": dict(method="prototype"),
    "opensmile": dict(method="opensmile", standardize=True),
    "opensmile-egemaps": dict(method="opensmile", smile_set="eGeMAPSv02", standardize=True),
}
WARM = ("top:1", "top:2", "top:3", "linear", "linear+std", "prototype", "opensmile", "opensmile-egemaps")


# sizes of random-weight encoders for GPU runs (`--encoder`): wav2vec2-base's, and a large stable-layer-norm one
SIZES = {"random-base": dict(),
         "random-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                              do_stable_layer_norm=True, feat_extract_norm="layer")}


def encoder_spec(name):
    "An encoder spec for `from_encoder` and `trainer_trial`: a `Wav2Vec2Config` for `random-*`, else `name`."
    return Wav2Vec2Config(**SIZES[name]) if name in SIZES else name


def run_method(config, model, table, speakers, cells, cache_dir, device):
    "Run `cells` on every speaker; returns (results, seconds including set-up, trainable parameters of a trial)."
    t0, out, trainable = time.perf_counter(), [], 0
    for s in speakers:
        # a copy per runner: a `TrialRunner` leaves its last trial's weights in the model it is given
        runner = make_runner(copy.deepcopy(model), table, s, config, device, FeatureCache.at(cache_dir))
        out += [runner.run(e, k, t) for e, k, t in cells]
        if hasattr(runner, "model") and config.method not in ("linear", "prototype", "opensmile"):
            trainable = sum(p.numel() for p in runner.model.parameters() if p.requires_grad)
    return out, time.perf_counter() - t0, trainable


def line(name, results, seconds, full_rate=None, paper_rate=None, trainable=0):
    "One row of the table; returns the rate (trials/hour)."
    rate = len(results) / seconds * 3600
    f1 = np.mean([r["macro_f1"] for r in results])
    ratios = "".join(f"  x{rate / base:,.1f} {what}" for base, what in ((full_rate, "full"), (paper_rate, "paper"))
                     if base)
    memory = f"  trainable {trainable:,} ({trainable * 16 / 2**20:.2f} MB with AdamW)" if trainable else ""
    alone = len(results) / sum(r["seconds"] for r in results) * 3600   # the trials' own time, set-up left out
    alone = f"  alone x{alone / paper_rate:,.0f} paper" if paper_rate else ""
    print(f"{name:25s} trials {len(results):4d}  seconds {seconds:8.2f}  trials/hour {rate:12,.0f}  "
          f"mean_macro_f1 {f1:.4f}{ratios}{alone}{memory}", flush=True)
    return rate


def paper_protocol(encoder, table, speaker, cells, config):
    "The paper's Trainer protocol on `cells` of one speaker: (results, seconds of each trial)."
    rows = table[table.speaker == speaker]
    waves = {u: load_audio(p, sr=16000) for u, p in zip(rows.utt_id, rows.path)}
    max_epochs, patience, out = config.max_epochs, config.patience, []
    with tempfile.TemporaryDirectory() as work:
        for e, k, t in cells:
            out.append(trainer_trial("trainer_paper", encoder, table, waves, speaker, e, k, t, config,
                                     max_epochs, patience, work))
    return out, [r["seconds"] for r in out]


def constant_rest(table, speakers, cells):
    "Macro-F1 of always predicting 'not the emotion' on each cell's test split, averaged like the methods' rows."
    f1 = []
    for s in speakers:
        test = table[(table.speaker == s) & (table.split == "test")]
        f1 += [binary_metrics((test.label == e).astype(int), np.zeros(len(test), int))["macro_f1"] for e, _, _ in cells]
    return float(np.mean(f1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: one speaker, two emotions, k = 2, 2 epochs")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--paper-trials", type=int, default=6, help="cells run with the paper's Trainer protocol")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: %(default)s")
    p.add_argument("--encoder", default=DEMO["encoder"], help="encoder spec, or random-base / random-large "
                   "(default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="spft-bench-methods-"))
    table = load_corpus("esd", synth_corpora(tmp, size="demo", corpora=("esd",))["esd"])
    speakers, emotions, ks, trials = DEMO["speakers"], ESD_EMOTIONS, DEMO["k"], DEMO["trials"]
    config = TrialConfig(**DEMO["trial"])
    if args.quick:
        speakers, emotions, ks, config = speakers[2:3], emotions[:2], (2,), replace(config, max_epochs=2, patience=2)
        args.paper_trials = min(args.paper_trials, 1)
    cells = [(e, k, t) for e in emotions for k in ks for t in range(trials)]
    model = MultiTaskClassifier.from_encoder(encoder_spec(args.encoder), {"init": ("a", "b")})
    layers = len(model.transformer_layers)
    print(f"{len(speakers)} speakers x {len(cells)} cells; encoder {args.encoder}; fine-tuning: lr {config.lr}, "
          f"max_epochs {config.max_epochs}, patience {config.patience}", flush=True)
    spread = [(emotions[j % len(emotions)], ks[j % len(ks)], 0) for j in range(args.paper_trials)]   # every k
    paper_idx = [cells.index(c) for c in dict.fromkeys(spread)]
    paper, paper_s = paper_protocol(encoder_spec(args.encoder), table, speakers[0], [cells[i] for i in paper_idx],
                                    config)
    line("paper protocol (Trainer)", paper, sum(paper_s))
    full_rate, full_ids, paper_rate = None, None, None
    for name in args.methods.split(","):
        if name.startswith("top:") and int(name[4:]) > layers:
            continue   # more layers than the encoder has
        cfg = replace(config, **METHODS[name])
        cache = tmp / f"cache-{name}"
        results, seconds, trainable = run_method(cfg, model, table, speakers, cells, cache, args.device)
        ids = [r["train_ids"] for r in results]
        assert full_ids is None or ids == full_ids, f"{name}: not paired with full"   # the same k-shot draws
        full_ids = full_ids or ids
        if paper_rate is None:   # the first method (full): the paper protocol's rate over all cells, by the same cells
            same = sum(paper_s) / sum(results[i]["seconds"] for i in paper_idx)
            paper_rate = len(results) / seconds * 3600 / same
            print(f"paper_protocol_vs_full_same_cells: {same:.2f} (paper protocol s/trial over full's on "
                  f"{len(paper_idx)} cells; full's rate / this = the paper protocol's rate over all cells: "
                  f"{paper_rate:,.0f} trials/hour)")
        rate = line(name + (" (cold)" if name in WARM else ""), results, seconds, full_rate, paper_rate, trainable)
        full_rate = full_rate or rate
        if name in WARM:
            warm, warm_s, _ = run_method(cfg, model, table, speakers, cells, cache, args.device)
            assert [r["macro_f1"] for r in warm] == [r["macro_f1"] for r in results], f"{name}: warm differs"
            line(name + " (warm)", warm, warm_s, full_rate, paper_rate, trainable)
    print(f"constant_rest_macro_f1: {constant_rest(table, speakers, cells):.4f}")


if __name__ == "__main__":
    main()
