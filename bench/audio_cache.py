"""Benchmark of the decoded-audio cache on synthetic MASC-like files (22,050 Hz mono 16-bit WAV, 2-3 s each).

1. Speed: `load_audio(path, 16000)` over N files vs reading each from the cache (`cache[path]`, materialised with
   `.sum()`), from an int16 store (the default) and a float32 one, same files, same run; best of `--repeats`
   passes each (the first, colder pass is printed too).
2. Memory: peak RSS (ru_maxrss) of building a cache in a fresh subprocess for a small corpus and a 10x larger one.
3. Size: bytes on disk per audio-second of each store (shards, and shards + index).

Usage (from the repository root):  PYTHONPATH=$PWD python bench/audio_cache.py [--files 200] [--small 100]
The last line is `speedup: <x>` (load_audio time / int16 cache read time).
"""
import argparse, gc, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from speech_prefinetune.audio import build_audio_cache, load_audio, open_audio_cache  # noqa: E402

SR = 22050

def synth_utterance(rng, seconds):
    "A speech-like clip: a voiced harmonic source with a wandering pitch, syllable envelope and breath noise."
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 250) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None) ** 0.5
    x = 0.2 * env * x + 0.01 * rng.standard_normal(n)
    return np.clip(x, -1, 1).astype(np.float32)

def make_corpus(folder, n, seed=0):
    rng, paths = np.random.default_rng(seed), []
    for i in range(n):
        p = folder / f"{i // 100:03d}" / f"utt{i:05d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, synth_utterance(rng, rng.uniform(2, 3)), SR, subtype="PCM_16")
        paths.append(p)
    return paths

def build_child(list_file, cache_dir, dtype):
    "Run in a fresh process: build the cache (or, with cache_dir `-`, a list in RAM), print peak RSS as JSON."
    paths = Path(list_file).read_text().split("\n")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if cache_dir == "-":   # the naive alternative, for comparison
        cache = [load_audio(p, 16000) for p in paths]
    else:
        cache = build_audio_cache(paths, cache_dir, 16000, progress=False, dtype=dtype)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(files=len(cache), base_kib=base, peak_kib=peak, seconds=secs)))

def build_in_subprocess(paths, work, name, in_ram=False, dtype="int16"):
    lst = work / f"{name}.txt"
    lst.write_text("\n".join(map(str, paths)))
    out = subprocess.run([sys.executable, __file__, "--_build", str(lst), "-" if in_ram else str(work / name), dtype],
                         check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])

def timed(fn, paths):
    gc.disable()
    try:
        t = time.perf_counter()
        for p in paths: fn(p)
        return time.perf_counter() - t
    finally: gc.enable()

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=200, help="files in the speed comparison")
    ap.add_argument("--small", type=int, default=100, help="files in the small corpus of the memory test (large = 10x)")
    ap.add_argument("--repeats", type=int, default=10, help="timed passes of each method; the best is reported")
    ap.add_argument("--_build", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._build: return build_child(*a._build)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t = time.perf_counter()
        paths = make_corpus(work / "masc", max(10 * a.small, a.files))
        hours = sum(sf.info(p).duration for p in paths) / 3600
        print(f"corpus: {len(paths)} files, {hours:.2f} h at {SR} Hz, written in {time.perf_counter() - t:.1f} s")

        rss = {}
        for name, n in [("small", a.small), ("large", 10 * a.small)]:
            r = rss[name] = build_in_subprocess(paths[:n], work, name)
            print(f"build {name:5s}: {r['files']:5d} files in {r['seconds']:6.2f} s; "
                  f"peak RSS {r['peak_kib'] / 1024:6.1f} MiB ({r['base_kib'] / 1024:.1f} MiB after imports, "
                  f"+{(r['peak_kib'] - r['base_kib']) / 1024:.1f} MiB building)")
        grow = (rss["large"]["peak_kib"] - rss["small"]["peak_kib"]) / 1024
        c16 = open_audio_cache(work / "large")
        decoded = sum(c16.num_samples(p) for p in paths[:10 * a.small]) * 4 / 2**20
        print(f"peak RSS large - small: {grow:+.1f} MiB for {9 * a.small} more files "
              f"(the large corpus decoded is {decoded:.0f} MiB of float32)")
        r = build_in_subprocess(paths[:10 * a.small], work, "naive", in_ram=True)
        print(f"for comparison, decoding the large corpus into a list in RAM: peak RSS {r['peak_kib'] / 1024:.1f} MiB "
              f"(+{(r['peak_kib'] - r['base_kib']) / 1024:.1f} MiB)")
        r = build_in_subprocess(paths[:10 * a.small], work, "large32", dtype="float32")
        print(f"build large as float32: {r['files']:5d} files in {r['seconds']:6.2f} s; "
              f"peak RSS {r['peak_kib'] / 1024:6.1f} MiB")

        c32 = open_audio_cache(work / "large32", dtype="float32")
        seconds = sum(c16.num_samples(p) for p in paths[:10 * a.small]) / 16000
        for name, c in [("int16", c16), ("float32", c32)]:
            shards = sum(f.stat().st_size for f in (c.dir / "shards").iterdir())
            with_index = shards + c.index_path.stat().st_size
            print(f"bytes per audio-second, {name:7s}: {shards / seconds:8.0f} in shards, {with_index / seconds:8.0f} "
                  f"with the index ({seconds / 3600:.2f} h at 16 kHz in {shards / 2**20:.1f} MiB)")

        speed = paths[:a.files]
        t = time.perf_counter()
        cache = open_audio_cache(work / "large")
        t_open = time.perf_counter() - t
        assert all(p in cache and p in c32 for p in speed)
        for p in speed[:5]:
            x = load_audio(p, 16000)
            assert np.array_equal(c32[p], x) and np.abs(cache[p] - x).max() <= 2.0 ** -16
        load_t, read_t, read32_t, copy_t = [], [], [], []
        for _ in range(a.repeats):  # interleaved, so that load from other processes hits all alike
            load_t.append(timed(lambda p: load_audio(p, 16000).sum(), speed))
            read_t.append(timed(lambda p: np.asarray(cache[p]).sum(), speed))
            read32_t.append(timed(lambda p: np.asarray(c32[p]).sum(), speed))
            copy_t.append(timed(lambda p: c32[p].copy(), speed))
        copy_t = min(copy_t)
        n = len(speed)
        print(f"load_audio         : {n} files, best {min(load_t):.3f} s ({1e3 * min(load_t) / n:.3f} ms/file), "
              f"first pass {load_t[0]:.3f} s")
        print(f"cache read int16   : {n} files, best {min(read_t):.4f} s ({1e6 * min(read_t) / n:.1f} us/file), "
              f"first pass {read_t[0]:.4f} s "
              f"(+ {1e3 * t_open:.1f} ms to open the index of {len(cache)} clips)")
        print(f"cache read float32 : {n} files, best {min(read32_t):.4f} s ({1e6 * min(read32_t) / n:.1f} us/file), "
              f"first pass {read32_t[0]:.4f} s")
        print(f"float32 cache read materialised with .copy() instead: {1e6 * copy_t / n:.1f} us/file "
              f"({min(load_t) / copy_t:.1f}x)")
        print(f"int16 read time / float32 read time: {min(read_t) / min(read32_t):.2f}")
        print(f"speedup float32: {min(load_t) / min(read32_t):.1f}")
        print(f"first-pass speedup: {load_t[0] / read_t[0]:.1f}")
        print(f"speedup: {min(load_t) / min(read_t):.1f}")

if __name__ == "__main__":
    main()
