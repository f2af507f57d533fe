"""`spft` answers --help and user errors without the heavy modules (issue 10, item 8): each case runs `spft ARGS` in a
fresh process that reports which of torch, transformers, altair and pandas it imported. Also: every flag `spft` had
before its options were generated from the configs still parses, and the choices `config` declares for the command
line are those the modules use."""
import subprocess, sys

import pytest

from speech_prefinetune.cli import build_parser
from speech_prefinetune.core import registered_corpora

HEAVY = ("torch", "transformers", "altair", "pandas")
PROBE = f"""import sys
from speech_prefinetune.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as e:
    status = e.code
print("imported:", *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)
sys.exit(status)"""


def spft(*args):
    "`spft ARGS` in a fresh process: (exit status, stdout, stderr without the probe's line, heavy modules imported)."
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    *err, probe = r.stderr.rstrip("\n").split("\n")
    assert probe.startswith("imported:"), r.stderr
    return r.returncode, r.stdout, "\n".join(err), probe.split()[1:]


@pytest.mark.parametrize("args", [("--help",), ("synth", "--help"), ("prefinetune", "--help"), ("fewshot", "--help"),
                                  ("report", "--help"), ("reproduce", "--help"), ("demo", "--help"),
                                  ("corpora", "--help")])
def test_help_imports_nothing_heavy(args):
    status, out, err, heavy = spft(*args)
    assert status == 0 and out.startswith("usage: spft"), err
    assert heavy == [], f"spft {' '.join(args)} imported {heavy}"


def test_inspect_help_lists_corpus_options_without_torch():
    "The corpus options come from the loaders' signatures: `corpora` (pandas) is imported, torch is not."
    status, out, err, heavy = spft("inspect", "--help")
    assert status == 0 and "msp_improv: label_source=target" in out, err
    assert "torch" not in heavy and "transformers" not in heavy


@pytest.mark.parametrize("args, says", [
    (("fewshot", "--bogus"), "the following arguments are required: --models, --results"),
    (("fewshot", "--models", "m", "--esd", "e", "--results", "r", "--bogus"), "unrecognized arguments: --bogus"),
    (("prefinetune",), "the following arguments are required: --corpora, --roots, --out"),
    (("synth", "out", "--size", "huge"), "argument --size: invalid choice: 'huge'"),
    (("synth", "out", "--quirk", "nope"), "argument --quirk: invalid choice: 'nope'"),
    (("fewshot", "--models", "m", "--esd", "e", "--results", "r", "--lr-schedule", "cosine"),
     "invalid choice: 'cosine'"),
    (("fewshot", "--models", "m", "--esd", "e", "--results", "r", "--executor", "pbs"), "invalid choice: 'pbs'"),
    (("prefinetune", "--corpora", "x", "--roots", "r", "--out", "o", "--option", "label_source=x"),
     "expected CORPUS.KEY=VALUE"),
    (("prefinetune", "--corpora", "x", "--roots", "r", "--out", "o", "--grad-clip", "big"),
     "invalid float value: 'big'"),
    (("reproduce", "--roots", "r", "--out", "o", "--crop", "end"), "argument --crop: invalid choice: 'end'"),
    (("inspect",), "the following arguments are required: NAME, ROOT"),
    (("report",), "the following arguments are required: results"),
    (("demo", "--workers", "two"), "invalid int value: 'two'"),
    (("nosuchcommand",), "invalid choice: 'nosuchcommand'"),
])
def test_user_error_exits_2_without_heavy_imports(args, says):
    status, out, err, heavy = spft(*args)
    assert status == 2 and says in err, err
    assert heavy == [], f"spft {' '.join(args)} imported {heavy}"


# every flag of `spft` before its options were generated from the config dataclasses (issue 10, item 4)
FLAGS = dict(
    synth="--size --seed --corpora --esd-layout --podcast-audio-dir --quirk --quiet",
    inspect="--durations --option --errors",
    prefinetune="--corpora --roots --encoder --out --max-epochs --patience --seed --batch-seconds --batch-size "
                "--eval-batch-seconds --lr --warmup-epochs --max-seconds --max-eval-seconds --gradient-checkpointing "
                "--task-sampling --tasks-per-step --select-on --max-steps-per-epoch --projector-dim --train-cnn "
                "--device --no-bf16 --num-workers --cache-dir --keep-checkpoint --errors --option --quiet",
    fewshot="--models --esd --results --speakers --emotions --k --trials --max-epochs --patience --paper-code-schedule "
            "--lr --batch-size --eval-batch-size --eval-batch-seconds --stack --max-seconds --crop --seed --executor "
            "--workers --threads --cache-dir --device --partition --time --gpus --mem --cpus --quiet",
    report="--out --formats --n-boot",
    demo="--out --full --seed --workers --quiet",
)
FLAGS["reproduce"] = FLAGS["prefinetune"] + (
    " --subsets --speakers --emotions --k --trials --trial-max-epochs --trial-patience --paper-code-schedule "
    "--trial-lr --trial-batch-size --trial-eval-batch-size --trial-eval-batch-seconds --stack --trial-max-seconds "
    "--crop --executor --workers --threads --partition --time --gpus --mem --cpus --dry-run --stop-after "
    "--calibration-steps --calibration-seconds --header-files --assume-prefinetune-epochs --assume-best-epoch")


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_every_old_flag_is_still_an_option(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    options = set(capsys.readouterr().out.replace(",", " ").replace("[", " ").replace("]", " ").split())
    missing = [flag for flag in FLAGS[command].split() if flag not in options]
    assert missing == [], f"spft {command} lost {missing}"


def test_the_clis_choices_are_the_modules():
    "`config` declares what the parsers offer without importing `synth` or `fewshot`; they must agree."
    from speech_prefinetune import config, core, fewshot, synth
    assert set(config.SYNTH_SIZES) == set(synth.SIZES)
    from speech_prefinetune import cli, model
    assert cli.TINY_ENCODER_NAMES == model.TINY_ENCODERS   # what `--encoder`'s help lists
    assert set(cli.CORPORA) | set(cli.SYNTH_ON_REQUEST) == set(synth.SYNTH_CORPORA)   # what `spft synth --corpora` lists
    assert core.LABELS["esd"] == tuple(fewshot.ESD_EMOTIONS)


def test_corpora_lists_every_registered_corpus():
    "`spft corpora` prints one row per registered corpus, with its labels."
    status, out, err, _ = spft("corpora")
    assert status == 0, err
    names = [line.split()[0] for line in out.splitlines()[2:]]
    assert names == list(registered_corpora())
    assert "neutral,calm,happy,sad,angry,fear,disgust,surprise" in out   # RAVDESS's labels
