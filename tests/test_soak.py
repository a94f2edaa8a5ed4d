"""Soak: training through the command line, killed with SIGKILL at random moments and rerun
until it finishes, ends with the same weights, bit for bit, as one uninterrupted run.

``make test`` runs a short version (``SOAK_KILLS`` kills per case, default 2). The full soak:
``SOAK_KILLS=20 SOAK_FULL=1 pytest tests/test_soak.py -s`` (also the DDGAN through the result
cache, with its FID evaluations between training chunks); it prints the counts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import needs_data

from ddgan_core.checkpoint import MODEL_FILES, load_checkpoint, read_model_file

KILLS = int(os.environ.get("SOAK_KILLS", "2"))
FULL = os.environ.get("SOAK_FULL") == "1"

#: model -> (--set overrides, product file). DDPM with dropout on (its RNG must resume too).
#: Runs long enough for KILLS kills to land mid-training (a run killed at most KILLS times).
RUNS = {
    "ddpm": ([f"ddpm_train_steps={200 + 20 * KILLS}", "ddpm_checkpoint_every=10",
              "ddpm_dropout=0.1"], MODEL_FILES["ddpm"]),
    "ddgan": ([f"ddgan_train_steps={30 + 8 * KILLS}", "ddgan_checkpoint_every=2"],
              MODEL_FILES["ddgan"]),
}
#: Seconds from the start of a process to its kill, drawn uniformly.
DELAYS = {"ddpm": (2.0, 7.0), "ddgan": (4.0, 11.0)}
CASES = [("ddpm", "out"), ("ddpm", "cache"), ("ddgan", "out")] + (
    [("ddgan", "cache")] if FULL else [])


def _command(model: str, where: str, folder: Path) -> list[str]:
    overrides = [a for item in RUNS[model][0] for a in ("--set", item)]
    target = ["--out", str(folder)] if where == "out" else ["--cache-dir", str(folder)]
    return [sys.executable, "-m", "ddgan_core", "train", model, "--profile", "smoke",
            *overrides, *target]


def _env(folder: Path) -> dict[str, str]:
    # one thread: the same arithmetic in every run; the cache of FID statistics kept apart
    return {**os.environ, "OMP_NUM_THREADS": "1", "DDGAN_CACHE_DIR": str(folder / "stats"),
            "TQDM_DISABLE": "1"}


def _product(model: str, folder: Path) -> Path:
    found = sorted(folder.rglob(RUNS[model][1]))
    assert len(found) == 1, found
    return found[0]


def _weights(model: str, path: Path) -> dict[str, torch.Tensor]:
    return read_model_file(path)[0]


def _checkpoint_step(folder: Path) -> int:
    found = [p for p in folder.rglob("checkpoint.pt")]
    if not found:
        return 0
    state = load_checkpoint(found[0])  # a torn file would raise here
    return int(state["step"] if "step" in state else state["trainer"]["step"])


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    out = {}
    for model in RUNS:
        folder = tmp_path_factory.mktemp(f"straight_{model}")
        subprocess.run(_command(model, "out", folder), env=_env(folder), check=True,
                       capture_output=True, timeout=600)
        out[model] = _weights(model, _product(model, folder))
    return out


@needs_data
@pytest.mark.parametrize("model, where", CASES)
def test_killed_training_resumes_to_the_same_weights(model, where, baselines, tmp_path):
    rng = random.Random(f"{model}-{where}-{KILLS}")
    folder = tmp_path / "run"
    kills, kills_with_checkpoint, steps_after_kill = 0, 0, []
    while True:
        process = subprocess.Popen(_command(model, where, folder), env=_env(folder),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < KILLS:
            # past the start-up (imports, data) most of the time: DDGAN's first steps are slower
            deadline = time.monotonic() + rng.uniform(*DELAYS[model])
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        if kills < KILLS and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            step = _checkpoint_step(folder)
            kills_with_checkpoint += step > 0
            assert step >= max(steps_after_kill, default=0), "a checkpoint went back in time"
            steps_after_kill.append(step)
            continue
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()[-2000:]
        break
    weights = _weights(model, _product(model, folder))
    expected = baselines[model]
    assert weights.keys() == expected.keys()
    differing = [k for k in weights if not torch.equal(weights[k], expected[k])]
    assert not differing, f"{len(differing)} tensors differ after {kills} kills"
    leftovers = [p.name for p in folder.rglob(".*.tmp")]
    print(f"\nsoak {model} via {where}: {kills} kills ({kills_with_checkpoint} after a "
          f"checkpoint existed; checkpoint steps after each kill {steps_after_kill}), final "
          f"weights identical ({len(weights)} tensors); stray temporaries left: {leftovers}")
