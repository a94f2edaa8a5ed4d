"""All sample-quality metrics in one call, and the ``eval`` command line.

``evaluate_samples(samples)`` takes generated images from a tensor, an ``.npz`` file, a folder
of PNGs or a sampler callable and returns FID, KID, precision, recall, density and coverage on
the project's FashionMNIST features, each beside the real-data floor at the same sample count,
with the extractor's name, checksum and test accuracy (and Inception FID when its weights are
present).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .features import (
    EXTRACTOR_NAME,
    FEATURE_DIM,
    default_device,
    extract_features,
    get_feature_extractor,
    load_manifest,
)
from .fid import (
    REFERENCE_SUBSET,
    fid_floor,
    fid_from_features,
    inception_fid,
    kid,
    real_subset,
    reference_radii,
    reference_stats,
)
from .prdc import compute_prdc

_FLOAT_EXPECTED = "float images in [-1, 1] of shape [N, 1, 28, 28] or uint8 [N, (1,) 28, 28]"


def _array_to_model(images, source: str) -> torch.Tensor:
    from ddgan_core.data import uint8_to_model

    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{source}: expected {_FLOAT_EXPECTED}, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.ndim != 3:
            raise ValueError(
                f"{source}: expected {_FLOAT_EXPECTED}, got uint8 {tuple(images.shape)}"
            )
        return uint8_to_model(images)
    if images.ndim == 3 and images.is_floating_point():
        images = images[:, None]
    return images


def load_samples(source, n: int | None = None, batch_size: int = 1000) -> torch.Tensor:
    """Generated images as float32 ``[N, 1, 28, 28]`` in [-1, 1] (CPU) from any source:

    * a tensor or numpy array (float in [-1, 1], or uint8 0..255);
    * a path to an ``.npz`` file with key ``images`` (uint8 ``[N, 28, 28]`` / ``[N, 1, 28, 28]``,
      or float in [-1, 1]), or to an ``.npy`` file;
    * a folder of PNG files (read in sorted name order as 8-bit grayscale);
    * a sampler callable ``fn(b) -> tensor in [-1, 1]``, called in batches of ``batch_size``
      until ``n`` images exist (``n`` is then required).

    ``n`` keeps the first ``n`` images; asking for more than the source holds is an error.
    """
    if callable(source) and not isinstance(source, (torch.Tensor, np.ndarray)):
        if n is None:
            raise ValueError("n (the number of images to draw) is required for a sampler")
        chunks, have = [], 0
        while have < n:
            b = min(batch_size, n - have)
            out = source(b)
            if not isinstance(out, torch.Tensor) or out.shape[0] != b:
                raise ValueError(
                    f"sampler(b) must return a tensor with b={b} images, got "
                    f"{getattr(out, 'shape', type(out).__name__)}"
                )
            chunks.append(out.detach().float().cpu())
            have += b
        images = torch.cat(chunks)
    elif isinstance(source, (str, os.PathLike)):
        images = _load_path(Path(source))
    else:
        images = _array_to_model(source, "samples")
    if n is not None:
        if images.shape[0] < n:
            raise ValueError(f"asked for n={n} images but the source holds {images.shape[0]}")
        images = images[:n]
    return images.float() if images.is_floating_point() else images


def _load_path(path: Path) -> torch.Tensor:
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        if not files:
            raise ValueError(f"{path}: folder holds no .png files")
        arrays = []
        for file in files:
            with Image.open(file) as img:
                arr = np.asarray(img.convert("L"))
            if arr.shape != (28, 28):
                raise ValueError(f"{file}: expected a 28x28 image, got {arr.shape}")
            arrays.append(arr)
        return _array_to_model(np.stack(arrays), str(path))
    if not path.is_file():
        raise FileNotFoundError(f"samples not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "images" not in z.files:
                raise ValueError(f"{path}: no key 'images' (keys: {z.files})")
            return _array_to_model(z["images"], str(path))
    if path.suffix == ".npy":
        return _array_to_model(np.load(path), str(path))
    raise ValueError(f"{path}: expected an .npz file (key 'images'), an .npy file or a PNG folder")


def evaluate_samples(
    samples,
    n: int | None = None,
    k: int = 5,
    device=None,
    inception=None,
    cache_dir=None,
    batch_size: int = 1000,
    kid_subsets: int = 100,
    reference: dict | None = None,
    with_floor: bool = True,
) -> dict:
    """FID, KID, precision, recall, density and coverage of generated images.

    ``samples``: anything :func:`load_samples` accepts (``n`` images are used; all by default;
    ``n`` is required for a sampler). Features come from the pinned classifier
    (``fmnist-cnn-v1``). FID is against the full train split; KID against the seeded 10k train
    subset; precision/recall/density/coverage (k nearest neighbours) against the first
    ``min(n, 10000)`` features of that subset. ``fid_floor`` (and ``floor``: every metric) is the
    same computation on held-out test images at the same n (at most 10,000). ``inception``: path
    of the Inception weights (file or folder), else ``$DDGAN_INCEPTION_WEIGHTS``; skipped with a
    status when absent. Returns a JSON-serialisable dict (metrics at the top level; ``extractor``,
    ``floor`` and ``timings_s`` nested).
    """
    device = str(torch.device(device or default_device()))
    t_start = time.perf_counter()
    timings = {}
    t = time.perf_counter()
    import cleanfid.fid  # noqa: F401 - a slow first import; timed apart from the metrics

    timings["imports"] = time.perf_counter() - t
    t = time.perf_counter()
    images = load_samples(samples, n=n, batch_size=batch_size)
    timings["load"] = time.perf_counter() - t
    n_samples = images.shape[0]
    if n_samples <= FEATURE_DIM:
        raise ValueError(
            f"FID needs more samples than the feature dimension ({FEATURE_DIM}): got "
            f"{n_samples}, so the covariance is singular. Use at least {FEATURE_DIM + 1} samples "
            "(2,000 or more for a useful estimate; 10,000 is the project's standard)."
        )
    model = get_feature_extractor(device)
    if reference is None:
        t = time.perf_counter()
        reference = reference_stats(model=model, cache_dir=cache_dir, device=device)
        timings["reference"] = time.perf_counter() - t
    t = time.perf_counter()
    feats = extract_features(images, model=model, batch_size=batch_size)
    timings["features"] = time.perf_counter() - t
    t = time.perf_counter()
    fid = fid_from_features(feats, reference["mu"], reference["sigma"])
    timings["fid"] = time.perf_counter() - t
    t = time.perf_counter()
    kid_mean, kid_std = kid(feats, reference["subset_features"], num_subsets=kid_subsets)
    timings["kid"] = time.perf_counter() - t
    t = time.perf_counter()
    n_real = min(n_samples, reference["subset_features"].shape[0])
    radii = reference_radii(reference, n_real, k, device=device)  # cached after the first call
    prdc = compute_prdc(
        real_subset(reference, n_real), feats, nearest_k=k, device=device, real_radii=radii
    )
    timings["prdc"] = time.perf_counter() - t
    manifest = load_manifest()
    result = {
        "n_samples": n_samples,
        "fid": fid,
        "kid": kid_mean,
        "kid_std": kid_std,
        **prdc,
        "k": k,
        "n_real_prdc": n_real,
        "n_real_kid": int(reference["subset_features"].shape[0]),
        "n_train_fid": int(reference["n_train"]),
        "extractor": {"name": EXTRACTOR_NAME, "sha256": model.sha256},
        "classifier_test_accuracy": manifest.get("test_accuracy"),
        "device": device,
        "num_threads": torch.get_num_threads(),
    }
    if with_floor:
        t = time.perf_counter()
        floor_n = min(n_samples, reference["test_features"].shape[0])
        floor = fid_floor(floor_n, reference=reference, k=k, kid_subsets=kid_subsets,
                          device=device)
        timings["floor"] = time.perf_counter() - t
        result["fid_floor"] = floor["fid"]
        result["fid_floor_n"] = floor_n
        result["floor"] = floor
    else:
        result["fid_floor"] = None
    t = time.perf_counter()
    result.update(inception_fid(images, weights=inception, device=device, cache_dir=cache_dir))
    timings["inception"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    result["timings_s"] = timings
    return result


def format_report(result: dict, source: str = "") -> str:
    """A human-readable table of an :func:`evaluate_samples` result."""
    floor = result.get("floor") or {}
    ext = result["extractor"]
    acc = result.get("classifier_test_accuracy")
    acc_text = f"{acc:.2%}" if isinstance(acc, float) else "unknown"
    lines = [
        f"samples      {source} ({result['n_samples']} images)".rstrip(),
        f"extractor    {ext['name']} sha256 {ext['sha256'][:12]} (test accuracy {acc_text})",
        f"reference    FID vs {result['n_train_fid']} train images; KID vs "
        f"{result['n_real_kid']}; PR/DC (k={result['k']}) vs {result['n_real_prdc']}",
        "",
        f"{'metric':<11}{'samples':>14}{'real floor':>14}",
    ]
    floor_label = f"(test vs train, n={result.get('fid_floor_n')})"

    def row(name, value, ref, fmt="{:.4f}"):
        v = fmt.format(value) if isinstance(value, float) and math.isfinite(value) else str(value)
        r = fmt.format(ref) if isinstance(ref, float) else "-"
        return f"{name:<11}{v:>14}{r:>14}"

    lines.append(row("FID", result["fid"], floor.get("fid"), "{:.3f}"))
    lines.append(row("KID", result["kid"], floor.get("kid"), "{:.5f}"))
    lines.append(row("KID std", result["kid_std"], floor.get("kid_std"), "{:.5f}"))
    for key in ("precision", "recall", "density", "coverage"):
        lines.append(row(key, result[key], floor.get(key)))
    lines += [
        f"floor        {floor_label}",
        f"inception    {result.get('inception_fid')} ({result.get('inception_status')})",
        f"time         {result['timings_s']['total']:.1f} s on {result['device']} "
        f"({result['num_threads']} threads)",
    ]
    return "\n".join(lines)


def cli_eval(argv: list[str] | None = None) -> int:
    """``python -m ddgan_core eval --samples PATH [--n N] [--json] [--inception PATH]``."""
    parser = argparse.ArgumentParser(
        prog="python -m ddgan_core eval",
        description="FID/KID/precision/recall/density/coverage of generated FashionMNIST images "
        "on the project's classifier features, beside the real-data floor.",
    )
    parser.add_argument("--samples", required=True,
                        help=".npz (key 'images'), .npy, or a folder of PNGs")
    parser.add_argument("--n", type=int, default=None, help="use the first N images")
    parser.add_argument("--k", type=int, default=5, help="nearest neighbours for PR/DC")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--inception", default=None,
                        help="Inception weights file or folder (default: $DDGAN_INCEPTION_WEIGHTS)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--cache-dir", default=None,
                        help="reference-statistics cache (default: $DDGAN_CACHE_DIR or results/)")
    args = parser.parse_args(argv)
    result = evaluate_samples(
        args.samples, n=args.n, k=args.k, device=args.device, inception=args.inception,
        cache_dir=args.cache_dir,
    )
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(format_report(result, source=args.samples))
    return 0


__all__ = ["REFERENCE_SUBSET", "cli_eval", "evaluate_samples", "format_report", "load_samples"]
