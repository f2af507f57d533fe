"Tiny corpus trees in each corpus's real on-disk layout, for tests (0.1 s noise WAV files written with soundfile)."
from __future__ import annotations
import json, random, zlib
from pathlib import Path
import numpy as np
import soundfile as sf

ESD_EMOTIONS = ("Neutral", "Angry", "Happy", "Sad", "Surprise")
ESD_FOLDER = {"valid": "evaluation", "train": "train", "test": "test"}


def wav(path, sr=16000, seconds=0.1, channels=1) -> Path:
    "Write a short noise WAV at `path` (parents created)."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    x = rng.uniform(-.1, .1, (int(sr * seconds), channels)).astype("float32")
    sf.write(path, x if channels > 1 else x[:, 0], sr)
    return path


def _order(items, shuffle_seed):
    items = list(items)
    if shuffle_seed is not None: random.Random(shuffle_seed).shuffle(items)
    return items


def esd_offset_split(fid):
    off = (fid - 1) % 350 + 1
    return "valid" if off <= 20 else "test" if off <= 50 else "train"


def make_esd(root, speakers=("0001", "0011"), offsets=(1, 2, 21, 22, 51, 52), flat=False,
             dataset_folder="Emotion Speech Dataset", transcripts="utf-8", junk=True, shuffle_seed=None) -> Path:
    """ESD tree under `root/dataset_folder` (or `root` when `dataset_folder` is None); returns that folder.
    `transcripts`: None or an encoding name for `<spk>/<spk>.txt` (Mandarin speakers get Chinese text)."""
    base = Path(root) / dataset_folder if dataset_folder else Path(root)
    base.mkdir(parents=True, exist_ok=True)
    (base / "ReadMe.txt").write_text("The Emotional Speech Dataset (ESD)\n")
    jobs = [(s, e, o) for s in speakers for e in range(5) for o in offsets]
    for spk, e, off in _order(jobs, shuffle_seed):
        fid = e * 350 + off
        d = base / spk / ESD_EMOTIONS[e]
        if not flat: d = d / ESD_FOLDER[esd_offset_split(fid)]
        wav(d / f"{spk}_{fid:06d}.wav")
        if junk: (d / f"._{spk}_{fid:06d}.wav").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    if transcripts:
        for spk in speakers:
            write_esd_transcript(base / spk / f"{spk}.txt", spk, transcripts)
    return base


ZH_EMOTION_WORDS = ("中立", "生气", "快乐", "伤心", "惊喜")   # Neutral Angry Happy Sad Surprise, as in the Mandarin transcripts


def esd_transcript_lines(spk):
    "One line per emotion block (ids 1, 351, 701, 1051, 1401): `(utt_id, text, emotion word)`."
    ids = [f"{spk}_{350 * e + 1:06d}" for e in range(5)]
    if int(spk) <= 10:
        texts = ("打远一看，它们的确很美。", "今天的天气真好，我们去公园散步吧。", "我真的很快乐，谢谢你们的礼物。",   # sentence
                 "他走了以后，这里就再也没有人来过。", "哇，原来是你呀，好久不见了！")   # lengths as in the release: ASCII < 1/4 of UTF-16 bytes
        return list(zip(ids, texts, ZH_EMOTION_WORDS))
    texts = ("Café au lait, please.", "I said no", "What a naïve idea", "She left", "Oh, it is you")
    return list(zip(ids, texts, ESD_EMOTIONS))


def write_esd_transcript(path, spk, encoding="utf-8", sep="\t", newline="\n"):
    text = newline.join(sep.join(fields) for fields in esd_transcript_lines(spk)) + newline
    Path(path).write_bytes(text.encode(encoding))


IEMOCAP_DEFAULT = {
    1: [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "ang"), ("Ses01F_impro05a_M001", "xxx"),
        ("Ses01F_script01_1b_F003", "exc"), ("Ses01F_script01_1b_M002", "dis")],
    2: [("Ses02M_impro08b_F010", "fru"), ("Ses02M_script02_2_M011", "sad"), ("Ses02M_script02_2_F000", "hap")],
    5: [("Ses05F_impro03_F001", "sur"), ("Ses05F_impro03_M001", "fea"), ("Ses05M_script03_1_M004", "oth"),
        ("Ses05M_script03_1_F004", "neu")],
}


def make_iemocap(root, sessions=None, shuffle_seed=None, extra_lines=None, skip_audio=()) -> Path:
    """IEMOCAP tree: `sessions` maps session number -> [(utt_id, code)]. `extra_lines` maps a dialog name to
    raw lines appended to its label file. Audio for ids in `skip_audio` is not written."""
    root = Path(root)
    sessions = sessions or IEMOCAP_DEFAULT
    files: dict[tuple[int, str], list[str]] = {}
    for s, turns in sessions.items():
        for i, (utt, code) in enumerate(turns):
            dialog = utt.rsplit("_", 1)[0]
            files.setdefault((s, dialog), []).append(
                f"[{i * 3.1:.4f} - {i * 3.1 + 2.5:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 2.0000]\n"
                f"C-E1:\tNeutral;\t()\nC-E2:\tAnger;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n")
    for (s, dialog), blocks in _order(sorted(files.items()), shuffle_seed):
        sess = root / f"Session{s}"
        ev = sess / "dialog" / "EmoEvaluation"
        for sub in ("Attribute", "Categorical", "Self-evaluation"):
            (ev / sub).mkdir(parents=True, exist_ok=True)
            (ev / sub / f"{dialog}_x.txt").write_text("[1.0 - 2.0]\tnot_an_id\tzzz\t[1, 2]\n")
        body = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "".join(blocks)
        body += "".join(l + "\n" for l in (extra_lines or {}).get(dialog, []))
        (ev / f"{dialog}.txt").write_text(body)
        for line in blocks:
            utt = line.split("\t")[1]
            if utt not in skip_audio: wav(sess / "sentences" / "wav" / dialog / f"{utt}.wav")
        (sess / "sentences" / "wav" / dialog / f"{dialog}.pk").write_bytes(b"not audio")
    return root


MSP_IMPROV_DEFAULT = ["S01A-F01-P-FM01", "S01A-M01-R-FM01", "S02H-F01-S-FM01", "S03S-M01-T-FM01", "S04N-F01-T-FM01",
                      "S01A-F06-P-FM06", "S02H-M06-S-FM06", "S05N-M02-R-MF02"]


def make_msp_improv(root, stems=None, evaluation=None, audio_folder=None, shuffle_seed=None,
                    evaluation_name="Evaluation.txt") -> Path:
    """MSP-IMPROV tree; `evaluation` is the text of `<root>/<evaluation_name>` (None: not written).
    `audio_folder` puts the session folders under `<root>/<audio_folder>/`."""
    root = Path(root)
    top = root / audio_folder if audio_folder else root
    for stem in _order(stems or MSP_IMPROV_DEFAULT, shuffle_seed):
        sent, spk, rt, pair = stem.split("-")
        d = top / f"session{int(spk[1:])}" / sent / rt
        wav(d / f"MSP-IMPROV-{stem}.wav", sr=44100)
        (d / f"MSP-IMPROV-{stem}.avi").write_bytes(b"RIFF....AVI ")
        (d / f"._MSP-IMPROV-{stem}.wav").write_bytes(b"\x00\x05junk")
    if evaluation is not None:
        root.mkdir(parents=True, exist_ok=True)
        (root / evaluation_name).write_text(evaluation)
    return root


PODCAST_HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
PODCAST_DEFAULT = [("MSP-PODCAST_0001_0008.wav", "N", "30", "Male", "Test1"),
                   ("MSP-PODCAST_0001_0009.wav", "A", "Unknown", "Female", "Train"),
                   ("MSP-PODCAST_0002_0001.wav", "X", "12", "Male", "Train"),
                   ("MSP-PODCAST_0003_0001.wav", "C", "0012", "Male", "Development"),
                   ("MSP-PODCAST_0004_0001.wav", "S", "7", "Female", "Validation"),
                   ("MSP-PODCAST_0005_0001.wav", "U", "7", "Female", "Test2"),
                   ("MSP-PODCAST_0006_0001.wav", "F", "8", "Male", "Test3"),
                   ("MSP-PODCAST_0007_0001.wav", "D", "8", "Male", "Train"),
                   ("MSP-PODCAST_0008_0001.wav", "H", "9", "Female", "Train"),
                   ("MSP-PODCAST_0009_0001.wav", "O", "9", "Female", "Train")]


def _json_id(s):
    "SpkrID as the JSON release writes it: a number where it is one (and has no leading zero), else a string."
    return int(s) if s.isdigit() and not s.startswith("0") else s


def make_msp_podcast(root, records=None, audio="Audios", labels="labels_consensus.csv", extra_lines=(),
                     skip_audio=(), stereo=(), label_folder="Labels", extra_json=None) -> Path:
    """MSP-PODCAST tree with `<root>/<audio>/` and `<root>/<label_folder>/<labels>`. A `.json` label file is the
    release's object keyed by file name (numbers as numbers); `extra_json` adds raw entries to it, `extra_lines`
    raw lines to a CSV."""
    root = Path(root)
    (root / label_folder).mkdir(parents=True, exist_ok=True)
    lines, obj = [PODCAST_HEADER], {}
    for f, c, s, g, ss in records or PODCAST_DEFAULT:
        if f not in skip_audio:
            wav(root / audio / f, sr=44100 if f in stereo else 16000, channels=2 if f in stereo else 1)
        lines.append(f"{f},{c},2.2,4.0,2.6,{s},{g},{ss}")
        obj[f] = {"EmoClass": c, "EmoAct": 2.2, "EmoVal": 4.0, "EmoDom": 2.6, "SpkrID": _json_id(s), "Gender": g,
                  "Split_Set": ss}
    lines += list(extra_lines)
    if labels.endswith(".json"):
        (root / label_folder / labels).write_text(json.dumps(obj | dict(extra_json or {}), indent=4))
    else: (root / label_folder / labels).write_text("\n".join(lines) + "\n")
    return root


MASC_EMOTIONS = ("anger", "elation", "neutral", "panic", "sadness")


def make_masc(root, speakers=("001", "002", "003"), stems=("0001", "0002"), package="LDC2007S09",
              include_man_aff_spch=True, shuffle_seed=None, extra_emotions=()) -> Path:
    "MASC tree `<root>/<package>/man_aff_spch/data/<spk>/<emotion>/{phrase,utterance}/*.wav`; returns `root/package`."
    top = Path(root) / package if package else Path(root)
    data = (top / "man_aff_spch" if include_man_aff_spch else top) / "data"
    jobs = [(s, e, k, st) for s in speakers for e in MASC_EMOTIONS + tuple(extra_emotions)
            for k in ("phrase", "utterance") for st in stems]
    for spk, emo, kind, stem in _order(jobs, shuffle_seed):
        wav(data / spk / emo / kind / f"{stem}.wav", sr=22050)
    (data.parent / "docs").mkdir(parents=True, exist_ok=True)
    (data.parent / "docs" / "readme.txt").write_text("Mandarin Affective Speech\n")
    return top


CREMA_D_DEFAULT = ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1001_IEO_NEU_XX", "1002_TIE_SAD_XX", "1002_IEO_FEA_LO",
                   "1091_WSI_DIS_XX", "1091_ITS_NEU_XX")


def make_crema_d(root, stems=CREMA_D_DEFAULT, demographics=True, extra=(), lfs=()) -> Path:
    """CREMA-D tree `<root>/AudioWAV/<stem>.wav` (+ `AudioMP3/`, `VideoDemographics.csv`); `extra` are raw file
    names written as audio too, `lfs` stems written as git-lfs pointer files."""
    root = Path(root)
    for stem in tuple(stems) + tuple(extra):
        wav(root / "AudioWAV" / (stem if stem.endswith(".wav") else f"{stem}.wav"))
    for stem in lfs:
        (root / "AudioWAV" / f"{stem}.wav").write_text("version https://git-lfs.github.com/spec/v1\n"
                                                        "oid sha256:00\nsize 52044\n")
    (root / "AudioMP3").mkdir(parents=True, exist_ok=True)
    (root / "AudioMP3" / f"{stems[0]}.mp3").write_bytes(b"ID3")
    if demographics:
        (root / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
                                                    "1002,21,Female,Asian,Not Hispanic\n1091,29,Female,Asian,Not Hispanic\n")
    return root


RAVDESS_DEFAULT = ("03-01-01-01-01-01-01", "03-01-05-02-02-01-01", "03-01-02-01-01-02-01", "03-01-08-02-01-01-12",
                   "03-01-06-01-02-02-12", "03-01-07-02-01-01-24")


def make_ravdess(root, stems=RAVDESS_DEFAULT, songs=True, videos=True, extra=()) -> Path:
    """RAVDESS speech tree `<root>/Actor_NN/<stem>.wav` at 48 kHz (the actor from the stem), plus song and video
    files unpacked into the same folders; `extra` is `(folder, file name)` written as audio."""
    root = Path(root)
    for stem in stems:
        wav(root / f"Actor_{stem[-2:]}" / f"{stem}.wav", sr=48000)
        if songs: wav(root / f"Actor_{stem[-2:]}" / f"03-02-{stem[6:]}.wav", sr=48000)
        if videos: (root / f"Actor_{stem[-2:]}" / f"01-01-{stem[6:]}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    for folder, name in extra: wav(root / folder / name, sr=48000)
    return root


EMODB_DEFAULT = ("03a01Fa", "03a01Wa", "08a02Ab", "09b10Nc", "10b01Ta", "16a05La", "16a07Ea", "11a04Fd")


def make_emodb(root, stems=EMODB_DEFAULT, flat=False, extra=()) -> Path:
    "EmoDB tree `<root>/wav/<stem>.wav` (flat: `<root>/<stem>.wav`) with a `lablaut/` folder; `extra`: raw names."
    root = Path(root)
    audio = root if flat else root / "wav"
    for stem in tuple(stems) + tuple(extra): wav(audio / (stem if stem.endswith(".wav") else f"{stem}.wav"))
    (root / "lablaut").mkdir(parents=True, exist_ok=True)
    (root / "lablaut" / f"{stems[0]}.lab").write_text("0.0 a\n")
    return root
