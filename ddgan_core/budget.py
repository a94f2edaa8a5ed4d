"""Training for a wall-clock budget: how many steps fit in M minutes on this device.

An equal-compute comparison gives two methods the same device and the same minutes, not the
same number of steps: a DDGAN step (two discriminator updates, a generator update) costs more
than a DDPM step. Both trainers decay their learning rate over a known number of steps, so a
budget cannot simply cut training short: :func:`calibrate_steps` first times a few steps of the
real run (same networks, batch, threads, and whatever else runs beside it), and the run then
trains for ``floor(budget / seconds_per_step)`` steps with its schedule spanning them.

The calibration is written to the run's working directory (``budget.json``) before training
starts, so a resumed run trains for the same number of steps as the interrupted one. The
training seconds actually spent are measured and reported next to the budget.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .cache import write_json_atomic

__all__ = ["BUDGET_FILE", "calibrate_steps", "images_per_step", "num_threads", "planned_steps",
           "steps_for_budget"]

#: The calibration of a budgeted run, kept in its working directory.
BUDGET_FILE = "budget.json"


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (0: leave as is), then restore."""
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def calibrate_steps(
    train: Callable[..., dict[str, Any]],
    config: dict[str, Any],
    steps_key: str,
    budget_s: float,
    workdir: Path,
    *,
    warmup_steps: int = 4,
    timed_steps: int = 12,
) -> dict[str, Any]:
    """Time ``timed_steps`` steps of ``train`` (after ``warmup_steps``) in a scratch folder and
    return the budget's plan: ``seconds_per_step`` (median of the per-step times) and ``steps``.

    ``train(config, workdir, progress=..., stop_after=..., log_every=1, checkpoint_every=0)`` is
    :func:`~ddgan_core.ddpm.train_ddpm` or :func:`~ddgan_core.ddgan.train_ddgan`; its history
    has one entry per step with that step's throughput (``images_per_s``), which
    :func:`images_per_step` turns into seconds. The scratch folder is deleted.
    """
    scratch = Path(workdir) / "calibration"
    shutil.rmtree(scratch, ignore_errors=True)
    probe = {**config, steps_key: 10 ** 9}  # a schedule as long as any budget's
    start = time.perf_counter()
    metrics = train(probe, scratch, progress=False, stop_after=warmup_steps + timed_steps,
                    log_every=1, checkpoint_every=0)
    probe_seconds = time.perf_counter() - start
    shutil.rmtree(scratch, ignore_errors=True)
    per_step = [images_per_step(config, steps_key) / h["images_per_s"]
                for h in metrics["history"][warmup_steps:] if h.get("images_per_s")]
    if not per_step:
        raise RuntimeError("budget calibration logged no step times")
    seconds = statistics.median(per_step)
    return {"budget_s": float(budget_s), "seconds_per_step": seconds,
            "steps": steps_for_budget(budget_s, seconds), "timed_steps": len(per_step),
            "calibration_seconds": probe_seconds, "threads": torch.get_num_threads()}


def images_per_step(config: dict[str, Any], steps_key: str) -> int:
    """Real images one training step consumes (DDGAN: a batch per discriminator update)."""
    if steps_key.startswith("distill_"):
        return int(config["distill_batch_size"])
    if steps_key.startswith("ddgan_"):
        return int(config["ddgan_batch_size"]) * int(config["ddgan_d_steps"])
    return int(config["ddpm_batch_size"])


def steps_for_budget(budget_s: float, seconds_per_step: float) -> int:
    """``floor(budget_s / seconds_per_step)``, at least 1."""
    if not (budget_s > 0 and seconds_per_step > 0):
        raise ValueError(f"budget {budget_s} s and {seconds_per_step} s/step must be > 0")
    return max(1, math.floor(budget_s / seconds_per_step))


def planned_steps(
    train: Callable[..., dict[str, Any]],
    config: dict[str, Any],
    steps_key: str,
    budget_s: float,
    workdir: Path,
) -> dict[str, Any]:
    """The plan in ``workdir/budget.json`` if an interrupted run left one, else a new
    :func:`calibrate_steps`, written there before training starts."""
    path = Path(workdir) / BUDGET_FILE
    if path.exists():
        try:
            plan = json.loads(path.read_text())
            if float(plan["budget_s"]) == float(budget_s) and int(plan["steps"]) >= 1:
                return plan
        except (OSError, ValueError, KeyError, TypeError):
            pass
        raise ValueError(f"{path} is unreadable or for another budget; delete the run's "
                         ".partial folder to calibrate and train again")
    plan = calibrate_steps(train, config, steps_key, budget_s, workdir)
    write_json_atomic(path, plan)
    return plan
