"""Every cached experiment of the book, by name, and ``reproduce``: all of a profile at once.

Each experiment takes a resolved profile (see :mod:`ddgan_core.profiles`), picks the keys it
depends on into its configuration, and returns a verified :class:`~ddgan_core.cache.Result`
from the cache, computing it only when missing. Notebooks call the same functions, so the book
and ``python -m ddgan_core reproduce`` produce the same entries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .cache import Result, ResultCache
from .profiles import get_profile


def dataset_statistics(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Pixel statistics and class counts of both FashionMNIST splits (files MD5-verified)."""
    config = {"profile": profile["profile"], "dataset": "fashion-mnist", "verify_md5": True}

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        from .data import CLASS_NAMES, load_fashion_mnist_uint8

        metrics: dict[str, Any] = {"class_names": list(CLASS_NAMES)}
        for split in ("train", "test"):
            images, labels = load_fashion_mnist_uint8(split)
            pixels = images.double().div(255.0)
            metrics[split] = {
                "n_images": int(images.shape[0]),
                "image_shape": list(images.shape[1:]),
                "pixel_mean": float(pixels.mean()),
                "pixel_std": float(pixels.std()),
                "class_counts": torch.bincount(labels, minlength=10).tolist(),
            }
        return metrics

    return (cache or ResultCache()).load_or_run("dataset_statistics", config, compute)


EXPERIMENTS: dict[str, Callable[[dict[str, Any], ResultCache | None], Result]] = {
    "dataset_statistics": dataset_statistics,
}


def reproduce(
    profile: str,
    overrides: dict[str, Any] | None = None,
    only: list[str] | None = None,
    cache: ResultCache | None = None,
) -> list[Result]:
    """Compute (or load) every experiment of ``profile``; returns their results in order."""
    config = get_profile(profile, **(overrides or {}))
    names = list(EXPERIMENTS)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown experiment(s) {unknown}; valid: {names}")
        names = [n for n in names if n in only]
    cache = cache or ResultCache()
    results = []
    for index, name in enumerate(names, 1):
        print(f"[{index}/{len(names)}] {name} ...", flush=True)
        result = EXPERIMENTS[name](config, cache)
        state = "computed" if result.computed else "cached"
        print(f"[{index}/{len(names)}] {name}: {state} at {result.path}", flush=True)
        results.append(result)
    return results
