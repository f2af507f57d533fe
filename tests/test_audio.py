"Tests of speech_prefinetune.audio: load_audio against soundfile, resampling fidelity, errors, and the AudioCache."
import json, multiprocessing as mp, os, warnings
from pathlib import Path
import numpy as np
import pytest
import soundfile as sf
import speech_prefinetune.audio as audio
from speech_prefinetune.audio import (AudioCache, AudioError, AudioInfo, audio_info, build_audio_cache, cache_root,
                                      from_int16,
                                      load_audio, open_audio_cache, to_int16)
from speech_prefinetune.core import UserError

CTX = mp.get_context("fork")

def tone(sr, seconds=2.0, hz=440.0, amp=0.5, extra=0):
    n = int(sr * seconds) + extra
    return (amp * np.sin(2 * np.pi * hz * np.arange(n) / sr)).astype(np.float32)

def stored(p, sr=16000):
    "What an int16 cache holds for the file `p`: its decoded samples rounded by `to_int16`."
    return from_int16(*to_int16(load_audio(p, sr)))

def write_corpus(d, n=12, sr=22050, seed=0):
    "n short noisy tones of different lengths at `sr`; returns their paths."
    rng, paths = np.random.default_rng(seed), []
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        seconds = 0.3 + 0.05 * i
        noise = 0.01 * rng.standard_normal(int(sr * seconds)).astype(np.float32)
        x = tone(sr, seconds, hz=200 + 30 * i, amp=0.3) + noise
        p = d / f"utt{i:03d}.wav"
        sf.write(p, x, sr, subtype="PCM_16")
        paths.append(p)
    return paths

# ---------------------------------------------------------------- load_audio

def test_load_equals_soundfile_16k_mono(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, np.random.default_rng(1).uniform(-0.9, 0.9, 16000 * 2), 16000, subtype="PCM_16")
    x = load_audio(p)
    ref, sr = sf.read(p, dtype="float32")
    assert sr == 16000 and x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, ref)

def test_stereo_is_channel_mean(tmp_path):
    rng = np.random.default_rng(2)
    lr = rng.uniform(-0.5, 0.5, (16000, 2)).astype(np.float32)
    sf.write(tmp_path / "s.wav", lr, 16000, subtype="FLOAT")
    x = load_audio(tmp_path / "s.wav")
    assert x.shape == (16000,)
    np.testing.assert_allclose(x, lr.mean(axis=1), atol=1e-7)
    six = rng.uniform(-0.5, 0.5, (8000, 6)).astype(np.float32)  # more channels: still the mean
    sf.write(tmp_path / "six.wav", six, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "six.wav"), six.mean(axis=1), atol=1e-6)

@pytest.mark.parametrize("sr_in", [22050, 44100, 8000])
def test_resampling_keeps_pitch_length_and_waveform(tmp_path, sr_in):
    x_in = tone(sr_in, 2.0, extra=123)
    p = tmp_path / f"t{sr_in}.wav"
    sf.write(p, x_in, sr_in, subtype="FLOAT")
    x = load_audio(p, 16000)
    assert abs(len(x) - len(x_in) * 16000 / sr_in) <= 1
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.argmax(spec) * 16000 / len(x)
    assert abs(peak_hz - 440) < 2, peak_hz
    # not just the pitch: away from the edges the waveform is the ideal 16 kHz tone (no delay, no gain change)
    ideal = tone(16000, 2.0, extra=len(x) - 32000)
    mid = slice(500, len(x) - 500)
    assert np.max(np.abs(x[mid] - ideal[mid])) < 2e-3

def test_target_rate_argument(tmp_path):
    p = tmp_path / "t.wav"
    sf.write(p, tone(22050, 1.0), 22050)
    assert len(load_audio(p, 8000)) == 8000 and len(load_audio(p, 22050)) == 22050
    with pytest.raises(ValueError, match="positive"): load_audio(p, -1)

def test_flac_and_ogg(tmp_path):
    x = tone(16000, 1.0, amp=0.3)
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.flac"), sf.read(tmp_path / "a.flac", dtype="float32")[0])
    np.testing.assert_allclose(load_audio(tmp_path / "a.flac"), x, atol=1e-4)
    sf.write(tmp_path / "a.ogg", tone(22050, 1.0, amp=0.3), 22050, format="OGG", subtype="VORBIS")
    y = load_audio(tmp_path / "a.ogg")
    assert abs(len(y) - 16000) <= 1
    assert abs(np.argmax(np.abs(np.fft.rfft(y))) * 16000 / len(y) - 440) < 2
    assert audio_info(tmp_path / "a.ogg").samplerate == 22050

def test_file_objects_are_read_too(tmp_path):
    p = tmp_path / "a.flac"
    sf.write(p, tone(22050, 0.5), 22050)
    with open(p, "rb") as f: np.testing.assert_array_equal(load_audio(f), load_audio(p))
    import io
    with pytest.raises(AudioError, match="cannot decode"): load_audio(io.BytesIO(b"nope" * 100))

# ---------------------------------------------------------------- AudioCache

@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_cache_equals_load_audio_across_shards(tmp_path, dtype):
    paths = write_corpus(tmp_path / "c", n=10)
    want = stored if dtype == "int16" else load_audio
    cache = open_audio_cache(tmp_path / "cache", shard_bytes=10000 * np.dtype(dtype).itemsize, dtype=dtype)
    cache.add(paths, progress=False)
    # a shard is sealed once it holds >= 10,000 samples: count the shards that rule gives for these clip lengths
    expected, held = 0, 0
    for p in paths:
        held += cache.num_samples(p)
        if held >= 10000:
            expected, held = expected + 1, 0
    expected += held > 0
    shard_files = list((cache.dir / "shards").glob("*." + dtype[0] + dtype[-2:]))
    assert len(shard_files) == expected == 6
    itemsize = np.dtype(dtype).itemsize   # every byte of every shard belongs to exactly one clip
    assert sum(f.stat().st_size for f in shard_files) == itemsize * sum(cache.num_samples(p) for p in paths)
    assert len(cache) == 10 and sorted(cache) == sorted(str(p.resolve()) for p in paths)
    for p in paths:
        x = cache[p]
        np.testing.assert_array_equal(x, want(p))
        assert (x.base is not None) == (dtype == "float32")  # float32: a view of the shard; int16: converted
        assert x.dtype == np.float32 and not x.flags.writeable and cache.num_samples(p) == len(x)
        with pytest.raises(ValueError): x[0] = 1.0
    # a fresh reader (another process would do the same) sees the same data; relative and symlinked paths resolve
    other = open_audio_cache(tmp_path / "cache", dtype=dtype)
    os.symlink(paths[3], tmp_path / "link.wav")
    np.testing.assert_array_equal(other[tmp_path / "link.wav"], want(paths[3]))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try: np.testing.assert_array_equal(other["c/utt004.wav"], want(paths[4]))
    finally: os.chdir(cwd)
    with pytest.raises(KeyError, match="nothere.wav"): other[tmp_path / "nothere.wav"]
    with pytest.raises(KeyError, match="nothere.wav"): other.num_samples(tmp_path / "nothere.wav")
    assert (tmp_path / "nothere.wav") not in other

def test_incremental_and_stale(tmp_path, monkeypatch):
    paths = write_corpus(tmp_path / "c", n=6)
    cache = build_audio_cache(paths[:4], tmp_path / "cache", progress=False)
    calls = []
    real = audio.load_audio
    monkeypatch.setattr(audio, "load_audio", lambda p, sr: calls.append(Path(p).name) or real(p, sr))
    cache.add(paths + paths[:2], progress=False)  # only the two new files, duplicates once
    assert calls == ["utt004.wav", "utt005.wav"]
    # rewrite one file: same size, different samples and mtime -> stale until re-added
    p = paths[1]
    st = os.stat(p)
    x, sr = sf.read(p, dtype="float32")
    sf.write(p, -x, sr, subtype="PCM_16")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert os.stat(p).st_size == st.st_size
    assert p not in cache
    with pytest.raises(KeyError, match="changed"): cache[p]
    calls.clear()
    cache.add(paths, progress=False)
    assert calls == ["utt001.wav"]
    np.testing.assert_array_equal(cache[p], stored(p))
    assert open_audio_cache(tmp_path / "cache")[p][100] == stored(p)[100]
    calls.clear()
    cache.add(paths, progress=False)
    assert calls == []

def test_other_rate_is_a_separate_store(tmp_path):
    paths = write_corpus(tmp_path / "c", n=3)
    c16 = build_audio_cache(paths, tmp_path / "cache", 16000, progress=False)
    c8 = open_audio_cache(tmp_path / "cache", sr=8000)
    assert len(c8) == 0 and paths[0] not in c8 and c8.dir != c16.dir
    c8.add(paths, progress=False)
    for p in paths:
        np.testing.assert_array_equal(c8[p], stored(p, 8000))
        np.testing.assert_array_equal(c16[p], stored(p, 16000))
        assert c8.num_samples(p) * 2 in (c16.num_samples(p) - 1, c16.num_samples(p), c16.num_samples(p) + 1)

def test_verify_false_reads_without_sources(tmp_path):
    paths = write_corpus(tmp_path / "c", n=2)
    build_audio_cache(paths, tmp_path / "cache", progress=False)
    want = stored(paths[0])
    paths[0].unlink()
    assert paths[0] not in open_audio_cache(tmp_path / "cache")
    np.testing.assert_array_equal(open_audio_cache(tmp_path / "cache", verify=False)[paths[0]], want)

def test_errors_skip_warns_once_with_count(tmp_path):
    paths = write_corpus(tmp_path / "c", n=3)
    (tmp_path / "bad.wav").write_bytes(b"RIFF junk")
    (tmp_path / "empty.wav").write_bytes(b"")
    bad = [tmp_path / "bad.wav", tmp_path / "missing.wav", tmp_path / "empty.wav"]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cache = build_audio_cache(paths + bad, tmp_path / "cache", progress=False, errors="skip")
    assert len(w) == 1 and "skipped 3 of 6" in str(w[0].message) and "bad.wav" in str(w[0].message)
    assert len(cache) == 3 and all(p in cache for p in paths)
    with pytest.raises(AudioError, match="missing.wav"): cache.add([tmp_path / "missing.wav"], progress=False)
    with pytest.raises(ValueError, match="errors"): cache.add(paths, errors="ignore")

def test_raise_keeps_work_done_before_the_bad_file(tmp_path):
    paths = write_corpus(tmp_path / "c", n=4)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    cache = open_audio_cache(tmp_path / "cache")
    with pytest.raises(AudioError, match="bad.wav"):
        cache.add(paths[:2] + [tmp_path / "bad.wav"] + paths[2:], progress=False)
    assert len(cache) == 2 and paths[1] in cache and paths[2] not in cache

def test_bad_index_is_a_user_error(tmp_path):
    cache = build_audio_cache(write_corpus(tmp_path / "c", n=1), tmp_path / "cache", progress=False)
    cache.index_path.write_text("{ torn")
    with pytest.raises(UserError, match="index.json"): open_audio_cache(tmp_path / "cache")

def test_empty_add_writes_nothing(tmp_path):
    cache = open_audio_cache(tmp_path / "cache").add([], progress=False)
    assert len(cache) == 0 and list((cache.dir / "shards").iterdir()) == []

def test_add_accepts_a_single_path(tmp_path):
    p = write_corpus(tmp_path / "c", n=1)[0]
    assert len(open_audio_cache(tmp_path / "cache").add(str(p), progress=False).add(p, progress=False)) == 1

def _writer(cache_dir, paths, barrier):
    barrier.wait()
    c = open_audio_cache(cache_dir, shard_bytes=1)  # commit after every clip: many interleaved index rewrites
    for i in range(0, len(paths), 2): c.add(paths[i:i + 2], progress=False)

def _reader(cache_dir, lengths, barrier, q):
    barrier.wait()
    c, seen, bad = open_audio_cache(cache_dir), set(), 0
    for _ in range(400):
        for k in list(c):
            x = c[k]
            if len(x) != lengths[k] or not np.isfinite(x).all(): bad += 1
            seen.add(k)
    q.put((len(seen), bad))

def test_progress_goes_through_the_given_tqdm_class(tmp_path, monkeypatch):
    import io
    from tqdm.std import tqdm as std_tqdm
    bars = []
    class Recording(std_tqdm):
        def __init__(self, *a, **k):
            self.silenced = k.get("disable", False)
            bars.append(self)
            super().__init__(*a, file=io.StringIO(), **k)
    monkeypatch.setattr(audio, "tqdm", None)  # the module's own tqdm must not be used
    paths = write_corpus(tmp_path / "c", n=3)
    cache = build_audio_cache(paths, tmp_path / "cache", tqdm_class=Recording)
    assert len(cache) == 3 and len(bars) == 1
    assert (bars[0].n, bars[0].total, bars[0].desc, bars[0].silenced) == (3, 3, "caching audio at 16000 Hz", False)
    cache.add(paths, progress=False, tqdm_class=Recording)  # nothing to decode, and silenced
    assert len(bars) == 2 and bars[1].silenced

def test_concurrent_writers_and_reader(tmp_path):
    paths = write_corpus(tmp_path / "c", n=16)
    want = {str(p.resolve()): stored(p) for p in paths}
    lengths = {k: len(v) for k, v in want.items()}
    barrier, q = CTX.Barrier(3), CTX.Queue()
    procs = [CTX.Process(target=_writer, args=(tmp_path / "cache", paths[:10], barrier)),
             CTX.Process(target=_writer, args=(tmp_path / "cache", paths[6:][::-1], barrier)),
             CTX.Process(target=_reader, args=(tmp_path / "cache", lengths, barrier, q))]
    for p in procs: p.start()
    for p in procs: p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    seen, bad = q.get(timeout=5)
    assert bad == 0
    cache = open_audio_cache(tmp_path / "cache")
    assert sorted(cache) == sorted(want)  # no lost update
    for k, v in want.items(): np.testing.assert_array_equal(cache[k], v)
    index = json.loads(cache.index_path.read_text())
    shards = {p.name for p in (cache.dir / "shards").iterdir()}
    assert len(index["keys"]) == len(set(index["keys"])) == 16
    assert all(len(index[c]) == 16 for c in ("shard", "offset", "samples", "size", "mtime_ns", "exp"))
    assert {index["shard_files"][i] for i in index["shard"]} <= shards
    assert not [s for s in shards if not s.endswith(".i16")]  # no temporary shard left behind
    assert not list(cache.dir.glob(".*.tmp"))

def _dies_after(cache_dir, paths, n):
    calls = []
    real = audio.load_audio
    def dying(p, sr):
        if len(calls) == n: os._exit(3)  # like kill -9: no cleanup, no finally
        calls.append(p)
        return real(p, sr)
    audio.load_audio = dying
    open_audio_cache(cache_dir, shard_bytes=25000).add(paths, progress=False)  # 3 int16 clips a shard

def test_killed_writer_leaves_a_consistent_resumable_cache(tmp_path, monkeypatch):
    paths = write_corpus(tmp_path / "c", n=8)
    p = CTX.Process(target=_dies_after, args=(tmp_path / "cache", paths, 4))
    p.start()
    p.join(60)
    assert p.exitcode == 3
    cache = open_audio_cache(tmp_path / "cache")
    done = [q for q in paths if q in cache]
    assert done == paths[:3]  # the first shard was committed; the 4th clip died with its unfinished shard
    assert len(list((cache.dir / "shards").glob(".*.tmp"))) == 1  # the torn shard, never referenced
    for q in done: np.testing.assert_array_equal(cache[q], stored(q))
    calls = []
    real = audio.load_audio
    monkeypatch.setattr(audio, "load_audio", lambda q, sr: calls.append(q) or real(q, sr))
    cache.add(paths, progress=False)
    assert len(calls) == 8 - len(done) and len(cache) == 8
    for q in paths: np.testing.assert_array_equal(cache[q], stored(q))

def test_clean_removes_only_unreferenced_old_files(tmp_path):
    paths = write_corpus(tmp_path / "c", n=8)
    p = CTX.Process(target=_dies_after, args=(tmp_path / "cache", paths, 4))
    p.start()
    p.join(60)
    cache = open_audio_cache(tmp_path / "cache").add(paths[:4], progress=False)  # 4th clip into a new shard
    shards = cache.dir / "shards"
    assert len(list(shards.iterdir())) == 3  # committed, torn temporary, new
    assert cache.clean() == 0  # everything is younger than an hour
    torn = next(shards.glob(".*.tmp"))
    size = torn.stat().st_size
    assert cache.clean(min_age=0) == size and not torn.exists()
    for q in paths[:4]: np.testing.assert_array_equal(cache[q], stored(q))
    x = cache[paths[0]]  # mapped before its shard is superseded and deleted: stays readable
    index = json.loads(cache.index_path.read_text())
    first = shards / index["shard_files"][index["shard"][index["keys"].index(str(paths[0].resolve()))]]
    first_size = first.stat().st_size   # the shard of the first three clips
    assert first_size == 2 * sum(cache.num_samples(q) for q in paths[:3])
    for q in paths[:3]:
        st = os.stat(q)
        os.utime(q, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cache.add(paths[:4], progress=False)
    assert cache.clean(min_age=0) == first_size and not first.exists() and len(list(shards.iterdir())) == 2
    np.testing.assert_array_equal(x, stored(paths[0]))
    for q in paths[:4]: np.testing.assert_array_equal(open_audio_cache(tmp_path / "cache")[q], stored(q))

def test_reader_with_an_old_index_survives_clean(tmp_path):
    paths = write_corpus(tmp_path / "c", n=2)
    build_audio_cache(paths, tmp_path / "cache", progress=False)
    reader = open_audio_cache(tmp_path / "cache")
    assert len(reader) == 2  # index read, no shard mapped yet
    writer = open_audio_cache(tmp_path / "cache")
    os.remove(writer.index_path)
    writer._refresh()  # another writer re-decodes both (same stamps) into a new shard
    old_shards = {p.name: p.stat().st_size for p in (writer.dir / "shards").iterdir()}
    writer.add(paths, progress=False)
    assert writer.clean(min_age=0) == sum(old_shards.values()) == 2 * sum(reader.num_samples(p) for p in paths)
    assert not set(os.listdir(writer.dir / "shards")) & set(old_shards)
    for p in paths: np.testing.assert_array_equal(reader[p], stored(p))  # its entries point at the deleted shard
    for name in os.listdir(reader.dir / "shards"): os.remove(reader.dir / "shards" / name)
    with pytest.raises(UserError, match="shard file missing"): open_audio_cache(tmp_path / "cache")[paths[0]]

def test_add_streams_memory_does_not_grow_with_the_corpus(tmp_path):
    import tracemalloc
    paths = write_corpus(tmp_path / "c", n=40, sr=44100)  # 40 clips, 0.3-2.25 s each
    clip = max(sf.info(p).frames for p in paths) * 4 * 2  # float32 at the file's rate, and its resampled copy
    total = sum(sf.info(p).frames for p in paths) * 4
    tracemalloc.start()
    try:
        open_audio_cache(tmp_path / "cache").add(paths, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally: tracemalloc.stop()
    assert peak < 2 * clip and peak < total / 8, (peak, clip, total)  # holding the decoded corpus: > total / 3

# ---------------------------------------------------------------- the shared cache root

def test_tests_never_use_the_user_cache():
    import platformdirs
    root = cache_root()
    assert root == Path(os.environ["SPFT_CACHE_DIR"]).resolve()
    assert not root.is_relative_to(Path(platformdirs.user_cache_dir("speech_prefinetune")).resolve())
    assert root.is_relative_to(Path(__import__("tempfile").gettempdir()).resolve())

def _shared_writer(paths, barrier):
    barrier.wait()
    for p in paths: build_audio_cache([p], progress=False)  # no folder named: the shared root from the environment

def test_separate_runs_share_the_default_cache(tmp_path, monkeypatch):
    import subprocess, sys
    monkeypatch.setenv("SPFT_CACHE_DIR", str(tmp_path / "shared"))
    paths = write_corpus(tmp_path / "c", n=8)
    barrier = CTX.Barrier(2)
    procs = [CTX.Process(target=_shared_writer, args=(ps, barrier)) for ps in (paths[:5], paths[3:][::-1])]
    for p in procs: p.start()
    for p in procs: p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = open_audio_cache()
    assert cache.dir == (tmp_path / "shared" / "audio" / "sr16000").resolve() and len(cache) == 8
    for p in paths: np.testing.assert_array_equal(cache[p], stored(p))
    # a fresh interpreter (another `spft` command) finds the same clips through the environment alone
    code = (f"from speech_prefinetune.audio import open_audio_cache as o; c = o(); "
            f"print(len(c), c[{str(paths[0])!r}].sum())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(8), str(cache[paths[0]].sum())]

# ---------------------------------------------------------------- int16 storage

@pytest.mark.parametrize("fmt,level", [("WAV", 1.0), ("WAV", 1 / 300), ("FLAC", 1.0)])
def test_int16_is_lossless_for_16_bit_sources_at_their_rate(tmp_path, fmt, level):
    rng = np.random.default_rng(7)
    pcm = (rng.integers(-32768, 32768, 24000) * level).astype(np.int16)
    pcm[:2] = [-32768, 32767] if level == 1 else pcm[:2]  # both ends of the range
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, pcm, 16000, format=fmt, subtype="PCM_16")
    cache = open_audio_cache(tmp_path / "cache").add(p, progress=False)
    ref = sf.read(p, dtype="float32")[0]  # soundfile's own int16 -> float32 (k / 32768)
    np.testing.assert_array_equal(cache[p], ref)
    np.testing.assert_array_equal(open_audio_cache(tmp_path / "cache")[p], ref)  # a fresh reader too
    shard = next((cache.dir / "shards").glob("*.i16"))
    assert shard.stat().st_size == 2 * len(ref)  # two bytes a sample
    q = np.fromfile(shard, "<i2")
    e = json.loads(cache.index_path.read_text())["exp"][0]
    assert e <= 0 and np.array_equal(q.astype(np.int64), pcm.astype(np.int64) * 2 ** -e)

def test_levels_beyond_full_scale_are_scaled_not_wrapped(tmp_path):
    t = np.arange(44100) / 44100
    loud = (2.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)  # a float WAV may hold any level
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")
    # a full-scale square at 44.1 kHz: resampling overshoots
    square = np.sign(np.sin(2 * np.pi * 150 * t)) * (32767 / 32768)
    sf.write(tmp_path / "square.wav", square, 44100, subtype="PCM_16")
    paths = [tmp_path / "loud.wav", tmp_path / "square.wav"]
    cache = open_audio_cache(tmp_path / "cache").add(paths, progress=False)
    exps = dict(zip(json.loads(cache.index_path.read_text())["keys"], json.loads(cache.index_path.read_text())["exp"]))
    for p in paths:
        ref, x = load_audio(p), cache[p]
        e = exps[str(p.resolve())]
        assert np.abs(ref).max() > 1 and e >= 1  # beyond [-1, 1)
        assert np.abs(x - ref).max() <= 2.0 ** (e - 15) / 2  # half a step: no wrap, no clipping
        np.testing.assert_array_equal(np.sign(x[np.abs(ref) > 0.5]), np.sign(ref[np.abs(ref) > 0.5]))

def test_non_finite_samples_are_a_bad_file_for_int16(tmp_path):
    x = np.full(1600, 0.1, np.float32)
    x[800] = np.inf
    sf.write(tmp_path / "inf.wav", x, 16000, subtype="FLOAT")
    inf = tmp_path / "inf.wav"
    with pytest.raises(AudioError, match="inf.wav.*non-finite"):
        open_audio_cache(tmp_path / "c").add(inf, progress=False)
    with pytest.warns(UserWarning, match="skipped 1 of 1"):
        open_audio_cache(tmp_path / "c").add(inf, progress=False, errors="skip")
    assert np.isinf(open_audio_cache(tmp_path / "c", dtype="float32").add(inf, progress=False)[inf][800])
    with pytest.raises(ValueError, match="int16"): open_audio_cache(tmp_path / "c", dtype="float64")

def test_one_store_holds_both_dtypes(tmp_path, monkeypatch):
    paths = write_corpus(tmp_path / "c", n=4)
    calls = []
    real = audio.load_audio
    monkeypatch.setattr(audio, "load_audio", lambda p, sr: calls.append(Path(p).name) or real(p, sr))
    c16 = open_audio_cache(tmp_path / "cache").add(paths[:2], progress=False)
    c32 = open_audio_cache(tmp_path / "cache", dtype="float32")
    assert paths[0] not in c32 and len(c32) == 2  # cached, but less precisely than it asks
    with pytest.raises(KeyError, match="utt000.wav: cached as int16, but this cache reads float32"): c32[paths[0]]
    with pytest.raises(KeyError, match="cached as int16"): c32.num_samples(paths[0])
    trusting = open_audio_cache(tmp_path / "cache", dtype="float32", verify=False)
    np.testing.assert_array_equal(trusting[paths[0]], stored(paths[0]))
    calls.clear()
    c32.add(paths[1:], progress=False)
    assert calls == ["utt001.wav", "utt002.wav", "utt003.wav"]  # the int16 clip is upgraded
    for p in paths[1:]: np.testing.assert_array_equal(c32[p], real(p, 16000))
    calls.clear()
    c16 = open_audio_cache(tmp_path / "cache").add(paths, progress=False)
    assert calls == []  # an int16 cache takes float32 clips as they are, never re-decodes them down
    np.testing.assert_array_equal(c16[paths[0]], stored(paths[0]))
    for p in paths[1:]: np.testing.assert_array_equal(c16[p], real(p, 16000))
    index = json.loads(c16.index_path.read_text())
    assert index["version"] == 2 and sorted(set(index["shard_dtypes"])) == ["<f4", "<i2"]
    suffix = {"<i2": ".i16", "<f4": ".f32"}
    assert [Path(f).suffix for f in index["shard_files"]] == [suffix[d] for d in index["shard_dtypes"]]

def test_version_1_index_is_read_and_upgraded(tmp_path):
    paths = write_corpus(tmp_path / "c", n=3)
    d = tmp_path / "cache" / "audio" / "sr16000"
    (d / "shards").mkdir(parents=True)
    xs = [load_audio(p) for p in paths[:2]]  # a cache as version 1 wrote it: float32 shards, five columns
    np.concatenate(xs).astype("<f4").tofile(d / "shards" / "old.f32")
    stamps = [os.stat(p) for p in paths[:2]]
    (d / "index.json").write_text(json.dumps({"format": "spft-audio-cache", "version": 1, "sr": 16000, "dtype": "<f4",
        "shard_files": ["old.f32"], "keys": [str(p.resolve()) for p in paths[:2]], "shard": [0, 0],
        "offset": [0, len(xs[0])], "samples": [len(x) for x in xs], "size": [s.st_size for s in stamps],
        "mtime_ns": [s.st_mtime_ns for s in stamps]}))
    cache = open_audio_cache(tmp_path / "cache")
    for p, x in zip(paths, xs): np.testing.assert_array_equal(cache[p], x)
    cache.add(paths, progress=False)
    index = json.loads((d / "index.json").read_text())
    assert index["version"] == 2 and index["exp"][:2] == [0, 0]
    assert index["shard_dtypes"][index["shard_files"].index("old.f32")] == "<f4"
    for p, x in zip(paths, xs): np.testing.assert_array_equal(open_audio_cache(tmp_path / "cache")[p], x)
    np.testing.assert_array_equal(cache[paths[2]], stored(paths[2]))
    index["version"] = 3
    (d / "index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="index.json: not a version-2"): open_audio_cache(tmp_path / "cache")

@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_files_and_folders_honour_the_umask(tmp_path, umask, file_mode, dir_mode):
    paths = write_corpus(tmp_path / "c", n=3)
    old = os.umask(umask)
    try:
        cache = open_audio_cache(tmp_path / "root", shard_bytes=1).add(paths, progress=False)
        cache.add(paths[:1], progress=False)
    finally: os.umask(old)
    root = tmp_path / "root"
    made = [root, root / "audio", cache.dir, cache.dir / "shards"]
    files = [cache.index_path, cache.lock_path, *(cache.dir / "shards").iterdir()]
    assert len(files) == 5
    for p in made: assert p.stat().st_mode & 0o777 == dir_mode, (p, oct(p.stat().st_mode))
    for p in files: assert p.stat().st_mode & 0o777 == file_mode, (p, oct(p.stat().st_mode))

def _dtype_writer(cache_dir, paths, dtype, barrier):
    barrier.wait()
    c = open_audio_cache(cache_dir, shard_bytes=1, dtype=dtype)  # a commit per clip
    for p in paths: c.add([p], progress=False)

def test_concurrent_writers_of_both_dtypes(tmp_path):
    paths = write_corpus(tmp_path / "c", n=12)
    barrier = CTX.Barrier(2)
    procs = [CTX.Process(target=_dtype_writer, args=(tmp_path / "cache", paths[:8], "int16", barrier)),
             CTX.Process(target=_dtype_writer, args=(tmp_path / "cache", paths[4:][::-1], "float32", barrier))]
    for p in procs: p.start()
    for p in procs: p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    c16, c32 = open_audio_cache(tmp_path / "cache"), open_audio_cache(tmp_path / "cache", dtype="float32")
    assert len(c16) == 12 and all(p in c16 for p in paths)  # no lost update
    assert all(p in c32 for p in paths[4:]) and not any(p in c32 for p in paths[:4])   # float32 clips never downgraded
    for p in paths[:4]: np.testing.assert_array_equal(c16[p], stored(p))
    for p in paths[4:]: np.testing.assert_array_equal(c32[p], load_audio(p))
    c32.add(paths, progress=False)
    for p in paths: np.testing.assert_array_equal(open_audio_cache(tmp_path / "cache")[p], load_audio(p))
