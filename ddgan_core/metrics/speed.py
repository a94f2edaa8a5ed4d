"""Sampling-speed harness: seconds per image and images per second for a sampler."""

from __future__ import annotations

import statistics
import time

import torch

from ..device import default_device, device_name, synchronize
from ..training import progress_bar


def measure_speed(
    sampler,
    n_images: int,
    batch_size: int,
    nfe: int,
    device=None,
    warmup: int = 1,
    repeats: int = 3,
    progress: bool = True,
) -> dict:
    """Time ``sampler(b) -> images`` generating ``n_images`` in batches of ``batch_size``.

    ``warmup`` untimed batches run first; then ``repeats`` timed passes over ``n_images``, each
    bracketed by ``torch.cuda.synchronize()`` on GPU. Figures are medians over the repeats.
    ``nfe`` (network function evaluations per image, as the sampler defines it) is recorded and
    used for ``seconds_per_nfe`` (per batch-evaluation: seconds per batch / NFE). A progress
    bar over the repeats (updated outside the timed passes) shows on a terminal unless
    ``progress`` is false; ``device_name`` is the GPU's name or the CPU model, as result
    manifests record it.
    """
    if n_images < 1 or batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError("n_images, batch_size and repeats must be >= 1, warmup >= 0")
    device = torch.device(device or default_device())
    sizes = [batch_size] * (n_images // batch_size)
    if n_images % batch_size:
        sizes.append(n_images % batch_size)
    dtype = None
    with torch.no_grad():
        for _ in range(warmup):
            out = sampler(batch_size)
            dtype = getattr(out, "dtype", dtype)
        synchronize(device)
        times = []
        for _ in progress_bar(range(repeats), desc="speed", enabled=progress, unit="repeat"):
            synchronize(device)
            t0 = time.perf_counter()
            for size in sizes:
                out = sampler(size)
            synchronize(device)
            times.append(time.perf_counter() - t0)
            dtype = getattr(out, "dtype", dtype)
    total = statistics.median(times)
    n_batches = len(sizes)
    return {
        "seconds_per_image": total / n_images,
        "images_per_s": n_images / total,
        "seconds_total": total,
        "seconds_per_nfe": total / n_batches / nfe if nfe else None,
        "repeat_seconds": times,
        "nfe": nfe,
        "n_images": n_images,
        "batch_size": batch_size,
        "warmup": warmup,
        "repeats": repeats,
        "device": str(device),
        "device_name": device_name(device),
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }


__all__ = ["measure_speed", "device_name"]
