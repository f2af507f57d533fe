"Synthetic corpora: determinism, native formats, real layouts, learnable emotion, and the loaders reading them back."
import argparse, re, shutil, warnings
from collections import Counter
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from speech_prefinetune.core import LABELS, SPLITS, UserError, read_roots
from speech_prefinetune.corpora import load_corpus
from speech_prefinetune import synth as S
from speech_prefinetune.cli import add_synth_command

NATIVE = {"esd": (16000, 1), "iemocap": (16000, 1), "msp_improv": (44100, 1), "msp_podcast": (16000, 1),
          "mandarin_as": (22050, 1)}
EMITTED = {"esd": set(LABELS["esd"]), "iemocap": {"neutral", "happy", "excited", "angry", "sad", "frustrated"},
           "msp_improv": set(LABELS["msp_improv"]), "msp_podcast": {"neutral", "happy", "angry", "sad", "surprise"},
           "mandarin_as": set(LABELS["mandarin_as"])}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return out, S.synth_corpora(out, "tiny", seed=0)


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _wavs(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*.wav")) if not p.name.startswith("._")]


def test_roots_file(tiny):
    out, roots = tiny
    assert set(roots) == set(NATIVE)
    assert read_roots(out / "corpora.toml") == roots
    assert roots["esd"].name == "Emotion Speech Dataset" and roots["mandarin_as"].name == "man_aff_spch"
    assert all(not Path(v).is_absolute() for v in re.findall(r'"(.*)"', (out / "corpora.toml").read_text()))


def test_same_seed_same_bytes_other_seed_other_audio(tiny, tmp_path):
    out, _ = tiny
    S.synth_corpora(tmp_path / "again", "tiny", seed=0)
    a, b = _files(out), _files(tmp_path / "again")
    assert a.keys() == b.keys() and len(a) > 800
    assert [k for k in a if a[k].read_bytes() != b[k].read_bytes()] == []
    S.synth_corpora(tmp_path / "other", "tiny", seed=1, corpora=("esd", "mandarin_as"))
    c = _files(tmp_path / "other")
    common = [k for k in c if k.endswith(".wav") and k in a and "/._" not in k]
    assert len(common) == sum(k.endswith(".wav") and "/._" not in k for k in c) > 500
    assert sum(a[k].read_bytes() == c[k].read_bytes() for k in common) == 0


def test_native_rates_and_channels(tiny):
    _, roots = tiny
    for corpus, root in roots.items():
        infos = Counter((i.samplerate, i.channels, i.subtype) for i in map(sf.info, _wavs(root)))
        if corpus == "msp_podcast":
            assert infos.pop((44100, 2, "PCM_16")) == 1          # the one 44.1 kHz stereo file
        assert set(infos) == {(*NATIVE[corpus], "PCM_16")}, (corpus, infos)


def test_clip_lengths(tiny):
    _, roots = tiny
    d = np.array([sf.info(p).duration for p in _wavs(roots["esd"])])
    assert 0.25 < d.min() and d.max() < 3.5 and 0.7 < np.median(d) < 1.4


def test_esd_layout(tiny):
    _, roots = tiny
    root = roots["esd"]
    assert (root / "ReadMe.txt").is_file() and (root / "._0011").is_file()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["0001", "0002", "0011", "0012"]
    seen = Counter()
    for p in _wavs(root):
        spk, emo, split, name = p.relative_to(root).parts
        m = re.fullmatch(r"(\d{4})_(\d{6})\.wav", name)
        assert m and m.group(1) == spk
        fid = int(m.group(2)); block, off = divmod(fid - 1, 350)
        assert S.ESD_EMOTIONS[block] == emo
        assert split == ("evaluation" if off + 1 <= 20 else "test" if off + 1 <= 50 else "train"), p
        seen[spk, emo, split] += 1
    assert set(seen.values()) == {10, 4, 6} and len(seen) == 4 * 5 * 3
    assert {k[2]: v for k, v in seen.items()} == {"train": 10, "evaluation": 4, "test": 6}
    assert list(root.rglob("._*.wav"))                                            # macOS junk planted


def test_esd_transcripts_encodings(tiny):
    _, roots = tiny
    root = roots["esd"]
    zh = (root / "0001" / "0001.txt").read_bytes()
    assert "中立" in zh.decode("gb2312") and "惊喜" in zh.decode("gb2312")
    with pytest.raises(UnicodeDecodeError): zh.decode("utf-8")
    en = (root / "0011" / "0011.txt").read_bytes()
    assert en[:2] in (b"\xff\xfe", b"\xfe\xff") and "0011_000701\t" in en.decode("utf-16")
    lines = (root / "0012" / "0012.txt").read_bytes().decode("latin-1").splitlines()
    assert len(lines) == 100 and all(l.startswith("0012_") for l in lines)
    assert any("\t" not in l for l in lines) and any(l.count("\t") == 2 for l in lines)  # some space-separated


def test_esd_flat_layout(tmp_path):
    root = S.synth_corpora(tmp_path, "tiny", corpora=("esd",), esd_layout="flat")["esd"]
    rel = {p.relative_to(root).as_posix() for p in _wavs(root)}
    assert {"0001/Neutral/0001_000001.wav", "0012/Surprise/0012_001750.wav", "0011/Sad/0011_001101.wav"} <= rel  # offsets 1, 350, 51
    assert all(len(r.split("/")) == 3 for r in rel) and len(rel) == 400
    table = load_corpus("esd", root)
    assert Counter(table.split) == {"train": 200, "valid": 80, "test": 120}


def test_iemocap_layout(tiny):
    _, roots = tiny
    root = roots["iemocap"]
    line = re.compile(r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(Ses0\d[FM]_\w+_[FM]\d{3})\t(\w{3})\t\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]$")
    codes, speakers = Counter(), Counter()
    for s in range(1, 6):
        evald = root / f"Session{s}" / "dialog" / "EmoEvaluation"
        for sub in ("Attribute", "Categorical", "Self-evaluation"): assert any((evald / sub).iterdir())
        for lf in evald.glob("*.txt"):
            text = lf.read_text()
            assert text.startswith("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n") and "\nC-E2:\t" in text
            hits = [line.match(l) for l in text.splitlines() if l.startswith("[")]
            assert hits and all(hits)
            assert {h.group(3)[-4] for h in hits} == {"F", "M"}                      # both speakers in every dialog
            for h in hits:
                assert float(h.group(2)) > float(h.group(1))
                wav = root / f"Session{s}" / "sentences" / "wav" / lf.stem / f"{h.group(3)}.wav"
                assert abs(sf.info(wav).duration - (float(h.group(2)) - float(h.group(1)))) < 1e-3
                codes[h.group(4)] += 1; speakers[h.group(3)[:5] + h.group(3)[-4]] += 1
    assert set(codes) == {"neu", "hap", "exc", "ang", "sad", "fru", "xxx"}
    assert len(speakers) == 10
    dialogs = {p.name.split("_", 1)[1] for p in root.glob("Session*/sentences/wav/*")}
    assert {"impro01", "script01_1b", "impro05a"} <= dialogs


def test_msp_improv_layout(tiny):
    _, roots = tiny
    root = roots["msp_improv"]
    names = {p.stem: p for p in _wavs(root)}
    pat = re.compile(r"MSP-IMPROV-S(\d\d)([AHSN])-([FM]0[1-6])-([PRST])-(FM|MF)0[1-6]")
    for stem, p in names.items():
        m = pat.fullmatch(stem)
        assert m and p.parent.name == m.group(4) and p.parent.parent.name == f"S{m.group(1)}{m.group(2)}"
        assert p.parent.parent.parent.name == f"session{int(m.group(3)[1:])}"
    assert len(list(root.rglob("*.avi"))) == 3
    summary = [l for l in (root / "Evaluation.txt").read_text().splitlines() if l.startswith("UTD-IMPROV-")]
    assert len(summary) == len(names)
    ev = {}
    for l in summary:
        m = re.match(r"UTD-IMPROV-(\S+)\.avi\s*;\s*([AHSNOX])\s*;", l)
        ev["MSP-IMPROV-" + m.group(1)] = m.group(2)
    assert set(ev) == set(names)
    assert sum("N:" not in l for l in summary) > 0 and sum(" ; " in l for l in summary) > 0
    assert {"O", "X"} <= set(ev.values())
    assert any(ev[k] != pat.fullmatch(k).group(2) for k in ev)


def test_msp_podcast_layout(tiny, tmp_path):
    _, roots = tiny
    root = roots["msp_podcast"]
    rows = (root / "Labels" / "labels_consensus.csv").read_text().splitlines()
    assert rows[0] == "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
    recs = [r.split(",") for r in rows[1:]]
    assert {r[0] for r in recs} == {p.name for p in (root / "Audios").iterdir()}
    assert all(re.fullmatch(r"MSP-PODCAST_\d{4}_\d{4}\.wav", r[0]) for r in recs)
    assert {r[7] for r in recs} == {"Train", "Development", "Test1", "Test2"}
    assert "Unknown" in {r[5] for r in recs} and "X" in {r[1] for r in recs}
    known = {}
    for r in recs:
        if r[5] != "Unknown": known.setdefault(r[5], set()).add(r[7])
    assert all(len(v) == 1 for v in known.values())                               # speakers do not cross splits
    other = S.synth_corpora(tmp_path, "tiny", corpora=("msp_podcast",), podcast_audio_dir="Audio")["msp_podcast"]
    assert (other / "Audio").is_dir() and not (other / "Audios").exists()


def test_mandarin_as_layout(tiny):
    _, roots = tiny
    root = roots["mandarin_as"]
    rel = [p.relative_to(root).parts for p in _wavs(root)]
    assert all(r[0] == "data" and re.fullmatch(r"\d{3}", r[1]) and r[2] in S.MASC_FOLDERS and r[3] in ("phrase", "utterance")
               for r in rel)
    assert {r[1] for r in rel} == {f"{i:03d}" for i in range(1, 7)}
    assert Counter(r[3] for r in rel)["utterance"] == 6 * 5


def test_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="'huge'"): S.synth_corpora(tmp_path, "huge")
    with pytest.raises(UserError, match="'timit'"): S.synth_corpora(tmp_path, corpora=("timit",))
    with pytest.raises(UserError, match="'Audioz'"): S.synth_corpora(tmp_path, corpora=("msp_podcast",), podcast_audio_dir="Audioz")


def test_sizes_support_the_fewshot_grid():
    for size, k_max in (("tiny", 16), ("demo", 64)):
        esd = S.SIZES[size]["esd"]
        assert esd["train"] >= k_max // 2 + 2                                       # k/2 positives, and a margin
        assert {int(s) <= 10 for s in esd["speakers"]} == {True, False}           # both languages
        assert {S.esd_gender(s) for s in esd["speakers"]} == {"F", "M"}


def test_load_corpus_reads_every_synthetic_corpus(tiny):
    _, roots = tiny
    for corpus, root in roots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")                                        # no skipped entries, no notes
            table = load_corpus(corpus, root)
        assert set(table.label) == EMITTED[corpus], corpus
        for split in SPLITS:                                                      # every class in every split
            assert set(table.label[table.split == split]) == EMITTED[corpus], (corpus, split)
        assert table.utt_id.is_unique and table.path.map(lambda p: Path(p).is_file()).all()
    iemo = load_corpus("iemocap", roots["iemocap"])
    assert iemo.speaker.nunique() == 10 and set(iemo.speaker) >= {"Ses01F", "Ses01M", "Ses05M"}
    assert (iemo.speaker == iemo.utt_id.str[:5] + iemo.utt_id.str[-4]).all()       # speaker from the LAST id field
    assert (iemo.utt_id.str[5] != iemo.utt_id.str[-4]).any()                        # and that differs from the marker letter
    esd = load_corpus("esd", roots["esd"])
    assert Counter(esd.split) == {"train": 200, "valid": 80, "test": 120}
    assert set(esd.groupby("speaker").language.first().items()) == {("0001", "zh"), ("0002", "zh"), ("0011", "en"), ("0012", "en")}
    assert esd.transcript.notna().all()                                           # gb2312, utf-16, latin-1 all decoded
    assert esd[esd.speaker == "0001"].transcript.str.contains("[\u4e00-\u9fff]").all()
    assert load_corpus("msp_improv", roots["msp_improv"], label_source="consensus").label.isin(LABELS["msp_improv"]).all()
    assert len(load_corpus("mandarin_as", roots["mandarin_as"], include_utterance=True)) > len(load_corpus("mandarin_as", roots["mandarin_as"]))


def test_emotion_learnable_across_speakers_not_from_one_feature(tmp_path):
    esd = S.synth_corpora(tmp_path, "check", corpora=("esd",), sizes=S.CHECK_SIZES)["esd"]
    feats = S.esd_feature_table(esd)
    assert len(feats) == 480 and feats.speaker.nunique() == 8
    all5 = S.cross_speaker_accuracy(feats)
    single = {f: S.cross_speaker_accuracy(feats, [f]) for f in S.FEATURES}
    assert all5 > 0.38, all5                                                       # chance: 0.2
    assert max(single.values()) < all5 - 0.06, (all5, single)
    assert single["pitch"] < 0.3                                                   # speakers' pitch swamps emotion's


def test_cli(tmp_path, capsys):
    p = argparse.ArgumentParser(prog="spft"); sub = p.add_subparsers()
    add_synth_command(sub)
    args = p.parse_args(["synth", str(tmp_path), "--corpora", "esd", "--seed", "2", "--esd-layout", "flat", "--quiet"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"esd\t{(tmp_path / 'Emotion Speech Dataset').resolve()}" in out and "corpora.toml" in out
    assert (tmp_path / "Emotion Speech Dataset" / "0001" / "Neutral" / "0001_000001.wav").is_file()
    with pytest.raises(SystemExit): p.parse_args(["synth", str(tmp_path), "--size", "huge"])
    assert "tiny" in sub.choices["synth"].format_help()


def test_rerun_replaces_its_own_folders_and_refuses_foreign_ones(tmp_path):
    small = {"s": dict(seconds=(0.6, 0.8), esd=dict(speakers=("0001",), train=2, evaluation=1, test=1))}
    S.synth_corpora(tmp_path / "o", "s", corpora=("esd",), sizes=small, esd_layout="flat")
    root = S.synth_corpora(tmp_path / "o", "s", corpora=("esd",), sizes=small)["esd"]
    assert {p.relative_to(root).parts[2] for p in _wavs(root)} == {"train", "evaluation", "test"}  # flat files gone
    real = tmp_path / "data" / "Emotion Speech Dataset" / "0001" / "Angry"
    real.mkdir(parents=True)
    with pytest.raises(UserError, match="refusing to overwrite"):
        S.synth_corpora(tmp_path / "data", "s", corpora=("esd",), sizes=small)
    assert real.is_dir()


# ------------------------------------------------------------------------------------- side by side, quirks
def test_every_corpus_loads_from_the_shared_folder(tiny):
    "out/ holds the five corpora side by side, like the paper's data/ folder: each loader finds its own."
    out, roots = tiny
    for corpus, root in roots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            a, b = load_corpus(corpus, out), load_corpus(corpus, root)
        assert a.equals(b) and a.path.str.startswith(str(root)).all(), corpus


QSIZE = {"q": dict(seconds=(0.6, 0.9), esd=dict(speakers=("0001", "0002", "0011"), train=2, evaluation=1, test=1),
                   msp_improv=dict(sentences=1, types=("P",)), msp_podcast=dict(speakers=4, clips=2, unknown=4),
                   iemocap=dict(dialogs=1, turns=2), mandarin_as=dict(speakers=3, phrase=1, utterance=1))}
QUIRK_CORPUS = {"esd-long-root": "esd", "esd-utf16-nobom": "esd", "improv-audio-dir": "msp_improv",
                "improv-evalution": "msp_improv", "podcast-json": "msp_podcast", "podcast-label-dir": "msp_podcast",
                "podcast-concensus": "msp_podcast"}
QUIRK_OPTIONS = {"msp_improv": {"label_source": "consensus"}}


@pytest.fixture(scope="module")
def plain_q(tmp_path_factory):
    return S.synth_corpora(tmp_path_factory.mktemp("plain"), "q", corpora=("esd", "msp_improv", "msp_podcast"), sizes=QSIZE)


def _load(corpus, root, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                                         # small trees: notes about empty splits
        return load_corpus(corpus, root, **QUIRK_OPTIONS.get(corpus, {}), **k)


def test_quirks_cover_the_real_copies():
    assert set(S.QUIRKS) == set(QUIRK_CORPUS)
    with pytest.raises(UserError, match="unknown quirk.*podcast-yaml"): S.synth_corpora("/nonexistent", quirks=("podcast-yaml",))


@pytest.mark.parametrize("quirk", sorted(QUIRK_CORPUS))
def test_each_quirk_writes_its_layout_and_reads_back_the_same(tmp_path, plain_q, quirk):
    corpus = QUIRK_CORPUS[quirk]
    root = S.synth_corpora(tmp_path, "q", corpora=(corpus,), sizes=QSIZE, quirks=(quirk,))[corpus]
    rel = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    expect = {"esd-long-root": ("Emotional Speech Dataset (ESD)/0001/0001.txt", "Emotion Speech Dataset/0001/0001.txt"),
              "esd-utf16-nobom": ("Emotion Speech Dataset/0002/0002.txt", None),
              "improv-audio-dir": ("MSP-IMPROV/Audio/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav",
                                   "MSP-IMPROV/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav"),
              "improv-evalution": ("MSP-IMPROV/Evalution.txt", "MSP-IMPROV/Evaluation.txt"),
              "podcast-json": ("MSP-PODCAST/Labels/labels_consensus.json", "MSP-PODCAST/Labels/labels_consensus.csv"),
              "podcast-label-dir": ("MSP-PODCAST/label/labels_consensus.csv", "MSP-PODCAST/Labels/labels_consensus.csv"),
              "podcast-concensus": ("MSP-PODCAST/Labels/labels_concensus.csv", "MSP-PODCAST/Labels/labels_consensus.csv")}[quirk]
    assert expect[0] in rel and expect[1] not in rel
    if quirk == "esd-utf16-nobom":
        for spk, enc in (("0001", "utf-16-le"), ("0002", "utf-16-be")):
            data = (root / spk / f"{spk}.txt").read_bytes()
            assert data[:2] not in (b"\xff\xfe", b"\xfe\xff") and data.decode(enc).count("\n") == 20
            assert set("中立生气快乐伤心惊喜") <= set(data.decode(enc))
        with pytest.raises(UnicodeDecodeError): (root / "0001" / "0001.txt").read_bytes().decode("gb2312")
    a, b = _load(corpus, plain_q[corpus]), _load(corpus, tmp_path)            # from the folder above: sniffed
    pd.testing.assert_frame_equal(a.drop(columns="path"), b.drop(columns="path"))
    assert [Path(p).read_bytes() for p in a.path] == [Path(p).read_bytes() for p in b.path]   # quirks never touch audio
    if corpus == "esd": assert b[b.speaker <= "0010"].transcript.str.contains("[\u4e00-\u9fff]").all()


def test_all_quirks_side_by_side_with_the_other_corpora(tmp_path, plain_q):
    roots = S.synth_corpora(tmp_path / "data", "q", sizes=QSIZE, quirks=tuple(S.QUIRKS))
    assert roots["esd"].name == "Emotional Speech Dataset (ESD)" and read_roots(tmp_path / "data" / "corpora.toml") == roots
    for corpus, root in roots.items():
        t = _load(corpus, tmp_path)                                              # two levels above every root
        assert t.path.str.startswith(str(root)).all() and len(t) == len(_load(corpus, root)), corpus
        if corpus in plain_q: pd.testing.assert_frame_equal(t.drop(columns="path"), _load(corpus, plain_q[corpus]).drop(columns="path"))


def test_bad_input_in_quirky_trees(tmp_path):
    roots = S.synth_corpora(tmp_path, "q", corpora=("esd", "msp_improv", "msp_podcast"), sizes=QSIZE, quirks=tuple(S.QUIRKS))
    # MSP-PODCAST JSON: a bad entry is named by file and the line of its key; a broken file by the line parsing stopped
    lf = roots["msp_podcast"] / "label" / "labels_concensus.json"
    text = lf.read_text()
    first = next(m for m in re.finditer(r'^    "(MSP-PODCAST_[\d_]+\.wav)": \{', text, re.M))
    line = text[:first.start()].count("\n") + 1
    bad = text.replace('"EmoClass": ', '"EmoClass": "Z", "was": ', 1)
    lf.write_text(bad)
    with pytest.raises(UserError, match=rf"labels_concensus\.json:{line}: unknown EmoClass 'Z' for {first.group(1)}"):
        load_corpus("msp_podcast", tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 entry \(1 unknown label code"):
        t = load_corpus("msp_podcast", tmp_path, errors="skip")
    assert first.group(1)[:-4] not in set(t.utt_id)
    lf.write_text(text[: len(text) // 2])
    with pytest.raises(UserError, match=rf"labels_concensus\.json:\d+: not valid JSON"): load_corpus("msp_podcast", tmp_path)
    # MSP-IMPROV: Evalution.txt names itself; a stray file under Audio/ is named
    ev = roots["msp_improv"] / "Evalution.txt"
    n = len(ev.read_text().splitlines())
    ev.write_text(ev.read_text() + "UTD-IMPROV-S01A-F01-P-FM01; A; A:1\n")
    with pytest.raises(UserError, match=rf"Evalution\.txt:{n + 1}: cannot parse"):
        load_corpus("msp_improv", tmp_path, label_source="consensus")
    stray = roots["msp_improv"] / "Audio" / "session1" / "S01A" / "P" / "notes.wav"
    stray.write_bytes(b"RIFF")
    with pytest.raises(UserError, match=rf"{re.escape(str(stray))}: expected MSP-IMPROV"): load_corpus("msp_improv", tmp_path)
    # ESD: a garbled BOM-less UTF-16 transcript line is a warning naming the file, the others still decode
    tf = roots["esd"] / "0001" / "0001.txt"
    tf.write_bytes(tf.read_bytes() + "garbage\n".encode("utf-16-le"))
    with pytest.warns(UserWarning, match=r"unparsed transcript lines.*Emotional Speech Dataset \(ESD\)/0001/0001\.txt: 1 line"):
        t = load_corpus("esd", tmp_path)
    assert t[t.speaker == "0001"].transcript.str.contains("[\u4e00-\u9fff]").all()


def test_rerun_with_another_root_name_and_foreign_copies(tmp_path):
    small = {"s": dict(seconds=(0.6, 0.8), esd=dict(speakers=("0001",), train=2, evaluation=1, test=1))}
    S.synth_corpora(tmp_path / "o", "s", corpora=("esd",), sizes=small)
    long = S.synth_corpora(tmp_path / "o", "s", corpora=("esd",), sizes=small, quirks=("esd-long-root",))["esd"]
    assert long.is_dir() and not (tmp_path / "o" / "Emotion Speech Dataset").exists()     # our old copy replaced
    assert "- Emotional Speech Dataset (ESD)" in (tmp_path / "o" / ".spft-synth").read_text()
    real = tmp_path / "d" / "Emotion Speech Dataset"
    shutil.copytree(long, real)                                                            # someone's own copy
    S.synth_corpora(tmp_path / "d", "s", corpora=("esd",), sizes=small, quirks=("esd-long-root",))
    S.synth_corpora(tmp_path / "d", "s", corpora=("esd",), sizes=small, quirks=("esd-long-root",))   # rerun: still untouched
    assert (real / "0001" / "0001.txt").is_file()
    with pytest.raises(UserError, match="refusing to overwrite"): S.synth_corpora(tmp_path / "d", "s", corpora=("esd",), sizes=small)
    with pytest.raises(UserError, match=r"esd: 2 folders .*: Emotion Speech Dataset, Emotional Speech Dataset \(ESD\)"):
        load_corpus("esd", tmp_path / "d")


def test_cli_quirks(tmp_path, capsys):
    p = argparse.ArgumentParser(prog="spft"); sub = p.add_subparsers()
    add_synth_command(sub)
    args = p.parse_args(["synth", str(tmp_path), "--corpora", "esd", "--seed", "2", "--quirk", "esd-long-root",
                         "--quirk", "esd-utf16-nobom", "--quiet"])
    assert args.func(args) == 0
    assert f"esd\t{(tmp_path / 'Emotional Speech Dataset (ESD)').resolve()}" in capsys.readouterr().out
    assert (tmp_path / "Emotional Speech Dataset (ESD)" / "0001" / "0001.txt").read_bytes()[1:2] == b"\x00"   # LE, no BOM
    with pytest.raises(SystemExit): p.parse_args(["synth", str(tmp_path), "--quirk", "podcast-yaml"])
    assert "podcast-json" in sub.choices["synth"].format_help()


# ------------------------------------------------------------------ CREMA-D, RAVDESS, EmoDB: written only on request
OPT_IN = {"crema_d": (16000, 1), "ravdess": (48000, 1), "emodb": (16000, 1)}


@pytest.fixture(scope="module")
def opt_in(tmp_path_factory):
    out = tmp_path_factory.mktemp("opt_in")
    return out, S.synth_corpora(out, "tiny", seed=0, corpora=tuple(OPT_IN))


def test_opt_in_corpora_layouts_rates_and_loaders(opt_in, tiny):
    out, roots = opt_in
    assert set(roots) == set(OPT_IN) and set(tiny[1]) == set(NATIVE)                 # the default: the five only
    assert {p.name for p in out.iterdir() if p.is_dir()} == {"CREMA-D", "RAVDESS", "EmoDB"}
    for corpus, root in roots.items():
        assert {(i.samplerate, i.channels, i.subtype) for i in map(sf.info, _wavs(root))} == {(*OPT_IN[corpus], "PCM_16")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = load_corpus(corpus, out)                                              # found beside the others
        assert len(t) == len(_wavs(root)) == S._WRITERS[corpus][1](S.SIZES["tiny"][corpus])
        assert set(t.label) == set(LABELS[corpus]) and set(t.split) == set(SPLITS)
    rel = [p.relative_to(roots["ravdess"]).parts for p in _wavs(roots["ravdess"])]
    assert all(re.fullmatch(r"Actor_(\d\d)", a) and re.fullmatch(r"03-01-0[1-8]-0[12]-0[12]-01-" + a[-2:] + r"\.wav", f)
               for a, f in rel) and len({a for a, _ in rel}) == 4
    assert all(re.fullmatch(r"10\d\d_(DFA|IEO|ITS)_[A-Z]{3}_(XX|LO|MD|HI)\.wav", p.name) for p in _wavs(roots["crema_d"]))
    assert (roots["crema_d"] / "VideoDemographics.csv").read_text().startswith("ActorID,Age,Sex,Race,Ethnicity\n1001,")
    assert all(re.fullmatch(r"(03|08|09|10)(a01|a02|b01)[WLEAFTN]a\.wav", p.name) for p in _wavs(roots["emodb"]))


def test_opt_in_same_seed_same_bytes(tmp_path):
    small = {"s": dict(seconds=(0.6, 0.8), ravdess=dict(actors=1, repetitions=1),
                       emodb=dict(speakers=("16",), texts=("b10",), versions=2))}
    a = S.synth_corpora(tmp_path / "a", "s", corpora=("ravdess", "emodb"), sizes=small)
    b = S.synth_corpora(tmp_path / "b", "s", corpora=("ravdess", "emodb"), sizes=small)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa.keys() == fb.keys() and all(fa[k].read_bytes() == fb[k].read_bytes() for k in fa)
    assert (a["emodb"] / "wav" / "16b10Tb.wav").is_file() and len(fa) == 30 + 14 + 2   # + roots file, marker


def test_opt_in_cli_and_errors(tmp_path, capsys):
    p = argparse.ArgumentParser(prog="spft"); sub = p.add_subparsers()
    add_synth_command(sub)
    args = p.parse_args(["synth", str(tmp_path), "--corpora", "emodb", "--quiet"])
    assert args.func(args) == 0
    assert f"emodb\t{(tmp_path / 'EmoDB').resolve()}" in capsys.readouterr().out
    assert set(read_roots(tmp_path / "corpora.toml")) == {"emodb"}
    with pytest.raises(UserError, match="no synthetic twin of emobox"): S.synth_corpora(tmp_path, corpora=("emobox",))
    with pytest.raises(UserError, match="size 's' has no entry for crema_d"):
        S.synth_corpora(tmp_path, "s", corpora=("crema_d",), sizes={"s": dict(seconds=(0.5, 1.0))})
