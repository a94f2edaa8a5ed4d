"""Pieces every trainer shares: device choice, seeding, EMA, learning-rate schedules, atomic
checkpoints that resume, and divergence detection."""

from __future__ import annotations

import copy
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
    """``torch.save`` of a dict of state dicts and plain values, written atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors only, ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a ddgan_core checkpoint ({type(err).__name__}: "
            f"{err}). Delete it to retrain, or restore it from the result cache / git."
        ) from err


def half_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with floating tensors in fp16 (for small committed checkpoints)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


class DivergenceError(RuntimeError):
    """Training produced a NaN/inf or an exploding loss; the last good checkpoint is kept."""


def check_finite(step: int, losses: dict[str, float], limit: float = 1e4) -> None:
    """Raise :class:`DivergenceError` when a loss is NaN, infinite or above ``limit``."""
    for name, value in losses.items():
        if not math.isfinite(value) or abs(value) > limit:
            raise DivergenceError(
                f"training diverged at step {step}: {name}={value}. The last good checkpoint is "
                "kept; lower the learning rate, raise the gradient clipping or R1 weight, and "
                "resume."
            )
