"""Real-size pre-finetuning step: ours against `Trainer` + `Wav2Vec2ForSequenceClassification`, same audio per step.

A local checkpoint folder built like `facebook/wav2vec2-base` (`Wav2Vec2Config()` defaults: the base geometry, 94M
parameters, seeded random weights, `save_pretrained`) with the real checkpoint's `preprocessor_config.json` values
(`do_normalize=True`, `return_attention_mask=False`, 16 kHz, padding value 0). IEMOCAP-like clip lengths: log-normal,
median 3 s, clipped to [1, 30] s (seeded); speech-like synthetic waves held in memory; clips longer than `--max-seconds`
(default `PrefinetuneConfig().max_seconds`) are randomly cropped to it in every variant. Each variant runs in its own
subprocess, so its peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is its own; the processes set up side by side,
then take their steps one at a time in turn (lock-step, round-robin), so that the changing load of a shared machine
falls on every variant alike. Each trains one untimed warm-up step, then `--steps` timed optimizer steps; frozen CNN,
AdamW (lr 5e-5, weight decay 0.01), clipping 1.0, linear schedule:

- `ours`: the package's pre-finetuning step: `MultiTaskClassifier.from_encoder(folder)` (with the folder's
  preprocessor), one IEMOCAP head behind a 256-wide projector, an epoch of `bucket_batches(...,
  max_batch_samples=--batch-seconds x 16000)` with random crops, `prepare_batch(waves, model.preprocessor)`, then
  `training_step` (scaled loss) under `make_accelerator`'s Accelerator.
- `trainer`: `Trainer` + `Wav2Vec2ForSequenceClassification.from_pretrained(folder)` (the same 256-wide projector),
  `freeze_feature_encoder()`, each clip cropped and normalised by the feature extractor when read (as the
  audio-classification example's `set_transform`), batches padded by the standard collator
  (`processing_class=feature_extractor`: `DataCollatorWithPadding`), the default random sampler, and
  `per_device_train_batch_size` = ours' mean real audio-seconds per batch over an epoch / the mean clip length, rounded:
  the same mean audio-seconds per step.
- `trainer_group_by_length`: the same with `train_sampling_strategy="group_by_length"` (its `LengthGroupedSampler`).

Reported per variant: seconds per step; audio-s/s (real, unpadded audio-seconds per wall-second, and per CPU-second of
the process); the padded fraction of the samples it computed on; its cost per padded audio-second; the padded fraction
of a whole epoch of its sampler and the audio-s/s that epoch would reach at the measured cost (a few sampled steps are
noisy, the epoch is not); the peak RSS over the timed steps and after one more step on the largest padded batch of
that epoch (what a whole epoch needs; on CUDA the peak GPU memory too). Then the ratios against the default `Trainer`
and whether the goal holds: >= 1.3x its audio-s/s (timed steps) with no higher peak memory (epoch). A first line shows
how the padding of each kind of batching grows with the audio per batch.

On CUDA each variant also runs in bf16 (ours: the Accelerator's bf16 autocast; Trainer: `bf16=True`), and the model
FLOPs of its timed steps are counted with `bench/fewshot.py`'s `count_flops` (torch's FLOP formulas) on the same
shapes in eval mode (every layer, no LayerDrop, so slightly above the work done in training): TFLOP/s and MFU against
`--peak-tflops` (default: the dense bf16 peak of a known GPU).

    PYTHONPATH=$PWD python bench/realsize.py                    # CPU: 6 steps of 16 padded audio-s, ~6.5 min on 2 cores
    PYTHONPATH=$PWD python bench/realsize.py --device cuda      # GPU: 30 steps of PrefinetuneConfig's batch_seconds
    PYTHONPATH=$PWD python bench/realsize.py --tiny --steps 2   # smoke run (tiny encoder; FLOPs counted on CPU too)

Ours' optimizer is the one `prefinetune_tables` builds (`prefinetune.make_optimizer`: fused AdamW, as `Trainer`'s
default `adamw_torch_fused`); with torch's default per-tensor loop, the AdamW step of the 90M trainable parameters took
~4.9 s on a 2-core CPU against ~1.2-1.6 s fused (2026-12-01, loaded machine).

Last lines: `speedup_vs_trainer: <x>` (ours' audio-s/s over the default Trainer's), `speedup_vs_group_by_length`,
`epoch_speedup_vs_trainer`, `peak_rss_ratio_vs_trainer` (and `peak_gpu_ratio_vs_trainer`), `goal_met: yes|no`.
"""
from __future__ import annotations
import argparse, importlib.util, json, os, resource, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
from speech_prefinetune.core import LABELS, derive_seed  # noqa: E402
from speech_prefinetune.prefinetune import PrefinetuneConfig, bucket_batches  # noqa: E402

SR = 16000
TASK = "iemocap"
# facebook/wav2vec2-base's preprocessor_config.json
BASE_PREPROCESSOR = dict(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                         return_attention_mask=False)
# --tiny: the base layout (group-norm CNN, post-norm transformer) at toy widths
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32, 32, 32),
            conv_kernel=(10, 8, 8), conv_stride=(5, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
PEAK_BF16_TFLOPS = {"H100": 989, "H200": 989, "A100": 312, "L40S": 362, "A10": 125, "L4": 121}
DEFAULT = PrefinetuneConfig()
VARIANTS = ("ours", "trainer", "trainer_group_by_length")
LR, WEIGHT_DECAY, GRAD_CLIP, PROJECTOR = 5e-5, 0.01, 1.0, 256


def clip_lengths(n, seed=0) -> np.ndarray:
    "Samples per clip, IEMOCAP-like: log-normal seconds (median 3 s, sigma 0.7) clipped to [1, 30]."
    secs = np.clip(np.exp(np.random.default_rng(seed).normal(np.log(3.0), 0.7, n)), 1.0, 30.0)
    return (secs * SR).astype(np.int64)


def synth_waves(lengths, seed=0, source_seconds=300) -> list:
    "Speech-like float32 clips: windows at random offsets of one long voice (gliding pitch, syllables, noise, level)."
    rng = np.random.default_rng(seed)
    n = max(int(source_seconds * SR), int(np.max(lengths)) + 1)
    t = np.arange(n) / SR
    f0 = 150 * np.exp(0.3 * np.sin(2 * np.pi * 0.07 * t) + 0.05 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    voice = (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)) * syllables
    level = 0.02 + 0.28 * (0.5 + 0.5 * np.sin(2 * np.pi * t / 37))   # quiet and loud stretches
    source = (level * voice + 0.005 * rng.standard_normal(n)).astype(np.float32)
    return [source[o:o + m] for m, o in zip(lengths, rng.integers(0, n - np.asarray(lengths) + 1))]


def dataset(args):
    "(lengths, waves, integer labels, crop length in samples) of the synthetic corpus (the same in every process)."
    lengths = clip_lengths(args.clips, args.seed)
    labels = np.random.default_rng(args.seed + 1).integers(0, len(LABELS[TASK]), len(lengths))
    return lengths, synth_waves(lengths, args.seed), labels, crop_length(lengths, args)


def crop_length(lengths, args) -> int:
    "Samples a clip is randomly cropped to (`--max-seconds`; None: the longest clip, i.e. no cropping)."
    return int(args.max_seconds * SR) if args.max_seconds else int(np.max(lengths))


def ours_plan(lengths, max_len, args) -> list:
    "Our epoch of batches: `(clip indices, crop offsets)`, length-bucketed under the audio-seconds budget."
    rng = np.random.default_rng(derive_seed(args.seed, "sampler"))
    eff = np.minimum(lengths, max_len)
    offsets = rng.integers(0, lengths - eff + 1)
    return [(b, offsets[b]) for b in bucket_batches(eff, rng, max_batch_samples=int(args.batch_seconds * SR))]


def padded_fraction(lengths, batches) -> float:
    "Share of the computed samples that are padding."
    return 1 - sum(lengths[b].sum() for b in batches) / sum(len(b) * lengths[b].max() for b in batches)


def matched_batch_size(lengths, batches) -> tuple[float, int]:
    "(mean real audio-seconds of `batches`, the clip count whose mean audio is closest to it)."
    audio = float(np.mean([lengths[b].sum() for b in batches])) / SR
    return audio, max(1, round(audio / (lengths.mean() / SR)))


def build_checkpoint(dir, tiny=False, seed=0) -> Path:
    "A wav2vec2-base-sized (or tiny) checkpoint folder: config, seeded random weights, the base preprocessor."
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(**(TINY if tiny else {}))).save_pretrained(dir)
    Wav2Vec2FeatureExtractor(**BASE_PREPROCESSOR).save_pretrained(dir)
    return Path(dir)


def gate(args):
    "Under the parent's lock-step (`--lockstep`): say this process is idle, wait until it may run its next step."
    if args.lockstep:
        print("wait", flush=True)
        sys.stdin.readline()


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _flop_counter():
    "`count_flops` of bench/fewshot.py (torch's FLOP formulas, CPU attention kernels included)."
    spec = importlib.util.spec_from_file_location("bench_fewshot", ROOT / "bench" / "fewshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.count_flops


def _result(args, steps, rss_setup_kb, epoch_lengths, epoch_batches, worst_step) -> dict:
    """The child's report: per-step records `(wall s, cpu s, real samples, batch, padded length)`, the first (warm-up)
    not timed; the sampler's whole-epoch padding; the peak RSS before and after `worst_step(i)` (one step on the
    epoch's largest padded batch, run unless a step so large already ran)."""
    timed = steps[1:]
    wall, cpu = sum(s[0] for s in timed), sum(s[1] for s in timed)
    real, padded = sum(s[2] for s in timed) / SR, sum(s[3] * s[4] for s in timed) / SR
    epoch_padded = [len(b) * epoch_lengths[b].max() for b in epoch_batches]
    r = dict(steps=len(timed), s_per_step=wall / len(timed), audio_s_per_step=real / len(timed),
             audio_s_per_s=real / wall, audio_s_per_cpu_s=real / cpu, padded_fraction=1 - real / padded,
             s_per_padded_audio_s=wall / padded, epoch_padded_fraction=padded_fraction(epoch_lengths, epoch_batches),
             epoch_steps=len(epoch_batches), epoch_max_padded_audio_s=max(epoch_padded) / SR,
             rss_after_setup_mb=rss_setup_kb / 1024)
    # the whole epoch at this loop's measured cost per padded audio-second: less noisy than a few sampled steps
    r["projected_epoch_audio_s_per_s"] = (1 - r["epoch_padded_fraction"]) / r["s_per_padded_audio_s"]
    r["peak_rss_timed_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ran = max(s[3] * s[4] for s in steps)
    if ran < max(epoch_padded):
        gate(args)
        worst_step(int(np.argmax(epoch_padded)))
    r["max_padded_audio_s"] = max(ran, max(epoch_padded)) / SR
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device == "cuda":
        r["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return r


def run_ours(args, lengths, waves, labels, max_len) -> dict:
    "Time our pre-finetuning step on the first `steps + 1` batches of our epoch plan."
    # imports here, not at the top: each variant's process loads only what it runs, so its peak RSS is its own
    from transformers import get_linear_schedule_with_warmup
    from speech_prefinetune.model import MultiTaskClassifier, prepare_batch
    from speech_prefinetune.prefinetune import make_accelerator, make_optimizer, scaled_loss, training_step
    acc = make_accelerator(PrefinetuneConfig(device=args.device, bf16=args.bf16))
    model = MultiTaskClassifier.from_encoder(args.folder, {TASK: LABELS[TASK]}, seed=args.seed, projector_dim=PROJECTOR,
                                             freeze_feature_encoder=True)
    opt = make_optimizer(model, PrefinetuneConfig(lr=LR, weight_decay=WEIGHT_DECAY))
    sched = get_linear_schedule_with_warmup(opt, 0, args.steps + 1)
    model, opt = acc.prepare(model, opt)
    model.train()
    epoch = ours_plan(lengths, max_len, args)
    n_classes = {TASK: len(LABELS[TASK])}
    def step(rows, offsets):   # one optimizer step: the preprocessor's normalisation and padding, then `training_step`
        x, mask = prepare_batch([waves[r][o:o + max_len] for r, o in zip(rows, offsets)], model.preprocessor)
        b = dict(task=TASK, input_values=x.to(acc.device), attention_mask=mask.to(acc.device),
                 labels=torch.as_tensor(labels[rows], device=acc.device))
        training_step(acc, model, opt, sched, [b], n_classes, GRAD_CLIP)
        _sync(args.device)
        return int(mask.sum()), *x.shape
    rss_setup, steps = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, []
    for rows, offsets in epoch[:args.steps + 1]:
        gate(args)
        t, c = time.perf_counter(), time.process_time()
        shape = step(rows, offsets)
        steps.append((time.perf_counter() - t, time.process_time() - c, *shape))
    r = _result(args, steps, rss_setup, np.minimum(lengths, max_len), [b for b, _ in epoch], lambda i: step(*epoch[i]))
    if args.flops:   # the timed steps' shapes again, forward + backward, eval mode (model FLOPs: every layer)
        count, model = _flop_counter(), model.eval()
        def fwd_bwd(rows, offsets):
            x, mask = prepare_batch([waves[i][o:o + max_len] for i, o in zip(rows, offsets)], model.preprocessor)
            with acc.autocast():
                logits = model(x.to(acc.device), mask.to(acc.device), task=TASK)
            scaled_loss(logits, torch.as_tensor(labels[rows], device=acc.device), n_classes[TASK]).backward()
        timed = epoch[1:args.steps + 1]
        r["flops_per_step"] = sum(count(lambda: fwd_bwd(*b))[1] for b in timed) / len(timed)
    return r


class CroppedClips(torch.utils.data.Dataset):
    "Clips cropped and normalised by the feature extractor when read, as the audio-classification example's transform."
    def __init__(self, waves, labels, offsets, max_len, fe):
        self.waves, self.labels, self.offsets, self.max_len, self.fe = waves, labels, offsets, max_len, fe

    def __len__(self):
        return len(self.waves)

    def __getitem__(self, i):
        w = self.waves[i][self.offsets[i]:self.offsets[i] + self.max_len]
        return dict(input_values=self.fe(w, sampling_rate=SR).input_values[0], label=int(self.labels[i]))


def run_trainer(args, lengths, waves, labels, max_len, strategy="random") -> dict:
    "Time `Trainer` + `Wav2Vec2ForSequenceClassification` (frozen CNN, standard collator) for `steps + 1` steps."
    from transformers import (AutoFeatureExtractor, DataCollatorWithPadding, Trainer, TrainerCallback,  # see run_ours
                              TrainingArguments, Wav2Vec2ForSequenceClassification)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    fe = AutoFeatureExtractor.from_pretrained(args.folder)
    torch.manual_seed(args.seed)
    model = Wav2Vec2ForSequenceClassification.from_pretrained(args.folder, num_labels=len(LABELS[TASK]),
                                                              classifier_proj_size=PROJECTOR)
    model.freeze_feature_encoder()
    rng = np.random.default_rng(derive_seed(args.seed, "trainer crops"))   # the example script's random subsample
    crops = np.minimum(lengths, max_len)
    items = CroppedClips(waves, labels, rng.integers(0, lengths - crops + 1), max_len, fe)
    batches = []
    class Recording(DataCollatorWithPadding):   # the default collator for a feature extractor, noting each batch
        def __call__(self, features):
            out = super().__call__(features)
            batches.append((sum(len(f["input_values"]) for f in features), *out["input_values"].shape))
            return out
    starts, ends = [], []   # a step runs from its go (the gate opening) to its on_step_end: fetch, collation, step
    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            gate(args)
            starts.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, *a, **k):
            _sync(args.device)
            ends.append((time.perf_counter(), time.process_time()))
            if len(ends) < args.steps + 1:
                gate(args)
                starts.append((time.perf_counter(), time.process_time()))
    out = tempfile.mkdtemp(prefix="realsize_trainer_")
    targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.trainer_batch_size,
                              max_steps=args.steps + 1, learning_rate=LR, weight_decay=WEIGHT_DECAY,
                              max_grad_norm=GRAD_CLIP, lr_scheduler_type="linear", warmup_steps=0,
                              logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[],
                              use_cpu=args.device == "cpu", bf16=args.bf16 and args.device == "cuda",
                              dataloader_num_workers=0, seed=args.seed, disable_tqdm=True,
                              train_sampling_strategy=strategy)
    trainer = Trainer(model=model, args=targs, train_dataset=items, processing_class=fe,
                      data_collator=Recording(fe), callbacks=[Clock()])
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer.train()
    steps = [(t1[0] - t0[0], t1[1] - t0[1], *b) for t0, t1, b in zip(starts, ends, batches)]
    assert len(steps) == args.steps + 1, (len(starts), len(ends), len(batches))
    order = list(trainer._get_train_sampler(trainer.train_dataset))   # a whole epoch of its sampler
    B = args.trainer_batch_size
    epoch = [np.array(order[i:i + B]) for i in range(0, len(order), B)]
    def worst_step(i):   # one more step of its own loop on that epoch's largest batch
        inputs = trainer._prepare_inputs(trainer.data_collator([items[j] for j in epoch[i]]))
        trainer.training_step(trainer.model, inputs)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        _sync(args.device)
    r = _result(args, steps, rss_setup, crops, epoch, worst_step)
    if args.flops:
        count, model = _flop_counter(), trainer.model.eval()
        dev = next(model.parameters()).device
        def fwd_bwd(b, t):
            x = torch.randn(b, t, device=dev)
            with torch.autocast(dev.type, torch.bfloat16, enabled=args.bf16 and args.device == "cuda"):
                loss = model(input_values=x, labels=torch.zeros(b, dtype=torch.long, device=dev)).loss
            loss.backward()
        r["flops_per_step"] = sum(count(lambda: fwd_bwd(s[3], s[4]))[1] for s in steps[1:]) / (len(steps) - 1)
    shutil.rmtree(out, ignore_errors=True)
    return r


def child(args):
    "Run one variant in this process; print its report as the line `result <JSON>`."
    if args.threads:
        torch.set_num_threads(args.threads)
    data = dataset(args)
    try:
        if args.variant == "ours":
            r = run_ours(args, *data)
        else:
            strategy = "group_by_length" if args.variant == "trainer_group_by_length" else "random"
            r = run_trainer(args, *data, strategy=strategy)
    except torch.OutOfMemoryError as e:   # a finding, not a crash: that batching does not fit this device
        r = dict(error=f"out of memory ({str(e).splitlines()[0][:120]})")
    print("result " + json.dumps(r), flush=True)


def start(args, variant, bf16, log) -> subprocess.Popen:
    "One variant in a fresh Python process (its own peak RSS), stepping when the parent says so."
    cmd = [sys.executable, __file__, "--child", variant, "--folder", str(args.folder), "--steps", str(args.steps),
           "--batch-seconds", str(args.batch_seconds), "--clips", str(args.clips),
           "--max-seconds", str(args.max_seconds or 0), "--device", args.device,
           "--trainer-batch-size", str(args.trainer_batch_size), "--seed", str(args.seed), "--lockstep"]
    cmd += ["--bf16"] if bf16 else []
    cmd += ["--flops"] if args.flops else []
    cmd += ["--threads", str(args.threads)] if args.threads else []
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def advance(p):
    "Read a child's output until it waits for its next step (`None`) or reports (its dict); exit on a crash."
    for line in p.stdout:
        if line == "wait\n":
            return None
        if line.startswith("result "):
            return json.loads(line[7:])
    p.wait()
    p.stderr_log.seek(0)
    sys.exit(f"{p.variant} failed (exit {p.returncode}):\n{p.stderr_log.read()[-4000:]}")


def run_lockstep(args, variants, bf16) -> dict:
    """Run the variants' processes side by side (their set-ups overlap) but their steps one at a time, round-robin:
    a shared machine's changing load then falls on every variant alike."""
    procs = {}
    for v in variants:
        log = tempfile.TemporaryFile("w+")
        procs[v] = p = start(args, v, bf16, log)
        p.variant, p.stderr_log = v, log
    state = {v: advance(p) for v, p in procs.items()}
    while any(r is None for r in state.values()):
        for v, p in procs.items():
            if state[v] is None:
                p.stdin.write("go\n")
                p.stdin.flush()
                state[v] = advance(p)
    for p in procs.values():
        p.wait()
        p.stderr_log.close()
    return state


RATIO_KEYS = ("audio_s_per_s", "audio_s_per_cpu_s", "projected_epoch_audio_s_per_s", "peak_rss_timed_mb", "peak_rss_mb",
              "peak_gpu_mb")


def table_row(name, r, gpu) -> str:
    "One variant's row of the report table."
    line = (f"{name:26s} {r['s_per_step']:7.2f} {r['audio_s_per_step']:7.1f} {r['audio_s_per_s']:9.2f} "
            f"{r['audio_s_per_cpu_s']:7.2f} {r['padded_fraction']:7.1%} {r['s_per_padded_audio_s']:10.3f} "
            f"{r['epoch_padded_fraction']:12.1%} {r['projected_epoch_audio_s_per_s']:9.2f} "
            f"{r['max_padded_audio_s']:11.1f} {r['peak_rss_timed_mb']:7.0f} {r['peak_rss_mb']:11.0f}")
    if gpu:
        mfu = f"{r['mfu']:6.1%}" if "mfu" in r else f"{'-':>6s}"
        line += f" {r['peak_gpu_mb']:11.0f} {r.get('tflops_per_s', float('nan')):8.1f} " + mfu
    return line


def report(results, args) -> dict:
    "Print the table and the ratios against the default Trainer; return the ratios."
    gpu = args.device == "cuda"
    known = (v for k, v in PEAK_BF16_TFLOPS.items() if gpu and k in torch.cuda.get_device_name())
    peak = args.peak_tflops or next(known, None)
    print(f"{'variant':26s} {'s/step':>7s} {'audio-s':>7s} {'audio-s/s':>9s} {'/cpu-s':>7s} {'padded':>7s} "
          f"{'s/padded-s':>10s} {'epoch:padded':>12s} {'audio-s/s':>9s} {'max batch s':>11s} {'RSS MB':>7s} "
          f"{'peak RSS MB':>11s}"
          + (f" {'peak GPU MB':>11s} {'TFLOP/s':>8s} {'MFU':>6s}" if gpu else ""))
    for name, r in results.items():
        if "error" in r:
            print(f"{name:26s} {r['error']}")
            continue
        if "flops_per_step" in r:
            r["tflops_per_s"] = r["flops_per_step"] / r["s_per_step"] / 1e12
            if peak and name.endswith("bf16"):
                r["mfu"] = r["tflops_per_s"] / peak
        print(table_row(name, r, gpu))
    print("(audio-s: real audio per timed step; padded: of the timed steps; epoch: the sampler's whole epoch, its "
          "audio-s/s at the measured s/padded-s; max batch s: the largest padded batch run, the epoch's largest "
          "included; RSS: peak over the timed steps; peak RSS: including a step on the epoch's largest batch)")
    ratios = {}
    for suffix in ("", "_bf16") if gpu else ("",):
        base = results[f"trainer{suffix}"]
        for name in (f"ours{suffix}", f"trainer_group_by_length{suffix}"):
            r = results[name]
            if "error" in r or "error" in base:
                continue
            q = ratios[name] = {k: r[k] / base[k] for k in RATIO_KEYS if k in r}
            print(f"{name} / trainer{suffix}: audio-s/s {q['audio_s_per_s']:.2f}x (per CPU-s "
                  f"{q['audio_s_per_cpu_s']:.2f}x; whole epoch {q['projected_epoch_audio_s_per_s']:.2f}x), "
                  f"peak RSS {q['peak_rss_mb']:.2f}x (timed steps {q['peak_rss_timed_mb']:.2f}x)"
                  + (f", peak GPU memory {q['peak_gpu_mb']:.2f}x" if "peak_gpu_mb" in q else ""))
    return ratios


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=None,
                   help="timed optimizer steps per variant, after one warm-up step (default: 6 on CPU, 30 on CUDA)")
    p.add_argument("--batch-seconds", type=float, default=None,
                   help="our padded audio-seconds per batch (default: 16 on CPU, PrefinetuneConfig's default on CUDA)")
    p.add_argument("--max-seconds", type=float, default=DEFAULT.max_seconds,
                   help="random crop length (default: %(default)s)")
    p.add_argument("--clips", type=int, default=None,
                   help="clips in the synthetic corpus (default: 400 or 20 batches' worth, --tiny 80)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny encoder of the base layout (smoke test); also counts FLOPs on CPU")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the GPU's dense bf16 peak for MFU (default: known GPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", choices=VARIANTS, dest="variant", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--trainer-batch-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--lockstep", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def print_padding_by_budget(args, lengths, max_len, eff):
    "How the padding of ours' batches and of random batches of the same mean audio grows with the audio per batch."
    perm, fractions = np.random.default_rng(args.seed).permutation(len(eff)), []
    for bs in (8, 16, 32, 64, 128, 256):
        ours = [b for b, _ in ours_plan(lengths, max_len, argparse.Namespace(**{**vars(args), "batch_seconds": bs}))]
        n = matched_batch_size(eff, ours)[1]
        random_batches = [perm[i:i + n] for i in range(0, len(perm), n)]
        fractions.append(f"{bs:g} s {padded_fraction(eff, ours):.0%} / {padded_fraction(eff, random_batches):.0%}")
    print("padded fraction of a whole epoch, ours / random batches of the same mean audio, by ours' audio-s budget "
          "per batch: " + ", ".join(fractions), flush=True)


def print_goal(ratios, results, args, met):
    "The last lines: ours' ratios against the default Trainer, and whether the goal is met."
    gpu, o = args.device == "cuda", ratios.get("ours")
    if o is None:
        failed = {k: r["error"] for k, r in results.items() if "error" in r and not k.endswith("_bf16")}
        return print(f"goal_met: unknown ({failed})")
    print(f"speedup_vs_trainer: {o['audio_s_per_s']:.2f}")
    if "trainer_group_by_length" in ratios:
        by_length = ratios["trainer_group_by_length"]["audio_s_per_s"]
        print(f"speedup_vs_group_by_length: {o['audio_s_per_s'] / by_length:.2f}")
    print(f"epoch_speedup_vs_trainer: {o['projected_epoch_audio_s_per_s']:.2f}")
    print(f"peak_rss_ratio_vs_trainer: {o['peak_rss_mb']:.2f}")
    if gpu:
        print(f"peak_gpu_ratio_vs_trainer: {o['peak_gpu_mb']:.2f}")
    if "ours_bf16" in ratios:
        print(f"speedup_vs_trainer_bf16: {ratios['ours_bf16']['audio_s_per_s']:.2f}")
        print(f"peak_gpu_ratio_vs_trainer_bf16: {ratios['ours_bf16']['peak_gpu_mb']:.2f}")
    print(f"goal_met: {'yes' if met else 'no'} (>= 1.3x the default Trainer's audio-s/s with no higher peak "
          f"{'GPU memory' if gpu else 'RSS'})")


def main(argv=None):
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.variant:
        return child(args)
    gpu = args.device == "cuda"
    args.steps = args.steps or (30 if gpu else 6)
    args.batch_seconds = args.batch_seconds or (DEFAULT.batch_seconds if gpu else 16.0)
    args.clips = args.clips or (80 if args.tiny else max(400, int(1.5 * (args.steps + 2) * args.batch_seconds / 3.7)))
    args.flops = gpu or args.tiny

    lengths = clip_lengths(args.clips, args.seed)
    max_len = crop_length(lengths, args)
    eff = np.minimum(lengths, max_len)
    plan = [b for b, _ in ours_plan(lengths, max_len, args)]
    ours_audio, args.trainer_batch_size = matched_batch_size(eff, plan)
    args.mean_clip_seconds, args.ours_audio_seconds_per_batch = float(eff.mean() / SR), ours_audio
    if len(plan) < args.steps + 1:
        sys.exit(f"--clips {args.clips}: {len(plan)} batches, too few for --steps {args.steps} + 1 warm-up")
    B = args.trainer_batch_size
    cropping = f"cropping to {args.max_seconds:g} s" if args.max_seconds else "no cropping"
    encoder = "tiny" if args.tiny else "wav2vec2-base-sized"
    print(f"corpus: {len(eff)} clips, median {np.median(lengths) / SR:.1f} s, mean {eff.mean() / SR:.2f} s after "
          f"{cropping}; {encoder} encoder on {args.device}, {args.steps} timed steps")
    print(f"audio per step: ours <= {args.batch_seconds:g} padded audio-s per batch, {ours_audio:.1f} real audio-s on "
          f"average; Trainer batch size {B} ({B * eff.mean() / SR:.1f} audio-s on average)")
    print_padding_by_budget(args, lengths, max_len, eff)

    results = {}
    with tempfile.TemporaryDirectory() as d:
        args.folder = build_checkpoint(Path(d) / "wav2vec2-base-sized", args.tiny, args.seed)
        for bf16 in (False, True) if gpu else (False,):
            for v, r in run_lockstep(args, VARIANTS, bf16).items():
                results[v + ("_bf16" if bf16 else "")] = r
    ratios = report(results, args)
    o, mem = ratios.get("ours"), ("peak_gpu_mb" if gpu else "peak_rss_mb")
    met = None if o is None else (o["audio_s_per_s"] >= 1.3 and o[mem] <= 1.0)
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    if k not in ("variant", "json", "folder")}
        results_json = dict(settings=settings, results=results, ratios=ratios, goal_met=met)
        args.json.write_text(json.dumps(results_json, indent=1) + "\n")
    print_goal(ratios, results, args, met)


if __name__ == "__main__":
    main()
