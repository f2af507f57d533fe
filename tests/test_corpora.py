"Corpus loaders on tiny trees of every layout variant in CORPORA.md, including bad input."
import json, os, re, shutil, subprocess, sys, warnings
from pathlib import Path
import pandas as pd
import pytest
import soundfile as sf

from speech_prefinetune.core import LABELS, SPLITS, UserError
from speech_prefinetune.corpora import (COLUMNS, CorpusWarning, corpus_summary, esd_offset_split,
                                        hash_split, load_corpus, parse_option)
from speech_prefinetune.corpora import decode_text
from speech_prefinetune.cli import build_parser
from corpus_fixtures import (CREMA_D_DEFAULT, EMODB_DEFAULT, IEMOCAP_DEFAULT, PODCAST_DEFAULT, PODCAST_HEADER,
                             RAVDESS_DEFAULT, ZH_EMOTION_WORDS, esd_transcript_lines, make_crema_d, make_emodb, make_esd,
                             make_iemocap, make_masc, make_msp_improv, make_msp_podcast, make_ravdess, wav,
                             write_esd_transcript)


def load_quiet(*a, **k):
    "load_corpus, asserting that it emits no warning (but the note that a tiny tree left a split empty)."
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t = load_corpus(*a, **k)
    assert all(re.fullmatch(r"\w+: 1 empty split\(s\), e\.g\. no [a-z/]+ utterances .*", str(x.message)) for x in w), \
        [str(x.message) for x in w]
    return t


def load_warned(*a, **k):
    "load_corpus, returning (table, the one CorpusWarning message)."
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t = load_corpus(*a, **k)
    ws = [x for x in w if issubclass(x.category, CorpusWarning)]
    assert len(ws) == 1, [str(x.message) for x in w]
    return t, str(ws[0].message)


def check_contract(t, corpus):
    assert list(t.columns[:7]) == list(COLUMNS)
    assert (t.corpus == corpus).all()
    assert t.utt_id.is_unique and t.utt_id.tolist() == sorted(t.utt_id)
    assert t.label.isin(LABELS[corpus]).all(), set(t.label)
    assert t.split.isin(SPLITS).all() and t.language.isin(["en", "zh"]).all()
    assert all(isinstance(s, str) for s in t.speaker)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in t.path)


def relative(t, root):
    "Table with paths relative to `root` (to compare trees built in different folders)."
    t = t.copy()
    t["path"] = [Path(p).relative_to(Path(root).absolute()).as_posix() for p in t.path]
    return t


# ---------------------------------------------------------------------------------------------------------- ESD
def test_esd_official_layout(tmp_path):
    make_esd(tmp_path, speakers=("0001", "0002", "0011", "0020"))
    t = load_quiet("esd", tmp_path)
    check_contract(t, "esd")
    assert len(t) == 4 * 5 * 6
    assert t.groupby("split").size().to_dict() == {"train": 40, "valid": 40, "test": 40}
    assert dict(zip(t.speaker, t.language)) == {"0001": "zh", "0002": "zh", "0011": "en", "0020": "en"}
    row = t.set_index("utt_id").loc["0011_001402"]
    assert (row.label, row.split, row.speaker) == ("surprise", "valid", "0011")
    assert "/evaluation/" in row.path
    for fid, label in ((1, "neutral"), (351, "angry"), (701, "happy"), (1051, "sad"), (1401, "surprise")):
        assert t.set_index("utt_id").loc[f"0001_{fid:06d}", "label"] == label
    # ReadMe.txt and ._ files are not utterances
    assert not t.utt_id.str.startswith("._").any()


def test_esd_flat_layout_equals_official(tmp_path):
    off = load_quiet("esd", make_esd(tmp_path / "a"))
    flat = load_quiet("esd", make_esd(tmp_path / "b", flat=True))
    assert len(flat) == len(off)
    pd.testing.assert_frame_equal(off.drop(columns="path"), flat.drop(columns="path"))
    assert flat.split.tolist() == [esd_offset_split(int(u.split("_")[1])) for u in flat.utt_id]


@pytest.mark.parametrize("where", ["dataset", "parent", "grandparent", "plain"])
def test_esd_root_sniffing(tmp_path, where):
    if where == "plain":
        base = make_esd(tmp_path / "ESD", dataset_folder=None)
        arg = base
    else:
        base = make_esd(tmp_path / "pkg" / "inner")
        arg = {"dataset": base, "parent": base.parent, "grandparent": base.parent.parent}[where]
    t = load_quiet("esd", arg)
    assert len(t) == 2 * 5 * 6 and t.path.str.startswith(str(base.absolute())).all()


def test_esd_no_speakers_is_user_error(tmp_path):
    (tmp_path / "Emotion Speech Dataset").mkdir()
    (tmp_path / "Emotion Speech Dataset" / "ReadMe.txt").write_text("x")
    with pytest.raises(UserError, match="no speaker folders"): load_corpus("esd", tmp_path)


@pytest.mark.parametrize("encoding,sep,newline", [("gb2312", "\t", "\n"), ("utf-16", "\t", "\r\n"),
                                                  ("utf-8", "\t", "\n"), ("utf-8-sig", " ", "\n"),
                                                  ("gb2312", " ", "\r\n"), ("utf-16", " ", "\n"),
                                                  ("utf-16-le", "\t", "\r\n"), ("utf-16-be", "\t", "\n"),
                                                  ("utf-16-le", " ", "\n"), ("utf-16-be", " ", "\r\n")])
def test_esd_transcripts_in_any_encoding(tmp_path, encoding, sep, newline):
    base = make_esd(tmp_path, speakers=("0003", "0013"), transcripts=None)
    write_esd_transcript(base / "0003" / "0003.txt", "0003", encoding, sep, newline)
    eng = "latin-1" if encoding == "gb2312" else encoding
    write_esd_transcript(base / "0013" / "0013.txt", "0013", eng, sep, newline)
    t = load_quiet("esd", tmp_path).set_index("utt_id")
    for spk in ("0003", "0013"):
        for utt, text, _ in esd_transcript_lines(spk):
            assert t.loc[utt, "transcript"] == text, (encoding, utt, t.loc[utt, "transcript"])
    assert t.transcript.isna().sum() == len(t) - 10
    if encoding.startswith("utf-16-"):
        assert not (base / "0003" / "0003.txt").read_bytes().startswith((b"\xff\xfe", b"\xfe\xff"))


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16", "gb2312", "utf-8", "utf-8-sig"])
@pytest.mark.parametrize("sep", ["\t", " "])
def test_esd_mandarin_emotion_words_in_every_encoding(tmp_path, encoding, sep):
    "The five Chinese emotion words survive each encoding of CORPORA.md, BOM-less UTF-16 too (Python's codecs: oracle)."
    path = tmp_path / "0006.txt"
    write_esd_transcript(path, "0006", encoding, sep, "\r\n")
    lines = esd_transcript_lines("0006")
    data = path.read_bytes()
    if encoding.startswith("utf-16"):
        assert data.count(0) < len(data) // 4        # too few NULs for a "mostly ASCII" rule
    text = decode_text(data)
    assert text == "".join(sep.join(l) + "\r\n" for l in lines)
    assert [l.split(sep)[-1] for l in text.splitlines()] == list(ZH_EMOTION_WORDS)
    en = tmp_path / "0016.txt"   # an English speaker in Latin-1 (the release's 0016/0017)
    write_esd_transcript(en, "0016", "latin-1" if encoding in ("gb2312",) else encoding, sep)
    assert "naïve" in decode_text(en.read_bytes(), prefer_chinese=False)


def test_esd_missing_or_garbage_transcripts_never_break_loading(tmp_path):
    base = make_esd(tmp_path, transcripts=None)
    plain = load_quiet("esd", tmp_path)
    assert plain.transcript.isna().all()
    (base / "0001" / "0001.txt").write_bytes(bytes(range(256)) * 3)
    t, msg = load_warned("esd", tmp_path)
    assert "unparsed transcript lines" in msg and "0001.txt" in msg
    pd.testing.assert_frame_equal(t.drop(columns="transcript"), plain.drop(columns="transcript"))
    assert len(load_quiet("esd", tmp_path, transcripts=False)) == len(plain)
    (base / "0001" / "0001.txt").write_bytes(b"\xff\xfe" + b"0\x00\x00\xd8" + b"1")   # utf-16 BOM, then broken
    t, msg = load_warned("esd", tmp_path)
    assert len(t) == len(plain) and "0001.txt" in msg


def test_esd_label_mismatch_raises_and_skips(tmp_path):
    base = make_esd(tmp_path)
    bad = wav(base / "0001" / "Neutral" / "train" / "0001_000400.wav")   # an Angry id in the Neutral folder
    with pytest.raises(UserError, match=r"0001_000400\.wav.*angry block.*neutral"): load_corpus("esd", tmp_path)
    t, msg = load_warned("esd", tmp_path, errors="skip")
    assert "skipped 1 entry" in msg and "1 label mismatch" in msg and str(bad) in msg
    assert len(t) == 2 * 5 * 6


def test_esd_split_folder_wins_and_disagreement_is_warned(tmp_path):
    base = make_esd(tmp_path)
    src = base / "0001" / "Neutral" / "train" / "0001_000051.wav"
    src.rename(base / "0001" / "Neutral" / "test" / src.name)
    t, msg = load_warned("esd", tmp_path)
    assert t.set_index("utt_id").loc["0001_000051", "split"] == "test"
    assert "disagreeing with id offsets" in msg and "0001_000051" in msg and "skipped" not in msg


def test_esd_bad_names_speakers_and_folders(tmp_path):
    base = make_esd(tmp_path)
    bad = wav(base / "0001" / "Angry" / "train" / "0002_000400.wav")    # speaker in name differs from folder
    with pytest.raises(UserError, match=r"0002_000400\.wav: expected 0001_<6 digits>"): load_corpus("esd", tmp_path)
    t, msg = load_warned("esd", tmp_path, errors="skip")
    assert "1 bad file name" in msg
    bad.unlink()
    wav(base / "0021" / "Angry" / "train" / "0021_000400.wav")
    with pytest.raises(UserError, match="'0021' is not 0001-0020"): load_corpus("esd", tmp_path, errors="raise")
    wav(bad)
    wav(base / "0001" / "Angry" / "extra" / "0001_000400.wav")
    t, msg = load_warned("esd", tmp_path, errors="skip")
    assert "skipped 3 entries" in msg and "1 unknown speaker" in msg and "1 unexpected folder" in msg
    assert len(t) == 60


def test_esd_duplicate_ids_across_split_folders(tmp_path):
    base = make_esd(tmp_path)
    shutil.copy(base / "0001" / "Neutral" / "train" / "0001_000051.wav", base / "0001" / "Neutral" / "test")
    with pytest.raises(UserError, match="utt_id 0001_000051 also at"): load_corpus("esd", tmp_path)


def test_empty_audio_file_is_bad_input(tmp_path):
    base = make_esd(tmp_path)
    empty = base / "0011" / "Sad" / "test" / "0011_001071.wav"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=rf"{empty}: empty audio file"): load_corpus("esd", tmp_path)
    t, msg = load_warned("esd", tmp_path, errors="skip")
    assert len(t) == 59 and "skipped 1 entry (1 empty audio" in msg


def test_esd_independent_of_creation_order_and_folder_names(tmp_path):
    a = make_esd(tmp_path / "a", shuffle_seed=1)
    b = make_esd(tmp_path / "other name" / "b", shuffle_seed=2)
    pd.testing.assert_frame_equal(relative(load_quiet("esd", a), a), relative(load_quiet("esd", b), b))


# ------------------------------------------------------------------------------------------------------ IEMOCAP
def test_iemocap_default(tmp_path):
    root = make_iemocap(tmp_path / "IEMOCAP_full_release")
    t = load_quiet("iemocap", tmp_path)
    check_contract(t, "iemocap")
    all_turns = {u: c for turns in IEMOCAP_DEFAULT.values() for u, c in turns}
    expected = sorted(u for u, c in all_turns.items() if c not in ("xxx", "dis"))
    assert t.utt_id.tolist() == expected
    r = t.set_index("utt_id")
    # the speaker is session + the gender letter of the LAST id field
    assert r.loc["Ses01F_impro01_M000", "speaker"] == "Ses01M"
    assert r.loc["Ses02M_impro08b_F010", "speaker"] == "Ses02F"
    assert r.loc["Ses05M_script03_1_F004", "speaker"] == "Ses05F"
    assert (r.speaker.str[-1] == r.index.str.rsplit("_", n=1).str[-1].str[0]).all()
    # dialog variants
    assert r.loc["Ses01F_script01_1b_F003", "dialog"] == "Ses01F_script01_1b"
    want = "Session2/sentences/wav/Ses02M_script02_2/Ses02M_script02_2_M011.wav"
    assert r.loc["Ses02M_script02_2_M011", "path"].endswith(want)
    assert dict(zip(r.code, r.label)) == {"neu": "neutral", "ang": "angry", "exc": "excited", "fru": "frustrated",
                                          "sad": "sad", "hap": "happy", "sur": "surprise", "fea": "fear",
                                          "oth": "other"}
    assert (r.language == "en").all() and r.loc["Ses01F_impro01_F000", "session"] == 1
    assert r.loc["Ses02M_impro08b_F010", "improvised"] and not r.loc["Ses02M_script02_2_M011", "improvised"]
    assert r.loc["Ses01F_impro01_F000", ["valence", "arousal", "dominance"]].tolist() == [2.5, 3.0, 2.0]
    assert root.exists()


def test_iemocap_code_options(tmp_path):
    make_iemocap(tmp_path)
    four = load_quiet("iemocap", tmp_path, keep_codes="neu,hap,exc,ang,sad")
    assert set(four.code) == {"neu", "hap", "exc", "ang", "sad"}
    assert set(load_quiet("iemocap", tmp_path, keep_codes=["ang"]).code) == {"ang"}
    more = load_quiet("iemocap", tmp_path, drop_codes="xxx,dis,oth,fru")
    assert not more.code.isin(["oth", "fru", "xxx", "dis"]).any() and len(more) == 8
    with pytest.raises(UserError, match="dis.*no canonical label"): load_corpus("iemocap", tmp_path, drop_codes="xxx")
    with pytest.raises(UserError, match="xxx.*no canonical label"):
        load_corpus("iemocap", tmp_path, keep_codes="neu,xxx")
    with pytest.raises(UserError, match="unknown code.*foo"): load_corpus("iemocap", tmp_path, keep_codes="neu,foo")


def test_iemocap_unparsable_line(tmp_path):
    make_iemocap(tmp_path, extra_lines={"Ses01F_impro01": ["[12.0 - 13.0]\tSes01F_impro01_F009\tneu"]})
    lf = tmp_path / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    n = len(lf.read_text().splitlines())
    with pytest.raises(UserError, match=rf"Ses01F_impro01\.txt:{n}: cannot parse"): load_corpus("iemocap", tmp_path)
    t, msg = load_warned("iemocap", tmp_path, errors="skip")
    assert "skipped 1 entry (1 unparsable label line" in msg and len(t) == 10


def test_iemocap_unknown_code_and_missing_audio(tmp_path):
    turns = {1: [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "bor"), ("Ses01F_impro01_M001", "ang"),
                 ("Ses01F_impro01_F001", "sad")]}
    make_iemocap(tmp_path, sessions=turns, skip_audio={"Ses01F_impro01_M001", "Ses01F_impro01_F001"})
    with pytest.raises(UserError, match=r"Ses01F_impro01\.txt:8: unknown code 'bor'"): load_corpus("iemocap", tmp_path)
    t, msg = load_warned("iemocap", tmp_path, errors="skip")
    assert t.utt_id.tolist() == ["Ses01F_impro01_F000"]
    assert "skipped 3 entries (2 missing audio" in msg and "1 unknown label code" in msg
    (tmp_path / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(
        "[1.0 - 2.0]\tSes01F_impro01_M001\tang\t[1, 2, 3]\n")
    with pytest.raises(UserError, match=r"Ses01F_impro01\.txt:1: audio for Ses01F_impro01_M001 not found"):
        load_corpus("iemocap", tmp_path)


def test_iemocap_missing_structure(tmp_path):
    with pytest.raises(UserError, match="no Session1..Session5"): load_corpus("iemocap", tmp_path)
    (tmp_path / "Session1" / "sentences").mkdir(parents=True)
    with pytest.raises(UserError, match="EmoEvaluation: label folder not found"): load_corpus("iemocap", tmp_path)


def test_iemocap_splits(tmp_path):
    make_iemocap(tmp_path)
    t = load_quiet("iemocap", tmp_path, split="speaker").set_index("utt_id")
    assert (t.split == t.speaker.map({"Ses05F": "valid", "Ses05M": "test"}).fillna("train")).all()
    h = load_quiet("iemocap", tmp_path)
    assert h.split.tolist() == [hash_split(u, "iemocap") for u in h.utt_id]
    with pytest.raises(UserError, match="'utterance' or 'speaker'"): load_corpus("iemocap", tmp_path, split="random")


def test_empty_split_is_noted(tmp_path):
    make_iemocap(tmp_path, sessions={k: v for k, v in IEMOCAP_DEFAULT.items() if k != 5})
    t, msg = load_warned("iemocap", tmp_path, split="speaker")
    assert (t.split == "train").all()
    assert msg.startswith("iemocap: 1 empty split(s), e.g. no valid/test utterances (split='speaker'")


def test_iemocap_independent_of_creation_order_and_folder_names(tmp_path):
    a = make_iemocap(tmp_path / "a", shuffle_seed=3)
    b = make_iemocap(tmp_path / "b" / "IEMOCAP", shuffle_seed=4)
    pd.testing.assert_frame_equal(relative(load_quiet("iemocap", a), a), relative(load_quiet("iemocap", b), b))


# --------------------------------------------------------------------------------------------------- MSP-IMPROV
EVALUATION = (
    "UTD-IMPROV-S01A-F01-P-FM01.avi; N; A:3.000000; V:3.500000; D:3.000000 ; N:3.200000;\n"
    "Rater1; Neutral; Neutral; A:3.000000; V:3.000000; D:3.000000; N:3.000000;\n"
    "UTD-IMPROV-S01A-M01-R-FM01.avi;A;A:4.0;V:2.0;D:4.0;\n"
    "\n"
    "UTD-IMPROV-S02H-F01-S-FM01.avi ;  X ; A:3.0; V:3.0; D:3.0;\n"
    "UTD-IMPROV-S03S-M01-T-FM01.avi;   S;   A:2.0 ;V:2.0;  D:2.0; N:4.0;\n"
    "UTD-IMPROV-S04N-F01-T-FM01.avi; O; A:2.0; V:2.0; D:NaN; N:4.0;\n"
    "UTD-IMPROV-S01A-F06-P-FM06.avi; H; A:2.0; V:2.0; D:2.0; N:4.0;\n"
    "UTD-IMPROV-S02H-M06-S-FM06.avi; H; A:2.0; V:2.0; D:2.0;\n")


def test_msp_improv_target_labels(tmp_path):
    make_msp_improv(tmp_path, evaluation=EVALUATION)
    t = load_quiet("msp_improv", tmp_path)
    check_contract(t, "msp_improv")
    assert len(t) == 8 and not t.path.str.endswith(".avi").any()
    r = t.set_index("utt_id")
    columns = ["speaker", "label", "recording_type", "sentence", "gender"]
    assert r.loc["MSP-IMPROV-S02H-F01-S-FM01", columns].tolist() == ["F01", "happy", "S", "S02", "F"]
    assert dict(zip(r.index.str[14], r.label)) == {"A": "angry", "H": "happy", "S": "sad", "N": "neutral"}
    assert (r.label == r.target_label).all() and set(r.speaker) == {"F01", "M01", "F06", "M06", "M02"}


def test_msp_improv_consensus(tmp_path):
    make_msp_improv(tmp_path, evaluation=EVALUATION)
    t, msg = load_warned("msp_improv", tmp_path, label_source="consensus")
    r = t.set_index("utt_id")
    assert r.label.to_dict() == {"MSP-IMPROV-S01A-F01-P-FM01": "neutral", "MSP-IMPROV-S01A-M01-R-FM01": "angry",
                                 "MSP-IMPROV-S03S-M01-T-FM01": "sad", "MSP-IMPROV-S01A-F06-P-FM06": "happy",
                                 "MSP-IMPROV-S02H-M06-S-FM06": "happy"}
    assert r.loc["MSP-IMPROV-S01A-F01-P-FM01", "target_label"] == "angry"
    assert r.loc["MSP-IMPROV-S01A-F01-P-FM01", ["arousal", "valence", "naturalness"]].tolist() == [3.0, 3.5, 3.2]
    assert pd.isna(r.loc["MSP-IMPROV-S01A-M01-R-FM01", "naturalness"])
    assert "1 wav files without an Evaluation.txt entry" in msg and "skipped" not in msg   # S05N-M02 has no entry


def test_msp_improv_consensus_errors(tmp_path):
    make_msp_improv(tmp_path)
    with pytest.raises(UserError, match="needs Evaluation.txt"):
        load_corpus("msp_improv", tmp_path, label_source="consensus")
    ev = tmp_path / "Evaluation.txt"
    ev.write_text(EVALUATION + "UTD-IMPROV-S09A-F02-P-FM02.avi; A; A:1; V:1; D:1;\n")
    with pytest.raises(UserError, match=r"Evaluation\.txt:10: audio for MSP-IMPROV-S09A-F02-P-FM02 not found"):
        load_corpus("msp_improv", tmp_path, label_source="consensus")
    ev.write_text(EVALUATION + "UTD-IMPROV-S01A-F01-P-FM01.avi; Q; A:1; V:1; D:1;\n")
    with pytest.raises(UserError, match=r"Evaluation\.txt:10: unknown code 'Q'"):
        load_corpus("msp_improv", tmp_path, label_source="consensus")
    ev.write_text(EVALUATION + "UTD-IMPROV-S01A-F01-P-FM01; A; A:1\n" + "UTD-IMPROV-S09A-F02-P-FM02.avi; A; A:1;\n")
    with pytest.raises(UserError, match=r"Evaluation\.txt:10: cannot parse"):
        load_corpus("msp_improv", tmp_path, label_source="consensus")
    t, msg = load_warned("msp_improv", tmp_path, label_source="consensus", errors="skip")
    assert "skipped 2 entries (1 missing audio" in msg and "1 unparsable label line" in msg and len(t) == 5
    with pytest.raises(UserError, match="'target' or 'consensus'"):
        load_corpus("msp_improv", tmp_path, label_source="x")


def test_msp_improv_bad_file_name_and_unknown_letter(tmp_path):
    make_msp_improv(tmp_path)
    wav(tmp_path / "session1" / "S01A" / "P" / "notes.wav")
    wav(tmp_path / "session1" / "S01Q" / "P" / "MSP-IMPROV-S01Q-F01-P-FM01.wav")
    with pytest.raises(UserError, match=r"notes\.wav: expected MSP-IMPROV"): load_corpus("msp_improv", tmp_path)
    t, msg = load_warned("msp_improv", tmp_path, errors="skip")
    assert "skipped 2 entries (1 bad file name" in msg and "1 unknown label code" in msg and "'Q'" in msg
    assert len(t) == 8


def test_msp_improv_audio_folder_and_splits(tmp_path):
    a = make_msp_improv(tmp_path / "a", audio_folder="Audio", evaluation=EVALUATION, shuffle_seed=5)
    b = make_msp_improv(tmp_path / "b", evaluation=EVALUATION, shuffle_seed=6)
    ta, tb = load_quiet("msp_improv", a, split="speaker"), load_quiet("msp_improv", b, split="speaker")
    pd.testing.assert_frame_equal(ta.drop(columns="path"), tb.drop(columns="path"))
    assert (ta.split == ta.speaker.map({"F06": "valid", "M06": "test"}).fillna("train")).all()
    ca = load_warned("msp_improv", a, label_source="consensus")[0]
    assert len(ca) == 5 and set(ca.clip_code) == {"FM01", "FM06"}
    (a / "Evaluation.txt").rename(a / "Evalution.txt")                       # the release's own spelling
    pd.testing.assert_frame_equal(load_warned("msp_improv", a, label_source="consensus")[0], ca)


# -------------------------------------------------------------------------------------------------- MSP-PODCAST
@pytest.mark.parametrize("audio,labels", [("Audios", "labels_consensus.csv"), ("Audio", "labels_concensus.csv")])
def test_msp_podcast_variants(tmp_path, audio, labels):
    make_msp_podcast(tmp_path / "MSP-PODCAST", audio=audio, labels=labels, stereo={"MSP-PODCAST_0001_0008.wav"})
    t = load_quiet("msp_podcast", tmp_path)
    check_contract(t, "msp_podcast")
    r = t.set_index("utt_id")
    assert len(t) == 9 and "MSP-PODCAST_0002_0001" not in r.index          # X dropped
    assert r.loc["MSP-PODCAST_0001_0009", "speaker"] == "Unknown"
    assert r.loc["MSP-PODCAST_0003_0001", "speaker"] == "0012"
    assert r.split.to_dict() == {"MSP-PODCAST_0001_0008": "test", "MSP-PODCAST_0001_0009": "train",
                                 "MSP-PODCAST_0003_0001": "valid", "MSP-PODCAST_0004_0001": "valid",
                                 "MSP-PODCAST_0005_0001": "test", "MSP-PODCAST_0006_0001": "test",
                                 "MSP-PODCAST_0007_0001": "train", "MSP-PODCAST_0008_0001": "train",
                                 "MSP-PODCAST_0009_0001": "train"}
    assert r.label.to_dict()["MSP-PODCAST_0005_0001"] == "surprise" and set(r.label) == set(LABELS["msp_podcast"])
    assert r.loc["MSP-PODCAST_0003_0001", "split_set"] == "Development"


def test_msp_podcast_errors(tmp_path):
    make_msp_podcast(tmp_path, extra_lines=["MSP-PODCAST_0100_0001.wav,Z,1,1,1,3,Male,Train",
                                            "MSP-PODCAST_0100_0002.wav,N,1,1,1,3,Male",
                                            "MSP-PODCAST_0100_0003.wav,N,1,1,1,3,Male,Holdout",
                                            "MSP-PODCAST_0100_0004.wav,N,1,1,1,3,Male,Train"])
    lf = tmp_path / "Labels" / "labels_consensus.csv"
    with pytest.raises(UserError, match=r"labels_consensus\.csv:12: unknown EmoClass 'Z'"):
        load_corpus("msp_podcast", tmp_path)
    t, msg = load_warned("msp_podcast", tmp_path, errors="skip")
    assert len(t) == 9
    assert "skipped 4 entries" in msg and "1 missing audio" in msg and "1 unknown label code" in msg
    assert "1 unknown split" in msg and "1 unparsable label line" in msg and "labels_consensus.csv:13" in msg
    lf.write_text(lf.read_text().splitlines()[0] + "\nMSP-PODCAST_0100_0004.wav,N,1,1,1,3,Male,Train\n")
    with pytest.raises(UserError, match=r"labels_consensus\.csv:2: audio .*MSP-PODCAST_0100_0004\.wav not found"):
        load_corpus("msp_podcast", tmp_path)
    lf.write_text("FileName,EmoClass,Split_Set\nx.wav,N,Train\n")
    with pytest.raises(UserError, match=r"labels_consensus\.csv:1: header lacks SpkrID"):
        load_corpus("msp_podcast", tmp_path)
    lf.unlink()
    with pytest.raises(UserError, match="labels_consensus.csv .or labels_concensus.csv. not found"):
        load_corpus("msp_podcast", tmp_path)
    with pytest.raises(UserError, match="no Audios/"): load_corpus("msp_podcast", tmp_path / "Audios")


def test_msp_podcast_independent_of_row_order_and_prefers_new_spelling(tmp_path):
    a = make_msp_podcast(tmp_path / "a")
    b = make_msp_podcast(tmp_path / "b", records=PODCAST_DEFAULT[::-1], audio="Audio")
    pd.testing.assert_frame_equal(load_quiet("msp_podcast", a).drop(columns="path"),
                                  load_quiet("msp_podcast", b).drop(columns="path"))
    (a / "Labels" / "labels_concensus.csv").write_text(PODCAST_HEADER + "\nbroken\n")   # the old file is ignored
    assert len(load_quiet("msp_podcast", a)) == 9


# -------------------------------------------------------------------------------------------------- mandarin_as
@pytest.mark.parametrize("where", ["package", "man_aff_spch", "data", "above"])
def test_masc_root_variants(tmp_path, where):
    top = make_masc(tmp_path / "corpora")
    arg = {"package": top, "man_aff_spch": top / "man_aff_spch", "data": top / "man_aff_spch" / "data",
           "above": tmp_path}[where]
    t = load_quiet("mandarin_as", arg)
    check_contract(t, "mandarin_as")
    assert len(t) == 3 * 5 * 2 and (t.kind == "phrase").all() and (t.language == "zh").all()
    assert set(t.speaker) == {"001", "002", "003"} and set(t.label) == set(LABELS["mandarin_as"])
    assert t.set_index("utt_id").loc["002_sadness_phrase_0002", "label"] == "sad"


def test_masc_include_utterance_and_flat_package(tmp_path):
    top = make_masc(tmp_path, include_man_aff_spch=False, package=None)
    t = load_quiet("mandarin_as", top, include_utterance=True)
    assert len(t) == 3 * 5 * 2 * 2 and t.utt_id.is_unique and set(t.kind) == {"phrase", "utterance"}
    with pytest.raises(UserError, match="include_utterance='yes'"):
        load_corpus("mandarin_as", top, include_utterance="yes")


def test_masc_unknown_emotion_folder(tmp_path):
    top = make_masc(tmp_path, extra_emotions=("boredom",))
    with pytest.raises(UserError, match="boredom.*unknown emotion folder"): load_corpus("mandarin_as", top)
    t, msg = load_warned("mandarin_as", top, errors="skip")
    assert len(t) == 30 and "skipped 3 entries (3 unknown label folder" in msg


def test_masc_splits_deterministic(tmp_path):
    a = make_masc(tmp_path / "a", speakers=tuple(f"{i:03d}" for i in range(1, 21)), shuffle_seed=7)
    b = make_masc(tmp_path / "b", speakers=tuple(f"{i:03d}" for i in range(1, 21)), shuffle_seed=8, package="renamed")
    ta, tb = load_quiet("mandarin_as", a), load_quiet("mandarin_as", b)
    pd.testing.assert_frame_equal(relative(ta, a), relative(tb, b))
    assert ta.split.tolist() == [hash_split(u, "mandarin_as") for u in ta.utt_id]
    s = load_quiet("mandarin_as", a, split="speaker")
    assert s.split.tolist() == [hash_split(spk, "mandarin_as") for spk in s.speaker]   # each speaker in one split
    assert set(s.split) == {"train", "valid", "test"}
    with pytest.raises(UserError, match="need both >= 0"):
        load_corpus("mandarin_as", a, valid_fraction=0.9, test_fraction=0.2)


# ------------------------------------------------------------------------------------------------------ general
def test_bad_names_roots_options(tmp_path):
    with pytest.raises(UserError,
                       match="unknown corpus 'timit'.*known: iemocap, msp_improv, msp_podcast, mandarin_as, esd, crema_d"):
        load_corpus("timit", tmp_path)
    with pytest.raises(UserError, match=f"root {tmp_path / 'missing'} not found"):
        load_corpus("esd", tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a folder"): load_corpus("esd", tmp_path / "file")
    make_masc(tmp_path)
    with pytest.raises(UserError, match="unknown option.*label_source; accepted: include_utterance"):
        load_corpus("mandarin_as", tmp_path, label_source="consensus")
    with pytest.raises(UserError, match="'raise' or 'skip'"): load_corpus("mandarin_as", tmp_path, errors="ignore")
    assert len(load_quiet("mandarin_aff", tmp_path)) == 30               # the paper's spelling
    make_msp_podcast(tmp_path / "pod", records=[("a.wav", "X", "1", "Male", "Train")])
    with pytest.raises(UserError, match="no utterances found"): load_corpus("msp_podcast", tmp_path / "pod")


def test_corpus_summary_against_crosstab(tmp_path):
    make_iemocap(tmp_path / "iemocap")
    make_esd(tmp_path / "esd")
    t = load_quiet("iemocap", tmp_path / "iemocap")
    s = corpus_summary(t, durations=True)
    ct = pd.crosstab(t.label, t.split).reindex(columns=list(SPLITS), fill_value=0)
    labels = [l for l in LABELS["iemocap"] if l in set(t.label)]
    assert s.index.tolist() == labels + ["total"]
    assert (s.loc[labels, list(SPLITS)].values == ct.loc[labels].values).all()
    assert s.loc["total", "total"] == len(t) and s.loc["total", "speakers"] == t.speaker.nunique() == 6
    assert s.loc["total", "languages"] == "en"
    assert abs(s.loc["total", "hours"] - sum(sf.info(p).duration for p in t.path) / 3600) < 1e-4
    both = corpus_summary(pd.concat([t, load_quiet("esd", tmp_path / "esd")]))
    assert both.loc[("esd", "total"), "languages"] == "en,zh" and both.loc[("esd", "total"), "total"] == 60
    assert "hours" not in both.columns


def test_inspect_command(tmp_path, capsys):
    make_iemocap(tmp_path)
    p = build_parser()   # `spft`: the inspect help reads its corpus options only when printed
    args = p.parse_args(["inspect", "iemocap", str(tmp_path), "--durations", "--option", "keep_codes=neu,ang",
                         "--option", "split=speaker"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "iemocap: 3 utterances, 3 speakers, languages en" in out and "hours" in out and "neutral" in out
    for argv, msg in ((["inspect", "timit", str(tmp_path)], "unknown corpus"),
                      (["inspect", "iemocap", str(tmp_path / "x")], "not found"),
                      (["inspect", "iemocap", str(tmp_path), "--option", "keep_codes"], "KEY=VALUE"),
                      (["inspect", "iemocap", str(tmp_path), "--option", "bogus=1"], "unknown option")):
        args = p.parse_args(argv)
        with pytest.raises(UserError, match=msg): args.func(args)
    with pytest.raises(SystemExit) as e: p.parse_args(["inspect", "--help"])
    assert e.value.code == 0 and "keep_codes" in capsys.readouterr().out


def test_parse_option():
    assert parse_option("include_utterance=True") == ("include_utterance", True)
    assert parse_option("valid_fraction=0.2") == ("valid_fraction", 0.2)
    assert parse_option("keep_codes=neu,ang") == ("keep_codes", "neu,ang")
    assert parse_option(" split = speaker ") == ("split", "speaker")


# ------------------------------------------------------------------------------------------------- real copies
def side_by_side(data, reverse=False):
    """The paper's data/ folder: every corpus side by side, roots as real copies name them. `reverse` puts MSP-IMPROV
    first and shallower than IEMOCAP (so a generic `session\d+` search would pick it for IEMOCAP)."""
    data = Path(data)
    roots = {"iemocap": make_iemocap(data / ("corpora/IEMOCAP_full_release" if reverse else "IEMOCAP_full_release")),
             "msp_improv": make_msp_improv(data / ("0_MSP-IMPROV" if reverse else "MSP-IMPROV"), evaluation=EVALUATION),
             "esd": make_esd(data, dataset_folder="Emotional Speech Dataset (ESD)"),
             "msp_podcast": make_msp_podcast(data / "MSP-PODCAST"),
             "mandarin_as": make_masc(data)}
    return roots


@pytest.mark.parametrize("reverse", [False, True])
def test_every_corpus_found_by_its_own_marks_side_by_side(tmp_path, reverse):
    roots = side_by_side(tmp_path / "data", reverse)
    for corpus, root in roots.items():
        own = load_quiet(corpus, root)
        pd.testing.assert_frame_equal(load_quiet(corpus, tmp_path / "data"), own)
        pd.testing.assert_frame_equal(load_quiet(corpus, tmp_path), own)          # one level higher still
        assert own.path.str.startswith(str(root.absolute())).all()
    t, msg = load_warned("msp_improv", tmp_path / "data", label_source="consensus", split="speaker")
    assert len(t) == 5 and t.path.str.contains("MSP-IMPROV").all()
    assert "1 wav files without an Evaluation.txt entry" in msg


def test_case_of_session_folders_does_not_decide(tmp_path):
    "IEMOCAP with lower-case session folders and MSP-IMPROV with capitalised ones are told apart by their contents."
    a = make_iemocap(tmp_path / "data" / "IEMOCAP")
    for s in (1, 2, 5): (a / f"Session{s}").rename(a / f"session{s}")
    b = make_msp_improv(tmp_path / "data" / "MSP-IMPROV")
    for s in sorted(b.iterdir()): s.rename(b / s.name.capitalize())
    n = sum(c not in ("xxx", "dis") for turns in IEMOCAP_DEFAULT.values() for _, c in turns)
    assert len(load_quiet("iemocap", tmp_path)) == n == 10 and len(load_quiet("msp_improv", tmp_path)) == 8


def test_several_copies_are_named(tmp_path):
    make_esd(tmp_path / "a")
    make_esd(tmp_path / "b" / "old", dataset_folder="ESD")
    with pytest.raises(UserError,
                       match=r"esd: 2 folders under .* hold speaker folders .*: "
                             r"a/Emotion Speech Dataset, b/old/ESD; pass"):
        load_corpus("esd", tmp_path, errors="skip")
    assert len(load_quiet("esd", tmp_path / "b")) == 60                              # one copy below b: fine
    make_iemocap(tmp_path / "IEMOCAP_full_release")
    make_iemocap(tmp_path / "x" / "IEMOCAP_full_release")
    with pytest.raises(UserError, match="iemocap: 2 folders .*: IEMOCAP_full_release, x/IEMOCAP_full_release"):
        load_corpus("iemocap", tmp_path)
    make_msp_podcast(tmp_path / "p1")
    make_msp_podcast(tmp_path / "p2", label_folder="label", labels="labels_consensus.json")
    with pytest.raises(UserError, match="msp_podcast: 2 folders .*: p1, p2"): load_corpus("msp_podcast", tmp_path)
    make_masc(tmp_path / "m1")
    make_masc(tmp_path / "m2", package=None)
    with pytest.raises(UserError,
                       match="mandarin_as: 2 folders .*: m2/man_aff_spch/data, m1/LDC2007S09/man_aff_spch/data"):
        load_corpus("mandarin_as", tmp_path)


def test_no_match_names_near_misses_or_sub_folders(tmp_path):
    make_iemocap(tmp_path / "data" / "IEMOCAP_full_release")
    with pytest.raises(UserError, match=r"msp_improv: no session1..session6 folders .*searched 3 levels down.*"
                                        r"look similar but lack these marks: data/IEMOCAP_full_release$"):
        load_corpus("msp_improv", tmp_path)
    make_msp_improv(tmp_path / "other" / "MSP-IMPROV")
    with pytest.raises(UserError, match=r"iemocap: no Session1..Session5 .*lack these marks: MSP-IMPROV$"):
        load_corpus("iemocap", tmp_path / "other")
    (tmp_path / "empty" / "x").mkdir(parents=True)
    (tmp_path / "empty" / "y").mkdir()
    with pytest.raises(UserError, match=r"esd: no speaker folders .*its sub-folders: x, y$"):
        load_corpus("esd", tmp_path / "empty")
    (tmp_path / "masc" / "001" / "boredom").mkdir(parents=True)
    with pytest.raises(UserError, match=r"mandarin_as: no data/<001..068> .*lack these marks: masc$"):
        load_corpus("mandarin_as", tmp_path)
    (tmp_path / "deep" / "a" / "b" / "c").mkdir(parents=True)
    make_iemocap(tmp_path / "deep" / "a" / "b" / "c" / "IEMOCAP")                 # 4 levels down: too deep
    with pytest.raises(UserError, match="no Session1..Session5"): load_corpus("iemocap", tmp_path / "deep")


def test_macos_zip_ghost_copy_is_not_a_second_copy(tmp_path):
    base = make_esd(tmp_path / "data")
    ghost = tmp_path / "data" / "__MACOSX" / base.name / "0001" / "Angry" / "train"
    ghost.mkdir(parents=True)
    (ghost / "._0001_000351.wav").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    assert len(load_quiet("esd", tmp_path)) == 60


def test_esd_root_named_like_the_release(tmp_path):
    base = make_esd(tmp_path / "downloads", speakers=("0003", "0013"), dataset_folder="Emotional Speech Dataset (ESD)",
                    transcripts="utf-16-le")
    t = load_quiet("esd", tmp_path)
    assert len(t) == 60 and t.path.str.contains(r"/Emotional Speech Dataset \(ESD\)/0003/").any()
    assert t.set_index("utt_id").loc["0003_000701", "transcript"] == "我真的很快乐，谢谢你们的礼物。"
    assert base.name == "Emotional Speech Dataset (ESD)"


def test_msp_improv_audio_level_evalution_spelling_from_above(tmp_path):
    root = make_msp_improv(tmp_path / "data" / "MSP-IMPROV", audio_folder="Audio", evaluation=EVALUATION,
                           evaluation_name="Evalution.txt")
    make_iemocap(tmp_path / "data" / "IEMOCAP_full_release")
    plain = make_msp_improv(tmp_path / "plain", evaluation=EVALUATION)
    for arg in (tmp_path / "data", root, root / "Audio"):
        got = load_warned("msp_improv", arg, label_source="consensus")[0]
        want = load_warned("msp_improv", plain, label_source="consensus")[0]
        pd.testing.assert_frame_equal(got.drop(columns="path"), want.drop(columns="path"))
        assert got.path.str.contains("/MSP-IMPROV/Audio/session").all()


@pytest.mark.parametrize("folder,labels", [("Labels", "labels_consensus.json"), ("label", "labels_concensus.json"),
                                           ("label", "labels_consensus.csv"), ("Labels", "labels_concensus.json")])
def test_msp_podcast_json_and_label_folder_read_like_the_csv(tmp_path, folder, labels):
    csv_t = load_quiet("msp_podcast", make_msp_podcast(tmp_path / "csv"))
    other = make_msp_podcast(tmp_path / "other" / "MSP-PODCAST", label_folder=folder, labels=labels, audio="Audio")
    assert not (other / folder / "labels_consensus.csv").exists() or labels.endswith(".csv")
    t = load_quiet("msp_podcast", tmp_path / "other")
    pd.testing.assert_frame_equal(t.drop(columns="path"), csv_t.drop(columns="path"))
    assert t.set_index("utt_id").loc["MSP-PODCAST_0003_0001", "speaker"] == "0012"   # a string id stays as written
    assert t.set_index("utt_id").loc["MSP-PODCAST_0004_0001", "speaker"] == "7"      # a JSON number becomes its text


def test_msp_podcast_json_structure_matches_public_loaders(tmp_path):
    "The JSON we read is what public loaders read: json.load(f) -> {file name: {EmoClass, EmoAct, ..., Split_Set}}."
    import json
    root = make_msp_podcast(tmp_path, labels="labels_consensus.json")
    data = json.loads((root / "Labels" / "labels_consensus.json").read_text())
    t = load_quiet("msp_podcast", root).set_index("utt_id")
    kept = {f: a for f, a in data.items() if a["EmoClass"] != "X"}
    assert sorted(Path(f).stem for f in kept) == t.index.tolist()
    for f, a in kept.items():
        r = t.loc[Path(f).stem]
        assert (r.code, r.split_set, r.speaker, r.gender, r.arousal) == \
            (a["EmoClass"], a["Split_Set"], str(a["SpkrID"]), a["Gender"], a["EmoAct"])


def test_msp_podcast_json_bad_input(tmp_path):
    root = make_msp_podcast(tmp_path, labels="labels_consensus.json", extra_json={
        "MSP-PODCAST_0100_0001.wav": {"EmoClass": "Z", "EmoAct": 1, "EmoVal": 1, "EmoDom": 1, "SpkrID": 3,
                                      "Gender": "Male", "Split_Set": "Train"},
        "MSP-PODCAST_0100_0002.wav": {"EmoClass": "N", "SpkrID": 3},
        "MSP-PODCAST_0100_0003.wav": ["N", 3, "Train"],
        "MSP-PODCAST_0100_0004.wav": {"EmoClass": "N", "SpkrID": 3, "Split_Set": "Holdout"},
        "MSP-PODCAST_0100_0005.wav": {"EmoClass": "N", "SpkrID": 3, "Split_Set": "Train"}})
    lf = root / "Labels" / "labels_consensus.json"
    key_line = {m.group(1): i for i, l in enumerate(lf.read_text().splitlines(), 1)
                if (m := re.match(r'^    "([^"]+)": ', l))}
    assert len(key_line) == len(PODCAST_DEFAULT) + 5
    line_z = key_line["MSP-PODCAST_0100_0001.wav"]
    with pytest.raises(UserError, match=rf"labels_consensus\.json:{line_z}: unknown EmoClass 'Z'"):
        load_corpus("msp_podcast", root)
    t, msg = load_warned("msp_podcast", root, errors="skip")
    assert len(t) == 9 and "skipped 5 entries" in msg and "2 unparsable label line" in msg and "1 unknown split" in msg
    line_2 = key_line["MSP-PODCAST_0100_0002.wav"]
    assert f"labels_consensus.json:{line_2}: entry 'MSP-PODCAST_0100_0002.wav' lacks Split_Set" in msg
    assert "1 missing audio" in msg and "1 unknown label code" in msg
    text = lf.read_text()
    lf.write_text(text[:200] + "\n,,\n" + text[200:])
    bad_line = text[:200].count("\n") + 2
    with pytest.raises(UserError, match=rf"labels_consensus\.json:{bad_line}: not valid JSON"):
        load_corpus("msp_podcast", root, errors="skip")
    lf.write_text('[{"FileName": "MSP-PODCAST_0001_0008.wav"}]')
    with pytest.raises(UserError,
                       match=r"labels_consensus\.json: expected a JSON object keyed by file name, found a list"):
        load_corpus("msp_podcast", root)
    lf.write_text(text)
    (root / "Labels" / "labels_concensus.csv").write_text(PODCAST_HEADER + "\n" + "\n".join(
        f"{f},{c},2.2,4.0,2.6,{s},{g},{ss}" for f, c, s, g, ss in PODCAST_DEFAULT) + "\n")
    assert len(load_quiet("msp_podcast", root)) == 9   # a CSV is read first when both exist
    lf.unlink()
    (root / "Labels" / "labels_concensus.csv").unlink()
    with pytest.raises(UserError,
                       match=r"labels_consensus\.csv \(or labels_concensus\.csv\) not found, "
                             r"nor labels_consensus\.json"):
        load_corpus("msp_podcast", root)


# ------------------------------------------------------------------------------- CREMA-D, RAVDESS, EmoDB (issue 12)
def _skipped(name, root, **options):
    "load_corpus with errors='skip': the table and the one warning's text."
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t = load_corpus(name, root, errors="skip", **options)
    msgs = [str(x.message) for x in w if issubclass(x.category, CorpusWarning)]
    assert len(msgs) == 1, msgs
    return t, msgs[0]


def test_crema_d(tmp_path):
    root = make_crema_d(tmp_path / "CREMA-D")
    t, _ = _skipped("crema_d", tmp_path)                                # found below the given folder
    assert t.utt_id.tolist() == sorted(CREMA_D_DEFAULT) and list(t.columns[:7]) == list(COLUMNS)
    r = t.set_index("utt_id").loc["1002_IEO_FEA_LO"]
    assert (r.speaker, r.label, r.intensity, r.sentence, r.gender, r.age, r.language) == \
        ("1002", "fear", "low", "IEO", "F", 21, "en")
    assert set(t.label) == set(LABELS["crema_d"]) and t.speaker.nunique() == 3
    assert load_corpus("cremad", root / "AudioWAV", errors="skip").utt_id.tolist() == t.utt_id.tolist()   # alias
    assert "gender" not in load_corpus("crema_d", make_crema_d(tmp_path / "nodemo", demographics=False),
                                       errors="skip").columns


@pytest.mark.parametrize("name, kind, msg", [
    ("1001_DFA_ANG.wav", "bad file name", "1001_DFA_ANG.wav: expected <actor>_<sentence>"),
    ("1001_XYZ_ANG_XX.wav", "bad file name", "1001_XYZ_ANG_XX.wav: expected"),
    ("1001_DFA_ANG_QQ.wav", "bad file name", "1001_DFA_ANG_QQ.wav: expected"),
    ("1001_DFA_CAL_XX.wav", "unknown label code", "1001_DFA_CAL_XX.wav: unknown emotion code 'CAL'"),
    ("1092_DFA_ANG_XX.wav", "unknown speaker", "actor 1092 is not one of 1001-1091")])
def test_crema_d_bad_input(tmp_path, name, kind, msg):
    make_crema_d(tmp_path, extra=(name,))
    with pytest.raises(UserError, match=re.escape(msg)): load_corpus("crema_d", tmp_path)
    t, warning = _skipped("crema_d", tmp_path)
    assert len(t) == len(CREMA_D_DEFAULT) and f"skipped 1 entry (1 {kind}, e.g." in warning


def test_crema_d_lfs_pointers_and_empty(tmp_path):
    make_crema_d(tmp_path / "clone", lfs=("1003_DFA_HAP_XX", "1003_DFA_SAD_XX"))
    with pytest.raises(UserError, match=r"1003_DFA_HAP_XX.wav: a git-lfs pointer, not audio \(run `git lfs pull`"):
        load_corpus("crema_d", tmp_path / "clone")
    assert "2 git-lfs pointers" in _skipped("crema_d", tmp_path / "clone")[1]
    (tmp_path / "empty" / "AudioWAV").mkdir(parents=True)
    with pytest.raises(UserError, match="crema_d: no utterances found"): load_corpus("crema_d", tmp_path / "empty")
    (tmp_path / "none" / "Audio").mkdir(parents=True)
    with pytest.raises(UserError, match="crema_d: no an AudioWAV/ folder under"): load_corpus("crema_d", tmp_path / "none")


def test_ravdess(tmp_path):
    make_ravdess(tmp_path)
    t, warning = _skipped("ravdess", tmp_path)
    assert t.utt_id.tolist() == sorted(RAVDESS_DEFAULT)
    assert "6 song or video files (skipped)" in warning and not warning.startswith("ravdess: skipped")   # a note only
    r = t.set_index("utt_id").loc["03-01-05-02-02-01-01"]
    assert (r.speaker, r.gender, r.label, r.intensity, r.statement, r.repetition) == ("01", "M", "angry", "strong", 2, 1)
    assert t.set_index("speaker").gender.to_dict() == {"01": "M", "12": "F", "24": "F"}
    assert set(t.label) == {"neutral", "angry", "calm", "surprise", "fear", "disgust"}
    s = load_corpus("ravdess", tmp_path, errors="skip", split="speaker", valid_fraction=0.4, test_fraction=0.4)
    assert (s.groupby("speaker").split.nunique() == 1).all()
    assert s.split.tolist() == [hash_split(x, "ravdess", 0.4, 0.4) for x in s.speaker]


@pytest.mark.parametrize("folder, name, kind, msg", [
    ("Actor_01", "03-01-05-01-01-01.wav", "bad file name", "03-01-05-01-01-01.wav: expected modality-channel"),
    ("Actor_01", "04-01-05-01-01-01-01.wav", "bad file name", "expected modality"),
    ("Actor_01", "03-01-01-02-01-01-01.wav", "bad file name", "neutral has no strong intensity"),
    ("Actor_01", "03-01-09-01-01-01-01.wav", "unknown label code", "unknown emotion '09'"),
    ("Actor_02", "03-01-05-01-01-01-01.wav", "actor mismatch", "actor 01 in the name but the folder is Actor_02"),
    ("Actor_25", "03-01-05-01-01-01-25.wav", "bad file name", "actors 01-24")])
def test_ravdess_bad_input(tmp_path, folder, name, kind, msg):
    make_ravdess(tmp_path, songs=False, videos=False, extra=[(folder, name)])
    with pytest.raises(UserError, match=re.escape(msg)): load_corpus("ravdess", tmp_path)
    t, warning = _skipped("ravdess", tmp_path)
    assert len(t) == len(RAVDESS_DEFAULT) and f"skipped 1 entry (1 {kind}, e.g." in warning


def test_ravdess_song_only_duplicate_tree_and_empty(tmp_path):
    make_ravdess(tmp_path / "songs", stems=(), extra=[("Actor_03", "03-02-03-01-01-01-03.wav")])
    with pytest.raises(UserError, match="ravdess: no utterances found"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_corpus("ravdess", tmp_path / "songs")
    make_ravdess(tmp_path / "kaggle")
    make_ravdess(tmp_path / "kaggle" / "audio_speech_actors_01-24")               # the same tree again, one level down
    assert len(_skipped("ravdess", tmp_path / "kaggle")[0]) == len(RAVDESS_DEFAULT)
    make_ravdess(tmp_path / "two" / "a")
    make_ravdess(tmp_path / "two" / "b")
    with pytest.raises(UserError, match="2 folders under .* hold Actor_01..Actor_24 folders: a, b"):
        load_corpus("ravdess", tmp_path / "two")
    (tmp_path / "empty" / "Actor_01").mkdir(parents=True)
    with pytest.raises(UserError, match="ravdess: no utterances found"): load_corpus("ravdess", tmp_path / "empty")


def test_emodb(tmp_path):
    make_emodb(tmp_path / "EmoDB")
    t = load_corpus("emodb", tmp_path, errors="skip")
    assert t.utt_id.tolist() == sorted(EMODB_DEFAULT) and set(t.language) == {"de"}
    by = t.set_index("utt_id")
    assert by.loc["08a02Ab", ["speaker", "label", "text", "version", "gender", "age"]].tolist() == \
        ["08", "fear", "a02", "b", "F", 34]                                             # A = Angst = fear
    assert by.label.to_dict() == {"03a01Fa": "happy", "03a01Wa": "angry", "08a02Ab": "fear", "09b10Nc": "neutral",
                                  "10b01Ta": "sad", "11a04Fd": "happy", "16a05La": "boredom", "16a07Ea": "disgust"}
    flat = load_corpus("emodb", make_emodb(tmp_path / "flat", flat=True), errors="skip")
    assert flat.drop(columns="path").equals(t.drop(columns="path"))


@pytest.mark.parametrize("name, kind, msg", [
    ("03a01Za.wav", "unknown label code", "03a01Za.wav: unknown emotion letter 'Z'"),
    ("04a01Fa.wav", "unknown speaker", "speaker 04 is not one of 03 08"),
    ("03a03Fa.wav", "bad file name", "03a03Fa.wav: expected <speaker><text a01..b10>"),
    ("03a01F.wav", "bad file name", "03a01F.wav: expected")])
def test_emodb_bad_input(tmp_path, name, kind, msg):
    make_emodb(tmp_path, extra=(name,))
    with pytest.raises(UserError, match=re.escape(msg)): load_corpus("emodb", tmp_path)
    t, warning = _skipped("emodb", tmp_path)
    assert len(t) == len(EMODB_DEFAULT) and f"skipped 1 entry (1 {kind}, e.g." in warning
    (tmp_path / "empty" / "wav").mkdir(parents=True)
    with pytest.raises(UserError, match="emodb: no EmoDB WAV files"): load_corpus("emodb", tmp_path / "empty")


# ----------------------------------------------------------------------------------- generic: manifest and EmoBox
def test_manifest_and_emobox_round_trip_ravdess(tmp_path):
    "A native table written as a manifest (CSV, TSV, JSONL) and as EmoBox metadata loads back to the same rows."
    make_ravdess(tmp_path / "RAVDESS", songs=False, videos=False)
    native = load_corpus("ravdess", tmp_path / "RAVDESS", errors="skip")
    cols = list(COLUMNS)
    for sep, suffix in ((",", "csv"), ("\t", "tsv")):
        t = native[cols].assign(path=[str(Path(p).relative_to(tmp_path)) for p in native.path])
        t.to_csv(tmp_path / f"ravdess.{suffix}", sep=sep, index=False)
        back = load_corpus("manifest", tmp_path / f"ravdess.{suffix}", corpus="ravdess")
        pd.testing.assert_frame_equal(back[cols], native[cols])
    native[cols].to_json(tmp_path / "m.jsonl", orient="records", lines=True)            # absolute paths
    pd.testing.assert_frame_equal(load_corpus("manifest", tmp_path / "m.jsonl", corpus="ravdess")[cols], native[cols])
    base = tmp_path / "emobox" / "data" / "ravdess"
    (base / "fold_1").mkdir(parents=True)
    (base / "label_map.json").write_text('{"01": "Neutral", "02": "Calm", "05": "Angry", "06": "Fear", "07": "Disgust", '
                                         '"08": "Surprise"}')
    (base / "corpus.cfg").write_text("[Corpus]\nname = ravdess\nlanguage = en\n")
    code = {v: k for k, v in {"01": "neutral", "02": "calm", "05": "angry", "06": "fear", "07": "disgust",
                              "08": "surprise"}.items()}
    (base / "data.seg.wrd.stm").write_text("".join(f"{r.utt_id} 1 {r.speaker} 0 1.0 <id={r.utt_id},spk={r.speaker},"
                                                   f"emotion={code[r.label]}> {code[r.label]}\n" for r in native.itertuples()))
    for split in SPLITS:
        (base / "fold_1" / f"ravdess_{split}_fold_1.jsonl").write_text("".join(
            json.dumps(dict(key=r.utt_id, dataset="ravdess", wav=str(Path(r.path).relative_to(tmp_path)), type="raw",
                            length=0.1, emo=code[r.label], channel=1)) + "\n"
            for r in native[native.split == split].itertuples()))
    box = load_corpus("emobox", tmp_path / "emobox", audio_root=tmp_path)
    pd.testing.assert_frame_equal(box[cols], native[cols])


def test_manifest_bad_lines_counted(tmp_path):
    for p in ("a.wav", "b.wav", "c.wav"): wav(tmp_path / "audio" / p)
    m = tmp_path / "list.tsv"
    m.write_text("path\tlabel\tspeaker\tsplit\tlanguage\n"
                 "audio/a.wav\tHappy\ts1\ttrain\tfr\n"
                 "audio/b.wav\tsad\ts1\n"                                # 3 fields
                 "audio/zz.wav\tsad\ts2\ttest\tfr\n"                     # missing audio
                 "audio/c.wav\tsad\t\ttest\tfr\n"                        # empty speaker
                 "audio/c.wav\tsad\ts2\teval\tfr\n"                      # unknown split
                 "audio/c.wav\tsad\ts2\tdev\tfr\n")
    with pytest.raises(UserError, match=r"list.tsv:3: 3 fields, expected 5"): load_corpus("manifest", m)
    t, warning = _skipped("manifest", m)
    assert t[["utt_id", "label", "split", "language", "corpus"]].values.tolist() == \
        [["a", "happy", "train", "fr", "list"], ["c", "sad", "valid", "fr", "list"]]
    assert "skipped 4 entries" in warning and "list.tsv:4: audio" in warning and "list.tsv:6: split 'eval'" in warning
    with pytest.raises(UserError, match=r"list.tsv:2: label 'Happy' is not one of sad"):
        load_corpus("manifest", m, labels="sad")


# ------------------------------------------------------------------------------- a third-party corpus, end to end
def test_entry_point_corpus_through_spft_inspect(tmp_path):
    "An installed package's entry point adds a corpus that `spft inspect` reads (a fresh process reads the group)."
    plug = tmp_path / "site"
    (plug / "toy_corpora-1.0.dist-info").mkdir(parents=True)
    (plug / "toy_corpora-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-corpora\nVersion: 1.0\n")
    (plug / "toy_corpora-1.0.dist-info" / "entry_points.txt").write_text(
        "[speech_prefinetune.corpora]\ntoy = toy_corpora:register\n")
    (plug / "toy_corpora.py").write_text(
        "from pathlib import Path\n"
        "from speech_prefinetune.core import register_corpus\n"
        "def rows(root, problems, shout=False):\n"
        "    return [dict(corpus='toy', utt_id=f.stem, path=str(f), speaker=f.stem[:2], language='sv',\n"
        "                 label=('GLAD' if shout else 'glad') if 'g' in f.stem else 'arg', split='train')\n"
        "            for f in sorted(Path(root).glob('*.wav'))]\n"
        "def register():\n"
        "    register_corpus('toy', rows, labels=('glad', 'arg'), language='sv', aliases=('toy-corpus',))\n")
    for n in ("s1g", "s1a", "s2g"): wav(tmp_path / "data" / f"{n}.wav")
    env = {**os.environ, "PYTHONPATH": str(plug)}
    spft = [str(Path(sys.executable).parent / "spft")]
    run = lambda *a: subprocess.run(spft + list(a), capture_output=True, text=True, env=env)
    r = run("inspect", "toy-corpus", str(tmp_path / "data"))
    assert r.returncode == 0, r.stderr
    assert "toy: 3 utterances, 2 speakers, languages sv" in r.stdout and "glad" in r.stdout
    r = run("inspect", "toy", str(tmp_path / "data"), "--option", "shout=true")
    assert r.returncode == 2 and "label(s) GLAD are not among its registered labels (glad, arg)" in r.stderr
    r = subprocess.run(spft + ["inspect", "toy", str(tmp_path / "data")], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown corpus 'toy'" in r.stderr                   # not installed: not known
