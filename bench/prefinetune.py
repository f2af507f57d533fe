"""Training throughput of our pre-finetuning loop vs transformers' Trainer + Wav2Vec2ForSequenceClassification.

Same run, same synthetic single-task data (N clips of 1-8 s, speech-like tones, written as 16 kHz WAV files), same
tiny encoder (`tiny-wav2vec2` weights, with Wav2Vec2ForSequenceClassification's projector, 256 wide, in both), same
batch size, same number of epochs (so the same clips), same optimizer (AdamW, linear schedule, grad clip 1.0), frozen
CNN in both (the standard recipe), no evaluation during the timed part, one CPU thread each. Throughput = real
(unpadded) audio-seconds trained / seconds of training, both per CPU-second of this process (`time.process_time`,
robust to other processes on a shared machine: `speedup` uses it) and per wall-second. Runs are interleaved and
repeated; the best of each is kept. Audio decoding is excluded from both: our loop reads the memory-mapped
decoded-audio cache (built before timing), Trainer gets the decoded arrays in memory (its usual `datasets.map`
preprocessing).

Where the difference comes from: length-bucketed batches (less padding: reported below as padded-sample fraction),
and less per-step machinery. The Trainer baseline is its default sampler (random); the same Trainer with
`train_sampling_strategy="group_by_length"` is reported too (not used for `speedup`).

With CUDA present it also reports the model FLOP utilisation (MFU) of one training step of a wav2vec2-base-sized
config in bf16 autocast (our training step, frozen CNN, 8 clips x 10 s), FLOPs counted by torch's FlopCounterMode.

Usage (repository root):  PYTHONPATH=$PWD python bench/prefinetune.py [--clips 96] [--batch-size 8] [--epochs 2]
Last line: `speedup: <x>` (our audio-s/s / Trainer's audio-s/s).
"""
import argparse, os, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np
import pandas as pd
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from transformers import (Trainer, TrainerCallback, TrainingArguments, Wav2Vec2Config,  # noqa: E402
                          Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification, get_linear_schedule_with_warmup)
from transformers.trainer_pt_utils import LengthGroupedSampler  # noqa: E402
from speech_prefinetune.audio import AudioCache  # noqa: E402
from speech_prefinetune.model import MultiTaskClassifier, load_encoder, tiny_config  # noqa: E402
from speech_prefinetune.prefinetune import (PrefinetuneConfig, bucket_batches, make_accelerator,  # noqa: E402
                                            prefinetune_tables, training_step)

SR = 16000
LABELS = ("neutral", "happy", "angry", "sad")


def synth_clips(dir, n, seed=0):
    "N speech-like clips (1-8 s) whose pitch depends on the label; an utterance table for them."
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        secs = rng.uniform(1, 8)
        t = np.arange(int(secs * SR)) / SR
        f0 = (110 + 30 * LABELS.index(label)) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        x = sum(np.sin(k * phase) / k for k in range(1, 5)) * 0.2 + 0.01 * rng.standard_normal(len(t))
        path = Path(dir) / f"clip{i:04d}.wav"
        sf.write(path, x.astype(np.float32), SR)
        for split in ("train", "valid") if i < n // 8 else ("train",):
            rows.append(dict(corpus="bench", utt_id=f"{split}{i}", path=str(path.resolve()), speaker="s", language="en",
                             label=label, split=split))
    return pd.DataFrame(rows)


def ours(table, out, args):
    cfg = PrefinetuneConfig(max_epochs=args.epochs, patience=10**6, lr=1e-4, warmup_epochs=0, max_seconds=None,
                            batch_size=args.batch_size, device="cpu", projector_dim=256, seed=0,
                            cache_dir=str(out / "cache"))
    run = prefinetune_tables({"msp_improv": table}, "tiny-wav2vec2", out / "run", cfg, progress=False)
    m = pd.read_csv(run / "metrics.csv")
    return m.audio_seconds.sum() / m.train_seconds.sum(), m.audio_seconds.sum() / m.train_cpu_seconds.sum()


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items): self.items = items
    def __len__(self): return len(self.items)
    def __getitem__(self, i): return self.items[i]


def trainer(table, out, args, strategy="random"):
    config = tiny_config("tiny-wav2vec2")
    config.update(dict(num_labels=len(LABELS), use_weighted_layer_sum=False, classifier_proj_size=256))
    model = Wav2Vec2ForSequenceClassification(config)
    model.wav2vec2.load_state_dict(load_encoder("tiny-wav2vec2", seed=0).state_dict())
    model.freeze_feature_encoder()
    fe = Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True, return_attention_mask=True)
    train = table[table.split == "train"]
    cache = AudioCache(out / "cache")   # decoded once, copied into memory (not timed)
    items = [dict(input_values=np.array(cache[p]), label=LABELS.index(l)) for p, l in zip(train.path, train.label)]
    def collate(batch):
        enc = fe([b["input_values"] for b in batch], sampling_rate=SR, padding=True, return_tensors="pt",
                 return_attention_mask=True)
        return dict(input_values=enc.input_values, attention_mask=enc.attention_mask,
                    labels=torch.tensor([b["label"] for b in batch]))
    targs = TrainingArguments(output_dir=str(out / f"trainer_{strategy}"), per_device_train_batch_size=args.batch_size,
                              num_train_epochs=args.epochs, learning_rate=1e-4, weight_decay=0.01, max_grad_norm=1.0,
                              lr_scheduler_type="linear", warmup_steps=0, logging_strategy="no", save_strategy="no",
                              eval_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, seed=0,
                              disable_tqdm=True, train_sampling_strategy=strategy, remove_unused_columns=False)
    class LengthTrainer(Trainer):   # a list dataset has no "length" column: give LengthGroupedSampler the lengths
        def _get_train_sampler(self, train_dataset=None):
            if strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            return LengthGroupedSampler(self.args.train_batch_size, lengths=[len(i["input_values"]) for i in items])
    clock = {}
    class Clock(TrainerCallback):   # time the training loop itself, as our per-epoch timing does (not Trainer's set-up)
        def on_train_begin(self, *a, **k):
            clock.update(t0=time.perf_counter(), c0=time.process_time())

        def on_train_end(self, *a, **k):
            clock.update(secs=time.perf_counter() - clock["t0"], cpu=time.process_time() - clock["c0"])
    t = LengthTrainer(model=model, args=targs, train_dataset=ListDataset(items), data_collator=collate,
                      callbacks=[Clock()])
    t.train()
    secs, cpu = clock["secs"], clock["cpu"]
    audio = sum(len(i["input_values"]) for i in items) / SR * args.epochs
    return audio / secs, audio / cpu


def padding_fraction(lengths, batches):
    real = sum(lengths[b].sum() for b in batches)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    return 1 - real / padded


def mfu(args, smoke=False):
    "MFU of our training step on a wav2vec2-base-sized config, bf16 autocast, on the visible GPU (smoke: tiny, CPU)."
    name = "CPU (smoke test of the code path)" if smoke else torch.cuda.get_device_name()
    peaks = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}
    peak = args.peak_tflops * 1e12 if args.peak_tflops else next((v for k, v in peaks.items() if k in name), None)
    acc = make_accelerator(PrefinetuneConfig(device="cpu" if smoke else "cuda", bf16=True))
    encoder = load_encoder(tiny_config("tiny-wav2vec2") if smoke else Wav2Vec2Config(), seed=0)
    model = MultiTaskClassifier(encoder, {"t": LABELS}).to(acc.device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=not smoke)
    sched = get_linear_schedule_with_warmup(opt, 0, 10**6)
    waves = [np.random.default_rng(i).normal(size=SR * 10).astype(np.float32) for i in range(args.mfu_batch)]
    x, mask = model.prepare(waves)
    model, opt = acc.prepare(model, opt)
    batch = dict(task="t", input_values=x.to(acc.device), attention_mask=mask.to(acc.device),
                 labels=torch.arange(args.mfu_batch, device=acc.device) % len(LABELS))
    with FlopCounterMode(display=False) as fc:
        training_step(acc, model, opt, sched, [batch], {"t": len(LABELS)})
    flops = fc.get_total_flops()
    sync = (lambda: None) if smoke else torch.cuda.synchronize
    for _ in range(1 if smoke else 3): training_step(acc, model, opt, sched, [batch], {"t": len(LABELS)})
    sync()
    t0 = time.perf_counter()
    n = 2 if smoke else 20
    for _ in range(n): training_step(acc, model, opt, sched, [batch], {"t": len(LABELS)})
    sync()
    dt = (time.perf_counter() - t0) / n
    print(f"GPU {name}: wav2vec2-base-sized step, {args.mfu_batch} x 10 s, bf16: {flops / 1e12:.2f} TFLOP/step, "
          f"{dt * 1e3:.1f} ms/step, "
          f"{flops / dt / 1e12:.0f} TFLOP/s, {args.mfu_batch * 10 / dt:.0f} audio-s/s")
    if peak:
        print(f"MFU: {flops / dt / peak:.1%} of {peak / 1e12:.0f} TFLOP/s bf16 peak")
    else:
        print("MFU: unknown peak for this GPU; pass --peak-tflops")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mfu-batch", type=int, default=8)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--skip-group-by-length", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mfu-smoke", action="store_true",
                   help="only run the MFU code path on CPU with the tiny config, then exit")
    args = p.parse_args()
    if args.mfu_smoke:
        return mfu(args, smoke=True)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        (out / "wav").mkdir()
        table = synth_clips(out / "wav", args.clips)
        AudioCache(out / "cache").add(table.path, progress=False)
        train = table[table.split == "train"]
        lengths = np.array([AudioCache(out / "cache").num_samples(p) for p in train.path])
        print(f"data: {len(train)} training clips, {lengths.sum() / SR:.0f} audio-s per epoch, "
              f"batch size {args.batch_size}, {args.epochs} epochs, tiny-wav2vec2 + projector 256, "
              f"{args.threads} thread(s)")
        rng = np.random.default_rng(0)
        rand = np.array_split(rng.permutation(len(lengths)), int(np.ceil(len(lengths) / args.batch_size)))
        print(f"padding: random batches {padding_fraction(lengths, rand):.0%} of samples, "
              f"bucketed {padding_fraction(lengths, bucket_batches(lengths, rng, args.batch_size)):.0%}")
        runs = {"Trainer (random sampler)": [], "Trainer (group_by_length)": [], "ours (prefinetune_tables)": []}
        for r in range(args.repeats):   # interleaved repeats; the best of each is reported (the box is shared, noisy)
            runs["Trainer (random sampler)"].append(trainer(table, out, args))
            if not args.skip_group_by_length:
                runs["Trainer (group_by_length)"].append(trainer(table, out, args, "group_by_length"))
            runs["ours (prefinetune_tables)"].append(ours(table, out / f"ours{r}", args))
        for name, rs in runs.items():
            if rs:
                print(f"{name + ':':28s} {max(r[1] for r in rs):7.1f} audio-s per CPU-s   "
                      f"{max(r[0] for r in rs):7.1f} audio-s per wall-s "
                      f"(best of {len(rs)}; wall median {np.median([r[0] for r in rs]):.1f})")
        ours_runs, trainer_runs = runs["ours (prefinetune_tables)"], runs["Trainer (random sampler)"]
        o_sps = max(r[1] for r in ours_runs)
        t_sps = max(r[1] for r in trainer_runs)
        wall_speedup = max(r[0] for r in ours_runs) / max(r[0] for r in trainer_runs)
        print(f"wall-clock speedup (best of each): {wall_speedup:.2f}")
    if torch.cuda.is_available():
        mfu(args)
    else:
        print("MFU: no CUDA device; skipped")
    print(f"speedup: {o_sps / t_sps:.2f}")


if __name__ == "__main__":
    main()
