"""Pieces every trainer shares: device choice, seeding, EMA, learning-rate schedules, atomic
checkpoints that resume, and divergence detection."""

from __future__ import annotations

import copy
import io
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} requested but CUDA is not available; use 'cpu'")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (a no-op on CPU); bracket every timing with it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_context(device: torch.device):
    """bf16 autocast on CUDA; a no-op on CPU (bf16 is slower than fp32 on CPUs without AMX)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


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


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save`` of a dict of state dicts and plain values, written atomically.

    The bytes go to a uniquely named hidden temporary file beside ``path`` and replace it in one
    rename (:func:`ddgan_core.cache.atomic_write_bytes`), so a reader, a second writer or a
    ``kill -9`` never leaves a torn file: ``path`` holds either the old or the new checkpoint.
    """
    from .cache import atomic_write_bytes

    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the hidden ``.*.tmp`` files a killed writer left in ``folder``; returns the count."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors only, ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a ddgan_core checkpoint ({type(err).__name__}: "
            f"{first_line}); delete it to retrain, or restore it from the result cache or git"
        ) from None


def half_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with floating tensors in fp16 (for small committed checkpoints)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


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
