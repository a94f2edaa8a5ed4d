"""Pieces every trainer shares: EMA, learning-rate schedules, the training loop with its
resumable checkpoints and progress bar, and divergence detection.

Both trainers (:func:`ddgan_core.ddpm.train_ddpm`, :func:`ddgan_core.ddgan.train_ddgan`) take
the same arguments, ``(config, workdir, device=None, progress=True, data=None, *,
stop_after=None, checkpoint_every=None, log_every=None, max_seconds=None)``, and run their steps
through :func:`run_training_loop`. Checkpoint files are written and read by
:mod:`ddgan_core.checkpoint` and devices picked by :mod:`ddgan_core.device`; both are re-exported
here for code written against this module.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import (  # noqa: F401 - re-exported for code written against this module
    CheckpointError,
    half_state_dict,
    load_checkpoint,
    one_line,
    remove_stale_temporaries,
    require_format,
    save_checkpoint,
)
from .device import autocast_context, pick_device, synchronize  # noqa: F401 - re-exported


class EMA:
    """Exponential moving average of a model's parameters (buffers copied as they are)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay={decay} must be in [0, 1)")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up for ``warmup`` steps, then cosine decay to ``floor``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class DivergenceError(RuntimeError):
    """Training produced a NaN/inf or an exploding loss; the last good checkpoint is kept."""


def global_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states that layers such as dropout draw from (CPU, and CUDA on ``device``).

    Saved in training checkpoints so that a resumed run draws the same dropout masks as an
    uninterrupted one.
    """
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_global_rng_state(state: dict[str, torch.Tensor] | None, device: torch.device) -> None:
    """Restore what :func:`global_rng_state` saved (``None``: a checkpoint without it; no-op)."""
    if not state:
        return
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def check_weights_finite(step: int, models: dict[str, nn.Module],
                         probes: dict[str, float] | None = None, limit: float = 1e4) -> None:
    """Refuse to checkpoint weights that are already broken.

    A loss is computed *before* the update it drives, so a finite loss says nothing about the
    weights the update produced. Before a checkpoint is written this checks those weights: every
    parameter finite, and ``probes`` (losses or outputs of the new weights on a fixed batch,
    computed by the trainer without touching its RNGs) finite and below ``limit``. Raises
    :class:`DivergenceError`, so the previous, good checkpoint stays in place.
    """
    for name, model in models.items():
        for pname, param in model.named_parameters():
            if not torch.isfinite(param).all():
                raise DivergenceError(
                    f"training diverged at step {step}: {name}.{pname} holds NaN/inf. The last "
                    "good checkpoint is kept; lower the learning rate, raise the gradient "
                    "clipping or R1 weight, and resume."
                )
    check_finite(step, probes or {}, limit)


def check_finite(step: int, losses: dict[str, float], limit: float = 1e4) -> None:
    """Raise :class:`DivergenceError` when a loss is NaN, infinite or above ``limit``."""
    for name, value in losses.items():
        if not math.isfinite(value) or abs(value) > limit:
            raise DivergenceError(
                f"training diverged at step {step}: {name}={value}. The last good checkpoint is "
                "kept; lower the learning rate, raise the gradient clipping or R1 weight, and "
                "resume."
            )


class TrainingPaused(RuntimeError):
    """A computation stopped with its training state saved before the end; rerunning it
    resumes from the checkpoint."""


# --------------------------------------------------------------------------------------------
# the loop both trainers share
# --------------------------------------------------------------------------------------------


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str,
                 enabled: bool = True, **options: Any):
    """A tqdm bar that clears itself when done (``leave=False``) and shows only on a terminal:
    disabled when ``enabled`` is false or stderr is not a terminal (tqdm's ``disable=None``).
    The plain text bar, not ``tqdm.auto``: in a notebook kernel without ipywidgets the widget bar
    prints a warning into the executed chapter."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False,
                disable=None if enabled else True, dynamic_ncols=True, **options)


def prepare_workdir(workdir: str | os.PathLike) -> Path:
    """Create the training folder ``workdir`` (refusing a file there) and delete the hidden
    temporary files a killed writer left in it."""
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"workdir {workdir} is a file; give a folder to train into")
    workdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(workdir)
    return workdir


def checkpoint_cadence(argument: int | None, config: Mapping[str, Any], key: str) -> int:
    """Steps between checkpoints: ``argument``, else ``config[key]`` (0 or absent: none but
    the ones written when the loop stops or ends). The cadence changes no number, so it is an
    argument and not part of a run's configuration."""
    every = int(config.get(key, 0) or 0) if argument is None else int(argument)
    if every < 0:
        raise ValueError(f"checkpoint_every={every} must be >= 0 (0: only when stopping)")
    return every


def resume_state(path: Path, fmt: str, what: str, device: torch.device) -> dict | None:
    """The training state at ``path`` when there is one (``None`` otherwise), which must carry
    the format tag ``fmt``; else a one-line :class:`CheckpointError` calling it not ``what``."""
    if not path.exists():
        return None
    return require_format(load_checkpoint(path, device), fmt, path, what)


@contextlib.contextmanager
def restoring(path: Path, what: str) -> Iterator[None]:
    """Turn a failure to load a saved state into networks and optimisers into a one-line
    :class:`CheckpointError`: ``path`` does not fit ``what``."""
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} does not fit {what} ({one_line(err)}); train into "
                              "another folder or delete it") from None


@dataclass(frozen=True)
class LoopEnd:
    """How :func:`run_training_loop` ended: ``finished`` (all steps done), the ``steps`` and
    the wall time ``seconds`` of this call."""

    finished: bool
    steps: int
    seconds: float


def run_training_loop(
    train_step: Callable[[], int],
    save: Callable[[int, float], None],
    log: Callable[[int], Mapping[str, str]],
    *,
    start: int,
    total: int,
    desc: str,
    progress: bool = True,
    log_every: int,
    checkpoint_every: int,
    stop_after: int | None = None,
    max_seconds: float | None = None,
) -> LoopEnd:
    """Run a trainer's steps from ``start`` to ``total``, logging, checkpointing and stopping.

    ``train_step()`` does one optimisation step and returns the number of completed steps;
    ``log(step)`` is called every ``log_every`` steps and at the last one (it appends a history
    entry, checks the interval's losses with :func:`check_finite` and returns the progress
    bar's postfix); ``save(step, seconds)`` writes the resumable state and must first check the
    new weights with :func:`check_weights_finite`, so that a checkpoint on disk is always a good
    one. It is called every ``checkpoint_every`` steps (0: never in between), at the last step
    and when the loop stops early.

    The loop stops early, with a checkpoint, once ``stop_after`` steps of the run are done (the
    run's absolute step count, steps of earlier calls included, so a call with the same
    ``stop_after`` after an interruption stops at the same step; a run already there does no
    step) or when this call has run ``max_seconds``. A :class:`DivergenceError` raised by any
    of the three callbacks propagates, leaving the last good checkpoint on disk.
    """
    if log_every < 1:
        raise ValueError(f"log_every={log_every} must be >= 1")
    if stop_after is not None and stop_after < 0:
        raise ValueError(f"stop_after={stop_after} must be >= 0 (the run's step to stop at)")
    step = begin_step = start
    end = total if stop_after is None else min(total, stop_after)
    began = time.perf_counter()
    with progress_bar(total=total, initial=start, desc=desc, unit="step",
                      enabled=progress and start < end) as bar:
        while step < end:
            step = train_step()
            if step % log_every == 0 or step == total:
                bar.set_postfix(log(step), refresh=False)
            bar.update(1)
            elapsed = time.perf_counter() - began
            stop = step == end or (max_seconds is not None and elapsed >= max_seconds)
            if stop or (checkpoint_every and step % checkpoint_every == 0):
                save(step, elapsed)
            if stop:
                break
    return LoopEnd(finished=step >= total, steps=step - begin_step,
                   seconds=time.perf_counter() - began)
