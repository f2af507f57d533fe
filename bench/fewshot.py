"""Few-shot trials per hour: transformers `Trainer` (the paper's protocol, and tuned) against `fewshot.TrialRunner`.

Identical trials for all three: one synthetic speaker with ESD's split sizes (20 validation and 30 test clips per
emotion, i.e. 100 and 150 clips of 2-4 s, written in ESD's folder layout and read back with `load_corpus`), the
same tiny encoder (`tiny-wav2vec2`, frozen CNN), the same seeded binary head, the same k/2 + k/2 draws
(`sample_fewshot`), AdamW with the same learning rate, 10% warm-up + linear decay, clipping 1.0, the same
epoch budget and the same early stopping on validation macro-F1. What differs is how the work is done:

(a) `trainer_paper`: the paper code's `TrainingArguments`: batch 1, gradient accumulation 4, eval batch 1,
    evaluate and save a checkpoint every epoch, `load_best_model_at_end`, `EarlyStoppingCallback`; a new model and
    `Trainer` per trial, and the speaker's audio read from disk again for every trial (as its `load_esd_specific`).
(b) `trainer_tuned`: batch = k, eval batch 64, audio decoded once and kept in memory, checkpoints without
    optimizer state (`save_only_model`), same early stopping (which needs `load_best_model_at_end`, hence a
    checkpoint per epoch).
(c) `ours`: one `TrialRunner` for the speaker (model loaded once, CNN features computed once, length-sorted
    padded validation batches built once, best state kept in memory); its set-up time is included.
(d) `ours_stacked`: the same trials through `stacked.run_stack`, `--stack` trials at once (one batched
    computation over per-trial weight rows); the same set-up time is included.
(e) `ours_shared_workers`: `--shared-workers` processes on the same device, each running ours' trials one at a
    time (`TrialRunner.run`) with its own runner and set-up, as a stand-in for its own shard (what
    `run_grid(workers=N)` does); trials/hour is the sum of the workers' rates. `stacked_vs_shared_workers: <x>` is (d) over (e): the
    rule of nbs/06a_stacked.ipynb keeps stacked trials only if a GPU run shows it >= 2.

Ours runs a grid shard's worth of trials (105 by default, as one (model, speaker) shard of the paper's grid), so
that its once-per-shard set-up is amortised as it is in a real grid; the Trainer protocols pay their set-up in
every trial, as the paper's code does. The first trials of each protocol are the same (emotion, k, trial) cells,
interleaved, so the mean F1 is also compared on exactly those trials ("paired").

Prints one line per protocol (trials/hour, mean test macro-F1), then `speedup_vs_paper_protocol: <x>` and
`speedup_vs_tuned_trainer: <x>` (ratios of trials/hour). Then where the time goes: the arithmetic of one trial
of each protocol (GFLOP, counted with `torch.utils.flop_counter`, CPU attention included) and the rate each
reaches, and ours' *forward floor*: the time of its validation and test forward passes alone, measured in the
same run. The paper protocol's seconds per trial divided by that floor bounds the speed-up that any trainer
doing ours' arithmetic at ours' efficiency could reach on this machine. On CUDA it also times a
wav2vec2-base-sized random model and projects the paper's 33,600-trial grid; there it also times 15 trials
stacked against the same 15 trials on `--shared-workers` processes sharing the GPU, at k=4 and k=32
(`projected_stacked_vs_shared_workers_k4`, `..._k32`: the measurement that decides the stacked module's future).

    PYTHONPATH=. python bench/fewshot.py                 # about 4 minutes on 2 CPU cores
    PYTHONPATH=. python bench/fewshot.py --quick         # smoke run
    PYTHONPATH=. python bench/fewshot.py --quick --forward-variants   # what else might lower ours' forward floor
"""
from __future__ import annotations
import argparse, math, os, shutil, sys, tempfile, time, warnings
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from speech_prefinetune.core import derive_seed
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune.audio import load_audio
from speech_prefinetune.model import MultiTaskClassifier, load_preprocessor, prepare_batch
from speech_prefinetune.fewshot import TrialConfig, TrialRunner, binary_metrics, sample_fewshot
from speech_prefinetune.stacked import StackedForward, run_stack, stack_cells, stack_predict, stack_weights
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

EMOTIONS = ("Neutral", "Angry", "Happy", "Sad", "Surprise")


def write_speaker(root: Path, speaker="0011", n_train=12, n_valid=20, n_test=30, sr=16000, seed=0) -> Path:
    "ESD layout for one speaker: emotion-dependent pitch, rate and brightness on a harmonic voice, 2-4 s clips."
    rng = np.random.default_rng(seed)
    for ei, emo in enumerate(EMOTIONS):
        for split, first, n in (("evaluation", 1, n_valid), ("test", 21, n_test), ("train", 51, n_train)):
            d = root / speaker / emo / split; d.mkdir(parents=True, exist_ok=True)
            for o in range(first, first + n):
                t = np.arange(int(rng.uniform(2, 4) * sr)) / sr
                f0 = (110 + 35 * ei) * (1 + 0.08 * np.sin(2 * np.pi * (2 + ei) * t)) * rng.uniform(0.92, 1.08)
                phase = 2 * np.pi * np.cumsum(f0) / sr
                w = sum(np.sin(h * phase) / h ** (1.5 - 0.2 * ei) for h in range(1, 6))
                w = 0.2 * w * (0.6 + 0.4 * np.sin(2 * np.pi * (3 + ei) * t)) + 0.02 * rng.normal(size=t.size)
                sf.write(d / f"{speaker}_{ei * 350 + o:06d}.wav", w.astype(np.float32), sr)
    return root


# ---------------------------------------------------------------- (a) and (b): transformers Trainer
class HFWrapper(torch.nn.Module):
    "What `Trainer` expects: forward(input_values, attention_mask, labels) -> {'loss', 'logits'}."
    def __init__(self, model, task):
        super().__init__(); self.model, self.task = model, task
    def forward(self, input_values, attention_mask=None, labels=None):
        logits = self.model(input_values, attention_mask, task=self.task)
        out = {"logits": logits}
        if labels is not None: out["loss"] = F.cross_entropy(logits.float(), labels)
        return out


def collate(items, preprocessor):
    "A `Trainer` batch through the encoder's own preprocessing (`model.prepare_batch`), as ours."
    x, m = prepare_batch([it["wave"] for it in items], preprocessor)
    return {"input_values": x, "attention_mask": m, "labels": torch.tensor([it["label"] for it in items])}


def trainer_trial(protocol, encoder, table, waves, speaker, emotion, k, trial, cfg, max_epochs, patience, workdir):
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback
    t0 = time.perf_counter()
    paper = protocol == "trainer_paper"
    s = derive_seed("trial", speaker, emotion, k, trial, 0)
    model = MultiTaskClassifier.from_encoder(encoder, {"init": ("a", "b")}, seed=0)
    if paper: waves = {u: load_audio(p, sr=model.sampling_rate) for u, p in zip(table.utt_id, table.path)}   # re-read every trial
    model.replace_heads({emotion: (f"not_{emotion}", emotion)}, seed=s)
    rows = table[table.speaker == speaker].set_index("utt_id")
    ds = lambda ids: [dict(wave=waves[u], label=int(rows.label[u] == emotion)) for u in ids]
    train = ds(sample_fewshot(table, speaker, emotion, k, trial))
    valid, test = (ds(sorted(rows.index[rows.split == sp])) for sp in ("valid", "test"))
    out = Path(workdir) / f"{protocol}-{emotion}-{k}-{trial}"
    args = TrainingArguments(
        str(out), eval_strategy="epoch", save_strategy="epoch", learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio,
        per_device_train_batch_size=1 if paper else k, gradient_accumulation_steps=4 if paper else 1,
        per_device_eval_batch_size=1 if paper else 64, num_train_epochs=max_epochs, max_grad_norm=cfg.max_grad_norm,
        load_best_model_at_end=True, metric_for_best_model="macro_f1", save_total_limit=2, save_only_model=not paper,
        logging_steps=3 if paper else 500, report_to="none", use_cpu=not torch.cuda.is_available(), seed=s % 2**31,
        disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0)
    metrics = lambda p: {"macro_f1": binary_metrics(p.label_ids, np.argmax(p.predictions, -1))["macro_f1"]}
    tr = Trainer(HFWrapper(model, emotion), args, train_dataset=train, eval_dataset=valid,
                 data_collator=partial(collate, preprocessor=model.preprocessor),
                 compute_metrics=metrics, callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)])
    tr.remove_callback(PrinterCallback)
    tr.train()
    pred = tr.predict(test)
    m = binary_metrics(pred.label_ids, np.argmax(pred.predictions, -1))
    epochs = int(round(tr.state.epoch or 0))
    shutil.rmtree(out, ignore_errors=True)
    return dict(m, epochs=epochs, seconds=time.perf_counter() - t0)


def _register_cpu_attention_flops():
    "`FlopCounterMode` knows the CUDA attention kernels only; count the CPU flash-attention kernel (forward, backward) alike."
    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd in flop_counter.flop_registry: return
    flop_counter.register_flop_formula(fwd, get_raw=True)(
        lambda q, k, v, *a, out_val=None, **kw: flop_counter.sdpa_flop_count(q.shape, k.shape, v.shape))
    flop_counter.register_flop_formula(bwd, get_raw=True)(
        lambda grad_out, q, k, v, *a, out_val=None, **kw: flop_counter.sdpa_backward_flop_count(grad_out.shape, q.shape, k.shape, v.shape))


class _FlopCount(TorchDispatchMode):
    "Sums `torch.utils.flop_counter`'s per-op formulas; unlike `FlopCounterMode` it also works under `inference_mode`."
    def __init__(self): super().__init__(); self.total = 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        formula = flop_counter.flop_registry.get(func._overloadpacket)
        if formula is None:   # under inference_mode composite ops (linear, conv1d, attention) arrive whole: decompose them
            with self: out = func.decompose(*args, **kwargs)   # the parts come back through this mode
            if out is not NotImplemented: return out
        out = func(*args, **kwargs)
        if formula is not None: self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn):
    "(result of `fn()`, floating-point operations it ran)."
    _register_cpu_attention_flops()
    with _FlopCount() as fc: out = fn()
    return out, fc.total


def forward_floor(runner, task, epochs, repeats=5):
    "Seconds of ours' forward passes alone in a trial of `epochs` epochs: one validation pass per epoch, one test pass."
    def best(split):
        runner.predict(split, task)
        times = []
        for _ in range(repeats):
            t = time.perf_counter(); runner.predict(split, task); times.append(time.perf_counter() - t)
        return min(times)
    return epochs * best("valid") + best("test")


def stacked_forward_floor(runner, task, epochs, n, repeats=3):
    "Seconds per trial of ours_stacked's forward passes alone (validation every epoch, one test pass) with `n` trials stacked."
    fwd = StackedForward(runner.model)
    W = stack_weights(runner.model, runner.model.heads[next(iter(runner.model.heads))], n)
    def best(split):
        stack_predict(runner, fwd, W, split)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            stack_predict(runner, fwd, W, split)
            times.append(time.perf_counter() - t)
        return min(times) / n
    return epochs * best("valid") + best("test")


# ---------------------------------------------------------------- (e): one-at-a-time workers sharing the device
_BARRIER = None


def _init_shared_worker(barrier):
    global _BARRIER
    _BARRIER = barrier


def shared_worker(job):
    "One of the workers sharing the device: its own `TrialRunner` over its share of the trials; (results, start, end)."
    esd_root, speaker, enc, cfg, cells, threads, device, warm = job
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    table = load_corpus("esd", esd_root)
    if not isinstance(enc, str):               # an encoder config: a random model of that architecture
        enc = MultiTaskClassifier.from_encoder(enc, {"init": ("a", "b")})
    runner = None
    if warm:                                   # set-up and one warm-up trial before the clock starts
        runner = TrialRunner(enc, table, speaker, cfg, device=device)
        runner.run(*cells[0])
        sync()
    _BARRIER.wait()                            # all workers start together: they share the device all along
    start = time.time()
    if runner is None:
        runner = TrialRunner(enc, table, speaker, cfg, device=device)   # set-up timed, as ours' is
    res = [runner.run(*c) for c in cells]
    sync()
    return res, start, time.time()


def shared_workers(esd_root, speaker, enc, cfg, cells, n, threads, device, warm=False, split=True):
    "Trials one at a time on `n` processes sharing `device`: (results, summed trials/hour, makespan seconds)."
    if split:                                  # `cells` shared round-robin among the workers
        shares = [cells[i::n] for i in range(n) if cells[i::n]]
    else:                                      # every worker runs all of `cells`, as if each had a shard of its own
        shares = [cells] * n
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(shares))
    jobs = [(str(esd_root), speaker, enc, cfg, share, threads, str(device), warm) for share in shares]
    with ProcessPoolExecutor(len(jobs), mp_context=ctx, initializer=_init_shared_worker, initargs=(barrier,)) as ex:
        out = list(ex.map(shared_worker, jobs))
    results = [r for res, _, _ in out for r in res]
    summed = sum(3600 * len(res) / (end - start) for res, start, end in out)
    makespan = max(end for _, _, end in out) - min(start for _, start, _ in out)
    return results, summed, makespan


def forward_variants(enc, table, speaker, cfg, task="angry", repeats=10):
    "Seconds of one validation pass of ours under alternatives that might lower the forward floor (same run, same clips)."
    from dataclasses import replace
    def timed(runner, fn):
        fn(); t = time.perf_counter()
        for _ in range(repeats): fn()
        return (time.perf_counter() - t) / repeats
    base = TrialRunner(enc, table, speaker, cfg); base.run(task, 4, 0)
    out = {"eager fp32, eval batch 64 (ours)": timed(base, lambda: base.predict("valid", task))}
    for bs in (32, 16):
        r = TrialRunner(enc, table, speaker, replace(cfg, eval_batch_size=bs)); r.run(task, 4, 0)
        out[f"eager fp32, eval batch {bs}"] = timed(r, lambda: r.predict("valid", task))
    model = base.model.eval()
    def passes(fn, dtype=None):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype is not None):
            for x, m, _ in base._batches["valid"]: fn(x, m, task=task)
    out["bf16 autocast"] = timed(base, lambda: passes(model.forward_from_features, torch.bfloat16))
    compiled = torch.compile(model.forward_from_features, dynamic=True)
    passes(compiled)                                   # compile outside the timing
    out["torch.compile (inductor, dynamic)"] = timed(base, lambda: passes(compiled))
    ref = out["eager fp32, eval batch 64 (ours)"]
    for name, t in out.items(): print(f"validation pass, {name:34s} {1000 * t:6.1f} ms  ({ref / t:.2f}x)")
    return out


def summary(name, res, wall):
    n = len(res)
    f1 = np.array([r["macro_f1"] for r in res])
    line = dict(protocol=name, trials=n, epochs_per_trial=np.mean([r["epochs"] for r in res]), s_per_trial=wall / n,
                trials_per_hour=3600 * n / wall, mean_macro_f1=f1.mean(), se_macro_f1=f1.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan"))
    print(f"{name:14s} trials {n:3d}  epochs/trial {line['epochs_per_trial']:5.1f}  s/trial {line['s_per_trial']:8.3f}  "
          f"trials/hour {line['trials_per_hour']:10.1f}  mean_macro_f1 {line['mean_macro_f1']:.3f} (se {line['se_macro_f1']:.3f})", flush=True)
    return line


def project_grid(root, args, device="cuda", encoder_config=None):
    "Time a wav2vec2-base-sized random model (or `encoder_config`) per k and project the 33,600-trial grid."
    from transformers import Wav2Vec2Config
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    table = load_corpus("esd", write_speaker(root / "esd_proj", "0012", n_train=40, seed=1))
    cfg = TrialConfig(max_epochs=args.gpu_epochs, patience=args.gpu_epochs, lr=args.lr, eval_batch_size=128,
                      eval_batch_seconds=512.0)   # 128 clips of 2-4 s per validation batch
    enc = encoder_config or Wav2Vec2Config()   # default: the wav2vec2-base architecture (94M parameters), random weights
    model = MultiTaskClassifier.from_encoder(enc, {"init": ("a", "b")})
    t0 = time.perf_counter(); runner = TrialRunner(model, table, "0012", cfg, device=device); sync()
    setup = time.perf_counter() - t0
    n_clips = len(runner._feats)
    per_epoch = {}
    for k in (2, 4, 8, 16, 24, 32, 64):
        runner.run("angry", k, 1)                                  # warm-up (kernels, allocator, train features)
        sync(); t = time.perf_counter()
        r = [runner.run(e, k, 0) for e in ("angry", "sad")]
        sync()
        per_epoch[k] = (time.perf_counter() - t) / sum(x["epochs"] for x in r)
        print(f"{device} {type(enc).__name__} k={k:2d}: {1000 * per_epoch[k]:.1f} ms/epoch (train {k} clips + validate 100)", flush=True)
    stacked = {}
    for k in (4, 32):                                              # 15 trials (5 emotions x 3) at once
        unit = [(e, k, t) for t in range(3) for e in ("angry", "sad", "happy", "neutral", "surprise")]
        run_stack(runner, unit[:2])
        sync()
        t = time.perf_counter()
        r = run_stack(runner, unit)
        sync()
        stacked[k] = (time.perf_counter() - t) / sum(x["epochs"] for x in r)
        print(f"{device} {type(enc).__name__} k={k:2d}, 15 stacked trials: {1000 * stacked[k]:.1f} ms per trial-epoch "
              f"({per_epoch[k] / stacked[k]:.2f}x one at a time)", flush=True)
        r, _, makespan = shared_workers(root / "esd_proj", "0012", enc, cfg, unit, args.shared_workers, args.threads,
                                        device, warm=True)
        shared = makespan / sum(x["epochs"] for x in r)
        print(f"{device} {type(enc).__name__} k={k:2d}, the same 15 trials on {args.shared_workers} one-at-a-time workers "
              f"sharing the device: {1000 * shared:.1f} ms per trial-epoch ({per_epoch[k] / shared:.2f}x one worker)",
              flush=True)
        print(f"projected_stacked_vs_shared_workers_k{k}: {shared / stacked[k]:.2f}  (stacks stay only at >= 2)", flush=True)
    cells_per_k = 16 * 20 * 5 * 3
    trials_s = sum(cells_per_k * args.assumed_epochs * per_epoch[k] for k in per_epoch)
    feat_s = setup / n_clips * 35_000                               # CNN features of all of ESD, computed once
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"projected_grid_hours: {(trials_s + feat_s) / 3600:.2f}  (33,600 trials x {args.assumed_epochs} epochs each "
          f"assumed, + CNN features of 35,000 clips; one {name}, one worker)")
    gain = lambda k: (lambda m: per_epoch[m] / stacked[m])(4 if k <= 8 else 32)   # stacked speed-up measured at k=4 and 32
    stacked_s = sum(cells_per_k * args.assumed_epochs * per_epoch[k] / gain(k) for k in per_epoch)
    print(f"projected_grid_hours_stacked: {(stacked_s + feat_s) / 3600:.2f}  (the same, 15 trials per stack; the "
          f"speed-up measured at k=4 applied to k <= 8, the one at k=32 to k >= 16)")
    return (trials_s + feat_s) / 3600


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-epochs", type=int, default=8, help="epoch budget of every trial (default: %(default)s)")
    p.add_argument("--patience", type=int, default=8, help="early stopping (default: the budget, so every protocol runs the same epochs)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of all three (default %(default)s: a random tiny encoder learns little at the paper's 3e-5)")
    p.add_argument("--trainer-trials", type=int, default=5, help="trials per Trainer protocol (default: %(default)s, one per emotion)")
    p.add_argument("--ours-trials", type=int, default=105, help="trials of ours (default: %(default)s, one grid shard's worth; "
                   "the first --trainer-trials are the Trainers' trials)")
    p.add_argument("--stack", type=int, default=15, help="trials per stack of ours_stacked (default: %(default)s)")
    p.add_argument("--shared-workers", type=int, default=4,
                   help="processes of ours_shared_workers, sharing the device (default: %(default)s; --quick: 2)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gpu-epochs", type=int, default=10)
    p.add_argument("--assumed-epochs", type=int, default=45, help="epochs per trial assumed by the grid projection")
    p.add_argument("--no-flops", action="store_true", help="skip counting the arithmetic of one trial per protocol")
    p.add_argument("--forward-variants", action="store_true",
                   help="also time ours' validation pass with smaller eval batches, bf16 autocast and torch.compile")
    p.add_argument("--quick", action="store_true", help="2 epochs, 2 trials: a smoke run")
    p.add_argument("--projection-smoke", action="store_true", help="run the GPU projection code path on CPU with the tiny encoder")
    args = p.parse_args(argv)
    if args.quick:
        args.max_epochs = args.patience = 2
        args.trainer_trials = args.ours_trials = 2
        args.shared_workers = 2
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    root = Path(tempfile.mkdtemp(prefix="spft_bench_"))
    try:
        table = load_corpus("esd", write_speaker(root / "esd"))
        speaker, enc, k = "0011", "tiny-wav2vec2", args.k
        cfg = TrialConfig(max_epochs=args.max_epochs, patience=args.patience, lr=args.lr, batch_size=4)
        emos = [e.lower() for e in EMOTIONS]
        cells = lambda n: [(emos[i % 5], k, i // 5) for i in range(n)]
        print(f"speaker {speaker}: {len(table)} clips ({(table.split == 'valid').sum()} valid, {(table.split == 'test').sum()} test), "
              f"encoder {enc}, k={k}, budget {args.max_epochs} epochs, patience {args.patience}, lr {args.lr}, "
              f"{torch.get_num_threads()} thread(s), {'cuda' if torch.cuda.is_available() else 'cpu'}", flush=True)
        sr = load_preprocessor(enc).sampling_rate
        waves = {u: load_audio(pth, sr=sr) for u, pth in zip(table.utt_id, table.path)}
        # interleaved (paper, tuned, ours) trial by trial, so that load changes on a shared machine hit all three alike
        t0 = time.perf_counter(); runner = TrialRunner(enc, table, speaker, cfg); setup = time.perf_counter() - t0
        res = {p: [] for p in ("trainer_paper", "trainer_tuned", "ours")}
        n = max(args.trainer_trials, args.ours_trials)
        for i, (e, kk, t) in enumerate(cells(n)):
            for proto in ("trainer_paper", "trainer_tuned"):
                if i < args.trainer_trials:
                    res[proto].append(trainer_trial(proto, enc, table, waves, speaker, e, kk, t, cfg, args.max_epochs,
                                                    args.patience, root))
            if i < args.ours_trials: res["ours"].append(runner.run(e, kk, t))
        t = time.perf_counter()
        res["ours_stacked"] = [r for unit in stack_cells(cells(args.ours_trials), args.stack)
                               for r in run_stack(runner, unit)]
        stacked_wall = time.perf_counter() - t
        device = "cuda" if torch.cuda.is_available() else "cpu"
        res["ours_shared_workers"], summed, _ = shared_workers(root / "esd", speaker, enc, cfg, cells(args.ours_trials),
                                                               args.shared_workers, args.threads, device, split=False)
        lines = {p: summary(p, r, sum(x["seconds"] for x in r) + (setup if p == "ours" else 0)) for p, r in res.items()
                 if p not in ("ours_stacked", "ours_shared_workers")}
        lines["ours_stacked"] = summary("ours_stacked", res["ours_stacked"], stacked_wall + setup)
        n_shared = len(res["ours_shared_workers"])
        lines["ours_shared_workers"] = summary("ours_shared_workers", res["ours_shared_workers"], 3600 * n_shared / summed)
        m = args.trainer_trials
        if 0 < m < len(res["ours"]):
            paired = np.mean([r["macro_f1"] for r in res["ours"][:m]])
            print(f"ours, the {m} trials the Trainers ran: mean_macro_f1 {paired:.3f}")
        print(f"(ours: {setup:.2f} s of set-up included once, as in a grid shard: model load, CNN features of "
              f"{len(table[table.split != 'train'])} valid/test clips and of the train clips on first use)")
        print(f"speedup_vs_paper_protocol: {lines['ours']['trials_per_hour'] / lines['trainer_paper']['trials_per_hour']:.1f}")
        print(f"speedup_vs_tuned_trainer: {lines['ours']['trials_per_hour'] / lines['trainer_tuned']['trials_per_hour']:.1f}")
        print(f"stacked_speedup_vs_paper_protocol: {lines['ours_stacked']['trials_per_hour'] / lines['trainer_paper']['trials_per_hour']:.1f}")
        print(f"stacked_vs_ours: {lines['ours_stacked']['trials_per_hour'] / lines['ours']['trials_per_hour']:.2f}  "
              f"(stacks of {args.stack}; mean F1 {lines['ours_stacked']['mean_macro_f1']:.3f} vs {lines['ours']['mean_macro_f1']:.3f} "
              f"over the same {len(res['ours'])} trials)")
        shared_tph = lines["ours_shared_workers"]["trials_per_hour"]
        print(f"shared_workers_vs_ours: {shared_tph / lines['ours']['trials_per_hour']:.2f}  ({args.shared_workers} "
              f"one-at-a-time workers sharing the {device}, {args.threads} thread(s) each; their trials/hour summed)")
        print(f"stacked_vs_shared_workers: {lines['ours_stacked']['trials_per_hour'] / shared_tph:.2f}  (the rule of "
              f"nbs/06a_stacked.ipynb: stacked trials stay only if a GPU run shows >= 2)")
        # where the time goes: arithmetic per trial, and ours' forward-only floor
        epochs = lines["ours"]["epochs_per_trial"]
        floor = forward_floor(runner, cells(len(res["ours"]))[-1][0], epochs)
        paper_s = lines["trainer_paper"]["s_per_trial"]
        print(f"ours_forward_floor_s_per_trial: {floor:.3f}  ({epochs:.1f} validation passes over "
              f"{(table.split == 'valid').sum()} clips + 1 test pass over {(table.split == 'test').sum()}; "
              f"ours spends {lines['ours']['s_per_trial']:.3f})")
        print(f"ceiling_vs_paper_protocol: {paper_s / floor:.1f}  (the paper protocol's s/trial over that floor: "
              f"what a trainer with no cost beyond ours' forward passes would reach)")
        sfloor = stacked_forward_floor(runner, cells(1)[0][0], epochs, args.stack)
        print(f"ours_stacked_forward_floor_s_per_trial: {sfloor:.3f}  (the same passes for {args.stack} stacked trials "
              f"at once, one unpadded clip at a time, per trial)")
        print(f"stacked_ceiling_vs_paper_protocol: {paper_s / sfloor:.1f}")
        if not args.no_flops:
            e, kk, t = cells(1)[0]
            gf = {}
            for proto in ("trainer_paper", "trainer_tuned"):
                r, gf[proto] = count_flops(lambda: trainer_trial(proto, enc, table, waves, speaker, e, kk, t, cfg,
                                                                 args.max_epochs, args.patience, root))
            fresh, setup_f = count_flops(lambda: TrialRunner(enc, table, speaker, cfg))
            gf["ours"] = count_flops(lambda: fresh.run(e, kk, t))[1] + setup_f / len(res["ours"])   # set-up shared as timed
            for proto, f in gf.items():
                print(f"{proto:14s} GFLOP/trial {f / 1e9:7.2f}  GFLOP/s {f / 1e9 / lines[proto]['s_per_trial']:6.1f}")
            print(f"flop_ratio_paper_over_ours: {gf['trainer_paper'] / gf['ours']:.1f}  (the rest of the speed-up is the "
                  f"rate at which the same arithmetic is done)")
        if args.forward_variants: forward_variants(enc, table, speaker, cfg)
        if torch.cuda.is_available(): project_grid(root, args, "cuda")
        elif args.projection_smoke:
            from speech_prefinetune.model import tiny_config
            args.gpu_epochs = 2; project_grid(root, args, "cpu", tiny_config("tiny-wav2vec2"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
