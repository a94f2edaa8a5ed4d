"""Bad input on the command line: each case exits non-zero with one line that names the
parameter and what is allowed, no traceback, and before any long work (training, sampling,
feature extraction or notebook execution would fail the test here)."""

from __future__ import annotations

import gzip
import subprocess
import sys

import pytest
import torch

from ddgan_core import book, cli, ddgan, ddpm
from ddgan_core.checkpoint import save_checkpoint
from ddgan_core.metrics import evaluate


@pytest.fixture(autouse=True)
def no_long_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("long work started before the input was checked")

    for module, name in [(ddpm, "train_ddpm"), (ddgan, "train_ddgan"), (ddpm, "ddpm_sample"),
                         (ddgan, "ddgan_sample"), (evaluate, "evaluate_samples"),
                         (book, "execute_notebook")]:
        if hasattr(module, name):
            monkeypatch.setattr(module, name, forbidden)


@pytest.fixture
def files(tmp_path):
    """A DDGAN training state, a random-bytes file, a plain file and a missing folder."""
    paths = {
        "random": tmp_path / "random.pt",
        "file": tmp_path / "plain.txt",
        "gan_state_dir": tmp_path / "gan_run",
        "missing_dir": tmp_path / "missing" / "s.npz",
        "npz_out": tmp_path / "s.npz",
        "not_gzip": tmp_path / "results.tar.gz",
        "dir": tmp_path,
    }
    paths["random"].write_bytes(bytes(range(256)) * 16)
    paths["file"].write_text("x\n")
    paths["not_gzip"].write_bytes(b"not an archive")
    paths["truncated"] = tmp_path / "cut.tar.gz"
    paths["truncated"].write_bytes(gzip.compress(b"x" * 4096)[:20])
    paths["npz_dir"] = tmp_path / "d.npz"
    paths["npz_dir"].mkdir()
    paths["gan_state_dir"].mkdir()
    save_checkpoint(paths["gan_state_dir"] / "checkpoint.pt",
                    {"format": ddgan.CHECKPOINT_FORMAT, "trainer": {}})
    save_checkpoint(tmp_path / "gan_state.pt", {"format": ddgan.CHECKPOINT_FORMAT})
    paths["gan_state"] = tmp_path / "gan_state.pt"
    return paths


SMOKE = ["--profile", "smoke"]

#: (argv with {placeholders} from the ``files`` fixture, words the one-line error must contain)
CASES = [
    (["eval", "--samples", "{npz_out}", "--bootstrap", "1"], ["--bootstrap 1", ">= 2"]),
    (["train", "ddpm", *SMOKE, "--equal-budget", "--out", "{dir}"],
     ["--equal-budget", "--out"]),
    (["train", "ddgan", *SMOKE, "--set", "ddgan_r1_convention=karras"],
     ["ddgan_r1_convention", "stylegan2"]),
    (["train", "classifier", "--second", "--device", "cuda"], ["--second", "CPU"]),
    (["sample", "--checkpoint", "{random}", "--n", "4", "--steps", "0", "--out", "{npz_out}"],
     ["--steps 0", ">= 1"]),
    (["sample", "--checkpoint", "{random}", "--n", "4", "--eta", "0.5", "--out", "{npz_out}"],
     ["--eta 0.5", "ddim"]),
    (["sample", "--checkpoint", "{random}", "--n", "4", "--sampler", "ddim", "--eta", "2",
      "--out", "{npz_out}"], ["--eta 2", "[0, 1]"]),
    (["sample", "--checkpoint", "{random}", "--n", "-5", "--out", "{npz_out}"], ["--n -5", ">= 1"]),
    (["sample", "--checkpoint", "{random}", "--n", "4", "--out", "{missing_dir}"],
     ["does not exist"]),
    (["sample", "--checkpoint", "{random}", "--n", "4", "--out", "{npz_dir}"],
     ["--out", "is a folder"]),
    (["sample", "--checkpoint", "{random}", "--n", "4", "--out", "{npz_out}"], ["corrupt"]),
    (["sample", "--checkpoint", "{gan_state}", "--n", "4", "--out", "{npz_out}"],
     ["training state", "generator_ema.safetensors"]),
    (["sample", "--checkpoint", "{dir}/nope.pt", "--n", "4", "--out", "{npz_out}"],
     ["not found"]),
    (["train", "ddpm", *SMOKE, "--out", "{file}"], ["is a file"]),
    (["train", "ddgan", *SMOKE, "--out", "{file}"], ["is a file"]),
    (["train", "ddpm", *SMOKE, "--set", "ddpm_timesteps=20"], ["num_timesteps=20", ">= 21"]),
    (["train", "ddpm", *SMOKE, "--set", 'ddpm_attention=["x"]'], ["attention", "7"]),
    (["train", "ddpm", *SMOKE, "--set", "ddpm_train_steps=abc"], ["ddpm_train_steps", "int"]),
    (["train", "ddpm", *SMOKE, "--set", "ddpm_trian_steps=5"], ["ddpm_trian_steps", "valid"]),
    (["train", "ddpm", *SMOKE, "--device", "cuda:7"], ["cuda"]),
    (["train", "gan", *SMOKE], ["'gan'", "ddgan"]),
    (["unpack", "{not_gzip}"], ["gzip"]),
    (["unpack", "{truncated}"], ["truncated"]),
    (["unpack", "{dir}"], ["folder"]),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(c[0][:3]) + f" #{i}"
                                                      for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_naming_the_parameter(argv, words, files, capsys, monkeypatch):
    if any("cuda" in a for a in argv) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:") and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def test_ddgan_state_in_a_ddpm_folder_is_one_line(files, capsys, monkeypatch):
    """The real trainer (not the stand-in) refuses another model's training state in one line."""
    monkeypatch.undo()
    from ddgan_core import data

    monkeypatch.setattr(data, "load_fashion_mnist",
                        lambda *a, **k: (torch.zeros(16, 1, 28, 28), torch.zeros(16)))
    code = cli.main(["train", "ddpm", *SMOKE, "--out", str(files["gan_state_dir"])])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "not a DDPM training checkpoint" in err


def test_a_real_process_exits_2_with_one_line(files):
    """The same path through ``python -m ddgan_core`` (exit status and stderr of a process)."""
    out = subprocess.run(
        [sys.executable, "-m", "ddgan_core", "sample", "--checkpoint", str(files["random"]),
         "--n", "4", "--steps", "0", "--out", str(files["npz_out"])],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --steps 0: must be >= 1 (omit it for all T steps)"]
