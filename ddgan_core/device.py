"""Where computations run: the one place that picks a device, describes it and waits for it.

- :func:`default_device` / :func:`pick_device`: CUDA when available, else the CPU; an explicit
  CUDA device on a machine without one is an error naming the fix.
- :func:`device_description`: ``"cuda:<GPU name>"`` or ``"cpu:<CPU model>"``, the form result
  manifests record under ``device``; :func:`device_name` is the part after the colon.
- :func:`synchronize`: wait for queued GPU work, so that a timer measures the work itself.
- :func:`channels_last`: run a convolutional network in the channels-last memory layout for the
  duration of a sampling loop, then give it back as it was.
- :func:`autocast_context`: the precision a network runs in (:data:`PRECISIONS`).
- :func:`sampling_network`: the three together with an optional ``torch.compile``: how every
  sampler of the project calls its network.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "autocast_context", "channels_last", "check_precision", "default_device",
           "device_description", "device_name", "pick_device", "quiet_compiler", "sampling_network",
           "synchronize", "to_channels_last"]

#: ``auto``: bf16 autocast on CUDA, float32 on the CPU (what every committed result used);
#: ``fp32``: float32 everywhere; ``bf16``: bf16 autocast on either device (CPUs with AVX-512
#: BF16 or AMX run its matmuls and convolutions at about twice the float32 rate).
PRECISIONS = ("auto", "fp32", "bf16")


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


@contextmanager
def quiet_compiler(active: bool = True) -> Iterator[None]:
    """While ``active``, keep ``torch.compile``'s notices off stderr: the Python warnings raised
    in ``torch._dynamo`` / ``torch._inductor`` and the warnings of the logger of
    ``torch.utils.cpp_extension`` ("No CUDA runtime is found" on a CPU machine), which would
    otherwise show as error output in an executed notebook. Errors still show."""
    if not active:
        yield
        return
    import logging
    import warnings

    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"torch\._(dynamo|inductor)")
            yield
    finally:
        logger.setLevel(level)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ``ValueError`` naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is unknown; allowed: {list(PRECISIONS)}")
    return precision


def autocast_context(device: str | torch.device, precision: str = "auto"
                     ) -> torch.autocast:
    """The autocast region for ``precision`` (:data:`PRECISIONS`) on ``device``: bf16 on CUDA
    and float32 on the CPU for ``auto``; a disabled region for ``fp32``."""
    device = torch.device(device)
    check_precision(precision)
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@contextmanager
def sampling_network(model: torch.nn.Module, device: str | torch.device, *,
                     precision: str = "auto", compile: bool = False
                     ) -> Iterator[Callable[..., torch.Tensor]]:
    """``model`` as a sampling loop calls it: in channels-last (:func:`channels_last`; feed
    inputs through :func:`to_channels_last`), under :func:`autocast_context` for ``precision``,
    compiled with ``torch.compile`` (inductor, static shapes) when ``compile``; yields a callable
    with the model's signature whose output is float32.

    Compiling costs about 30 s per network and input shape on this project's 2-core CPU (a C++
    compiler is needed there) and pays only over thousands of network evaluations; it is off by
    default.
    Weights are inputs of the compiled graph, not constants, so a model that trains between two
    calls samples with its current weights. ``benchmarks/bench_unet.py`` prints what each of
    layout, precision and compilation gives on the machine it runs on.
    """
    check_precision(precision)
    with channels_last(model), quiet_compiler(compile):
        net = torch.compile(model, dynamic=False) if compile else model

        def run(*args: torch.Tensor) -> torch.Tensor:
            with autocast_context(device, precision):
                return net(*args).float()

        yield run
