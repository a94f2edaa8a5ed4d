"""The one command line (``ddgan_core.cli``): every command's ``--help``, ``--version``, usage
errors in one line, the older entry points on the same parsers, and ``train ddgan`` then
``sample`` end to end."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_data

import ddgan_core
from ddgan_core import book, cli, sweep
from ddgan_core.metrics import evaluate, features

COMMANDS = ("data", "profiles", "train", "sample", "eval", "book", "sweep", "reproduce", "unpack",
            "promote")

#: (command path, words its --help must show: options, positionals, sub-commands)
HELP = [
    (["data"], ["--download", "--apt", "--root", "dataset-fashion-mnist", "MD5"]),
    (["profiles"], ["smoke", "cpu", "full"]),
    (["train"], ["classifier", "ddpm", "ddgan"]),
    (["train", "classifier"], ["--epochs", "--seed", "--device", "--threads", "--out",
                               "--manifest", "--overwrite-pinned"]),
    (["train", "ddpm"], ["--profile", "--set", "--out", "--cache-dir", "--device", "resumes"]),
    (["train", "ddgan"], ["--profile", "--set", "--out", "--cache-dir", "--device",
                          "generator_ema.safetensors"]),
    (["sample"], ["--checkpoint", "--steps", "--sampler", "--eta", "--n", "--seed",
                  "--batch-size", "--device", "--out", "model_ema.safetensors",
                  "generator_ema.safetensors"]),
    (["eval"], ["--samples", "--n", "--k", "--range", "--json", "--inception", "--device",
                "--cache-dir", "0..255"]),
    (["book"], ["--profile", "--set", "--only", "--book-dir", "--cache-dir", "--no-build"]),
    (["sweep"], ["notebook", "--param", "--profile", "--out"]),
    (["reproduce"], ["--profile", "--set", "--only", "--archive", "--cache-dir",
                     "--budget-minutes"]),
    (["unpack"], ["archive", "--cache-dir", "corrupt"]),
    (["promote"], ["NAME/KEY", "--all", "--cache-dir", "results/"]),
]


@pytest.mark.parametrize("path, words", HELP, ids=[" ".join(p) for p, _ in HELP])
def test_every_command_has_a_help_that_describes_its_options(path, words, capsys):
    assert cli.main([*path, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"usage: python -m ddgan_core {' '.join(path)}")
    for word in words:
        assert word in out, (word, out)


def _parsers(parser: argparse.ArgumentParser, path=()):
    """Every parser of the command line with its command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_and_command_has_help_text():
    seen = set()
    for path, parser in _parsers(cli.build_parser()):
        seen.add(path)
        assert parser.description, path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), path
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                assert action.help, (path, action.dest)
    assert seen == {(), *((c,) for c in COMMANDS),
                    ("train", "classifier"), ("train", "ddpm"), ("train", "ddgan")}


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ddgan_core {ddgan_core.__version__}"


def test_top_level_help_lists_each_command_once():
    out = subprocess.run([sys.executable, "-m", "ddgan_core", "--help"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    first_words = [line.split()[0] for line in out.splitlines() if line.strip()]
    for command in COMMANDS:
        assert first_words.count(command) == 1, (command, out)
    assert "{" not in out  # no second listing of the commands as a choice set


@pytest.mark.parametrize("argv, words", [
    ([], ["COMMAND", "required"]),
    (["nope"], ["'nope'", "reproduce"]),
    (["train"], ["train", "MODEL", "required"]),
    (["train", "ddpm"], ["train ddpm", "--profile"]),
    (["train", "ddpm", "--profile", "tiny"], ["'tiny'", "smoke"]),
    (["sample", "--n", "4"], ["--checkpoint", "--out"]),
    (["sample", "--checkpoint", "m.pt", "--n", "four", "--out", "s.npz"], ["--n", "'four'"]),
    (["eval"], ["--samples"]),
    (["eval", "--samples", "s.npz", "--range", "0255"], ["--range", "'0255'"]),
    (["profiles", "--bogus"], ["--bogus"]),
])
def test_usage_errors_are_one_line_and_exit_2(argv, words, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "usage:" not in captured.out + captured.err
    for word in words:
        assert word in err, (word, err)


def test_sweep_needs_a_profile(monkeypatch, capsys):
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("sweep started"))
    argv = ["sweep", "notebooks/01_forward_process", "-p", "forward_timesteps", "20"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sweep:") and "--profile" in err and "\n" not in err
    calls = []
    monkeypatch.setattr(sweep, "run_sweep", lambda *a: calls.append(a))
    assert cli.main([*argv, "--profile", "cpu"]) == 0
    assert calls == [("notebooks/01_forward_process", {"forward_timesteps": [20]}, "cpu", None)]


def test_the_older_entry_points_share_the_parsers(capsys):
    """``python -m ddgan_core.book``, ``cli_eval`` and ``cli_train_classifier`` parse with the
    command line's parsers: the same help, the same options."""
    pairs = [(book.main, ["book"]), (evaluate.cli_eval, ["eval"]),
             (features.cli_train_classifier, ["train", "classifier"])]
    for entry, path in pairs:
        assert cli.main([*path, "--help"]) == 0
        expected = capsys.readouterr().out
        try:
            assert entry(["--help"]) == 0  # book.main returns ...
        except SystemExit as done:  # ... the others exit like argparse
            assert done.code == 0
        assert capsys.readouterr().out == expected
    sources = {path.name for path in Path(cli.__file__).parent.rglob("*.py")
               if "import argparse" in path.read_text()}
    assert sources == {"cli.py", "browsercheck.py"}  # browsercheck: a test tool, no command


def test_book_entry_point_exit_status(monkeypatch, capsys):
    monkeypatch.setattr(book, "execute_notebook", lambda *a, **k: pytest.fail("chapter ran"))
    assert book.main(["--profile", "nope"]) == 2  # a malformed command line
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: book:") and "'nope'" in err and "\n" not in err
    assert book.main(["--only", "no_such_chapter", "--no-build"]) == 1  # the run refused it
    assert "no_such_chapter" in capsys.readouterr().err


def test_book_command_runs_the_book(monkeypatch, capsys, tmp_path):
    calls = []

    def run(*args, **kwargs):
        calls.append((args, kwargs))
        return tmp_path / "_build" / "html"

    monkeypatch.setattr(book, "run", run)
    argv = ["book", "--profile", "smoke", "--set", "seed=1", "--only", "01_forward_process",
            "--book-dir", str(tmp_path), "--no-build"]
    assert cli.main(argv) == 0
    assert calls == [(("smoke", {"seed": 1}, ["01_forward_process"], tmp_path, None),
                      {"build": False})]
    assert "index.html" in capsys.readouterr().out


@needs_data
@pytest.mark.data
def test_train_ddgan_smoke_then_sample(tmp_path, capsys):
    out = tmp_path / "gan"
    assert cli.main(["train", "ddgan", "--profile", "smoke", "--out", str(out)]) == 0
    assert f"checkpoint: {out / 'generator_ema.safetensors'}" in capsys.readouterr().out
    samples = tmp_path / "s.npz"
    done = subprocess.run(
        [sys.executable, "-m", "ddgan_core", "sample", "--checkpoint",
         str(out / "generator_ema.safetensors"), "--n", "6", "--seed", "1", "--out",
         str(samples)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "6 images, NFE 4" in done.stdout
    saved = np.load(samples)
    assert saved["images"].shape == (6, 28, 28) and saved["images"].dtype == np.uint8
    assert str(saved["model"]) == "ddgan" and int(saved["steps"]) == int(saved["nfe"]) == 4
    assert (str(saved["precision"]), bool(saved["compile"])) == ("auto", False)
    in_bf16 = tmp_path / "bf16.npz"
    assert cli.main(["sample", "--checkpoint", str(out / "generator_ema.safetensors"), "--n",
                     "6", "--seed", "1", "--precision", "bf16", "--out", str(in_bf16)]) == 0
    saved = np.load(in_bf16)
    assert str(saved["precision"]) == "bf16" and saved["images"].shape == (6, 28, 28)
