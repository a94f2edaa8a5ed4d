"""Where computations run: the one place that picks a device, describes it and waits for it.

- :func:`default_device` / :func:`pick_device`: CUDA when available, else the CPU; an explicit
  CUDA device on a machine without one is an error naming the fix.
- :func:`device_description`: ``"cuda:<GPU name>"`` or ``"cpu:<CPU model>"``, the form result
  manifests record under ``device``; :func:`device_name` is the part after the colon.
- :func:`synchronize`: wait for queued GPU work, so that a timer measures the work itself.
- :func:`channels_last`: run a convolutional network in the channels-last memory layout for the
  duration of a sampling loop, then give it back as it was.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["channels_last", "default_device", "device_description", "device_name", "pick_device",
           "synchronize", "to_channels_last"]


def default_device() -> str:
    """``"cuda"`` when a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else :func:`default_device`; refuses CUDA where there is none."""
    if device is None:
        return torch.device(default_device())
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} requested but CUDA is not available; use 'cpu'")
    return device


def device_description(device: str | torch.device | None = None) -> str:
    """``"cuda:<GPU name>"`` or ``"cpu:<CPU model>"`` of ``device`` (default: the picked one)."""
    device = torch.device(device or default_device())
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{_cpu_model()}"


def device_name(device: str | torch.device | None = None) -> str:
    """The GPU's name, or the CPU model: :func:`device_description` without its type prefix."""
    return device_description(device).split(":", 1)[1]


def _cpu_model() -> str:
    """The ``model name`` of ``/proc/cpuinfo``, else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synchronize(device: str | torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (a no-op on CPU); bracket every timing with it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def channels_last(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` with its 4-D weights in the channels-last (NHWC) layout inside the block, back in
    the default layout after it (so a trainer's optimizer state and ``safetensors`` files, which
    need contiguous tensors, never see the change).

    Convolutions then run in oneDNN's native layout: on this project's 2-core CPU a forward
    pass of the book's UNet in it took about 0.9x the time at batch 16 (one thread) and 0.7x at
    batch 1,000 (two threads); ``benchmarks/bench_unet.py --batch B`` prints the ratio for both
    layouts. Feed inputs through :func:`to_channels_last`; the values differ from the default
    layout's only by float rounding.
    """
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the channels-last layout if it is an image batch (N, C, H, W), else unchanged
    (see :func:`channels_last`)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
