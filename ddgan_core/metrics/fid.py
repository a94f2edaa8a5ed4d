"""FID and KID on the project's FashionMNIST features, reference statistics, the real-data
floor, and (when its weights are present) standard Inception FID through clean-fid.

The distances themselves are clean-fid's (``cleanfid.fid.frechet_distance`` and
``cleanfid.fid.kernel_distance``); this module feeds them features and caches the reference
side. Reference statistics of the train split are computed once per extractor checksum and kept
in ``<cache>/_reference_stats/<sha256[:12]>.npz`` (``<cache>`` is ``$DDGAN_CACHE_DIR`` or
``<repo>/results``), written atomically. Nothing here downloads anything.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..cache import atomic_write_bytes, sha256_file
from .features import (
    EXTRACTOR_NAME,
    FEATURE_DIM,
    default_device,
    extract_features,
    load_feature_extractor,
)

REFERENCE_SUBDIR = "_reference_stats"
INCEPTION_ENV = "DDGAN_INCEPTION_WEIGHTS"
INCEPTION_FILE = "inception-2015-12-05.pt"
#: clean-fid's own default directory for the Inception file
INCEPTION_DEFAULT_DIR = Path("/tmp")
#: train images whose features are kept for KID / precision-recall (a fixed seeded subset)
REFERENCE_SUBSET = 10_000
REFERENCE_FORMAT = 1


def default_cache_dir() -> Path:
    """The local result cache (:func:`ddgan_core.cache.default_root`: ``$DDGAN_CACHE_DIR``, else
    ``<repo>/.cache/results``): reference statistics are per machine, never committed."""
    from ..cache import default_root

    return default_root()


def _as_numpy64(features) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    return np.asarray(features, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# distances


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between two Gaussians (clean-fid's implementation), as a float.

    clean-fid 0.1.35 calls ``scipy.linalg.sqrtm(..., disp=False)``, an argument SciPy 1.18
    removed; with such a SciPy the same computation runs here instead (see
    :func:`_frechet_distance_same_as_cleanfid`).
    """
    from cleanfid.fid import frechet_distance as _fd

    args = (_as_numpy64(mu1), _as_numpy64(sigma1), _as_numpy64(mu2), _as_numpy64(sigma2))
    with warnings.catch_warnings():
        # clean-fid 0.1.35 passes scipy's deprecated `disp` argument to sqrtm
        warnings.filterwarnings("ignore", message=".*disp.*", category=DeprecationWarning)
        try:
            value = _fd(*args)
        except TypeError as err:
            if "disp" not in str(err):
                raise
            value = _frechet_distance_same_as_cleanfid(*args)
    return float(value)


def _frechet_distance_same_as_cleanfid(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """clean-fid 0.1.35's Frechet distance, step for step, for SciPy >= 1.18 (no ``disp``):
    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))``, with ``eps`` added to both
    diagonals when the matrix square root is not finite, and a negligible imaginary part of it
    dropped (a large one is an error)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of features ``[N, D]``.

    Raises ValueError when N <= D: the covariance would be singular and FID meaningless.
    """
    f = _as_numpy64(features)
    if f.ndim != 2:
        raise ValueError(f"features must be a 2-D array [N, D], got shape {f.shape}")
    n, d = f.shape
    if n <= d:
        raise ValueError(
            f"FID needs more samples than the feature dimension ({d}): got {n} samples, so the "
            f"covariance is singular. Use at least {d + 1} samples (2,000 or more for a useful "
            "estimate; 10,000 is the project's standard)."
        )
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_features(features, mu_ref, sigma_ref) -> float:
    """FID of a feature set against reference statistics."""
    mu, sigma = feature_statistics(features)
    return frechet_distance(mu, sigma, mu_ref, sigma_ref)


@contextlib.contextmanager
def seeded_global_numpy(seed: int):
    """Seed numpy's global RNG (clean-fid's KID draws its subsets from it) for the duration of
    the block, then restore the caller's state."""
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def kid(
    features1,
    features2,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
    dtype=np.float32,
) -> tuple[float, float]:
    """Kernel inception distance (clean-fid's polynomial-kernel estimator) and its std.

    Runs ``cleanfid.fid.kernel_distance`` one subset at a time under a seeded numpy RNG (the
    caller's global state is restored afterwards), so the mean equals clean-fid's
    ``num_subsets`` estimate and the standard deviation over subsets comes for free.
    Features are cast to ``dtype``: float32 (clean-fid's own feature type) runs twice as fast
    as float64 and differs from it by < 1e-7 absolute on this project's features (KID values
    ~1e-4..1e-1, subset std ~1e-3).
    """
    from cleanfid.fid import kernel_distance

    f1 = _as_numpy64(features1).astype(dtype)
    f2 = _as_numpy64(features2).astype(dtype)
    if min(f1.shape[0], f2.shape[0]) < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    with seeded_global_numpy(seed):
        values = [
            kernel_distance(f1, f2, num_subsets=1, max_subset_size=max_subset_size)
            for _ in range(num_subsets)
        ]
    return float(np.mean(values)), float(np.std(values))


# ----------------------------------------------------------------------------------------------
# reference statistics and the real-data floor


def _atomic_savez(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def reference_path(sha256: str, cache_dir=None, max_train_images: int | None = None) -> Path:
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    suffix = "" if max_train_images is None else f"_train{max_train_images}"
    return base / REFERENCE_SUBDIR / f"{sha256[:12]}{suffix}.npz"


def reference_stats(
    model=None,
    cache_dir=None,
    device=None,
    subset_size: int = REFERENCE_SUBSET,
    seed: int = 0,
    max_train_images: int | None = None,
    batch_size: int = 1000,
) -> dict:
    """Reference statistics of the FashionMNIST train split for one extractor (cached on disk).

    ``model`` is any pinned extractor (``fmnist-cnn-v1`` by default, or the second extractor
    ``fmnist-cnn-b``); the cache file is keyed by its ``sha256`` and records its name.

    Returns a dict: ``mu``/``sigma`` (float64, all train images), ``subset_features`` (float32
    features of a fixed seeded subset of ``subset_size`` train images, for KID and
    precision/recall), ``test_features`` (all 10,000 test images in a fixed seeded order, for the
    floor), ``n_train``, ``sha256``, ``name``, ``path``. ``max_train_images`` (tests only) uses
    the first N train images and a separate cache file.
    """
    from ddgan_core.data import load_fashion_mnist

    if model is None:
        model = load_feature_extractor(device=device or default_device())
    sha = model.sha256
    path = reference_path(sha, cache_dir, max_train_images)
    if path.is_file():
        try:
            with np.load(path) as z:
                ref = {key: z[key] for key in z.files}
            ok = (
                str(ref["sha256"]) == sha
                and int(ref["format"]) == REFERENCE_FORMAT
                and int(ref["seed"]) == seed
                and ref["subset_features"].shape[0] == min(subset_size, int(ref["n_train"]))
            )
            if ok:
                return _ref_dict(ref, path)
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable or stale: recompute and overwrite
    train_x, _ = load_fashion_mnist("train")
    test_x, _ = load_fashion_mnist("test")
    if max_train_images is not None:
        train_x = train_x[:max_train_images]
    train_f = extract_features(train_x, model=model, batch_size=batch_size)
    test_f = extract_features(test_x, model=model, batch_size=batch_size)
    gen = torch.Generator().manual_seed(seed)
    subset_idx = torch.randperm(train_f.shape[0], generator=gen)[:subset_size]
    test_idx = torch.randperm(test_f.shape[0], generator=gen)
    mu, sigma = feature_statistics(train_f)
    ref = {
        "mu": mu,
        "sigma": sigma,
        "subset_features": train_f[subset_idx].numpy(),
        "subset_indices": subset_idx.numpy(),
        "test_features": test_f[test_idx].numpy(),
        "test_indices": test_idx.numpy(),
        "n_train": np.int64(train_f.shape[0]),
        "sha256": np.str_(sha),
        "name": np.str_(getattr(model, "extractor_name", EXTRACTOR_NAME)),
        "seed": np.int64(seed),
        "format": np.int64(REFERENCE_FORMAT),
    }
    for stale in _derived_paths(path):  # floors and radii of an older reference file
        if stale.exists():
            stale.unlink()
    _atomic_savez(path, **ref)
    return _ref_dict(ref, path)


def _derived_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.stem + "_floor.json"), path.with_name(path.stem + "_radii.npz")


def _ref_dict(ref: dict, path: Path) -> dict:
    out = dict(ref)
    for key in ("sha256", "name"):
        out[key] = str(ref[key])
    for key in ("n_train", "seed", "format"):
        out[key] = int(ref[key])
    out["path"] = str(path)
    return out


def real_subset(reference: dict, n: int) -> np.ndarray:
    """The first ``n`` features of the seeded train subset (the real side of PR/DC)."""
    return reference["subset_features"][:n]


def reference_radii(reference: dict, n: int, k: int = 5, device=None) -> torch.Tensor:
    """k-NN radii (float64) of the first ``n`` reference-subset features, the real side of
    precision/density/coverage; memoised in ``reference`` and cached on disk per (n, k)."""
    from .prdc import nearest_neighbour_radii

    key = f"n{n}_k{k}"
    memo = reference.setdefault("_radii", {})
    if key in memo:
        return memo[key]
    path = _derived_paths(Path(reference["path"]))[1]
    stored = {}
    if path.is_file():
        try:
            with np.load(path) as z:
                stored = {name: z[name] for name in z.files}
        except (OSError, ValueError, EOFError):
            stored = {}
    if key in stored and stored[key].shape == (n,):
        radii = torch.from_numpy(stored[key])
    else:
        radii = nearest_neighbour_radii(real_subset(reference, n), k, device=device).cpu()
        stored[key] = radii.numpy()
        _atomic_savez(path, **stored)
    memo[key] = radii
    return radii


def fid_floor(
    n: int,
    reference: dict | None = None,
    k: int = 5,
    kid_subsets: int = 100,
    cache: bool = True,
    device=None,
) -> dict:
    """Real-data floor at sample count ``n``: ``n`` held-out test images scored exactly like
    generated ones (FID and KID against the train reference, precision/recall/density/coverage
    against ``n`` train images). Cached per (n, k) next to the reference statistics.
    """
    from .prdc import compute_prdc

    if reference is None:
        reference = reference_stats(device=device)
    n_test = reference["test_features"].shape[0]
    if n > n_test:
        raise ValueError(
            f"the floor needs n test images but the test split has {n_test}; got n={n}"
        )
    floor_path = _derived_paths(Path(reference["path"]))[0]
    key = f"n={n},k={k},kid_subsets={kid_subsets}"
    table = {}
    if cache and floor_path.is_file():
        try:
            table = json.loads(floor_path.read_text())
        except (OSError, ValueError):
            table = {}
        if key in table:
            return table[key]
    test_f = reference["test_features"][:n]
    fid = fid_from_features(test_f, reference["mu"], reference["sigma"])
    kid_mean, kid_std = kid(test_f, reference["subset_features"], num_subsets=kid_subsets)
    prdc = compute_prdc(
        real_subset(reference, n), test_f, nearest_k=k, device=device,
        real_radii=reference_radii(reference, n, k, device=device),
    )
    result = {"n": n, "k": k, "fid": fid, "kid": kid_mean, "kid_std": kid_std, **prdc}
    if cache:
        table[key] = result
        text = json.dumps(table, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(floor_path, text.encode())
    return result


# ----------------------------------------------------------------------------------------------
# Inception FID (clean-fid, mode "clean"), only when the weights file is present


def resolve_inception_weights(path=None) -> Path | None:
    """Where the Inception weights file is expected: ``path`` (the file, or the directory that
    holds ``inception-2015-12-05.pt``; clean-fid's own default directory is ``/tmp``), else
    ``$DDGAN_INCEPTION_WEIGHTS``; ``None`` when neither is given."""
    path = path if path is not None else os.environ.get(INCEPTION_ENV)
    if not path:
        return None
    path = Path(path)
    if path.is_dir() or path.suffix != ".pt":
        return path / INCEPTION_FILE
    return path


def _inception_features(images: torch.Tensor, model, device, batch_size: int) -> np.ndarray:
    from cleanfid.resize import build_resizer

    from ddgan_core.data import model_to_uint8

    resize = build_resizer("clean")
    uint8 = model_to_uint8(images).numpy()
    feats = []
    for start in range(0, uint8.shape[0], batch_size):
        batch = [
            resize(np.repeat(img[:, :, None], 3, axis=2)).transpose(2, 0, 1)
            for img in uint8[start: start + batch_size]
        ]
        x = torch.from_numpy(np.stack(batch).astype(np.float32)).to(device)
        with torch.no_grad():
            feats.append(model(x).cpu().numpy().astype(np.float64))
    return np.concatenate(feats)


def inception_fid(
    images: torch.Tensor,
    weights=None,
    device=None,
    batch_size: int = 64,
    cache_dir=None,
    max_reference_images: int | None = None,
) -> dict:
    """Standard FID with clean-fid's Inception (mode ``"clean"``) against the train split.

    Grayscale images are replicated to 3 channels and resized to 299x299 with clean-fid's
    ``build_resizer("clean")``. When the weights file is absent the result is
    ``{"inception_fid": None, "inception_status": "skipped: weights not found at <path>"}``;
    nothing is ever downloaded. Reference statistics are cached per weights checksum.
    """
    file = resolve_inception_weights(weights)
    if file is None or not file.is_file():
        where = file if file is not None else (
            f"<no path given: pass a path or set {INCEPTION_ENV}; clean-fid's default "
            f"is {INCEPTION_DEFAULT_DIR / INCEPTION_FILE}>"
        )
        return {"inception_fid": None, "inception_status": f"skipped: weights not found at {where}"}

    from cleanfid.inception_torchscript import InceptionV3W

    from ddgan_core.data import load_fashion_mnist

    device = torch.device(device or default_device())
    sha = sha256_file(file)
    # InceptionV3W loads <dir>/inception-2015-12-05.pt; link a differently named file into a
    # temporary directory so any file name works
    with tempfile.TemporaryDirectory() as tmp:
        target = file
        if file.name != INCEPTION_FILE:
            target = Path(tmp) / INCEPTION_FILE
            os.symlink(file.resolve(), target)
        model = InceptionV3W(str(target.parent), download=False).to(device).eval()
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    suffix = "" if max_reference_images is None else f"_train{max_reference_images}"
    ref_path = base / REFERENCE_SUBDIR / f"inception_{sha[:12]}{suffix}.npz"
    if ref_path.is_file():
        with np.load(ref_path) as z:
            mu_ref, sigma_ref = z["mu"], z["sigma"]
    else:
        train_x, _ = load_fashion_mnist("train")
        if max_reference_images is not None:
            train_x = train_x[:max_reference_images]
        mu_ref, sigma_ref = feature_statistics(
            _inception_features(train_x, model, device, batch_size)
        )
        _atomic_savez(ref_path, mu=mu_ref, sigma=sigma_ref, sha256=np.str_(sha))
    feats = _inception_features(images, model, device, batch_size)
    mu, sigma = feature_statistics(feats)
    return {
        "inception_fid": frechet_distance(mu, sigma, mu_ref, sigma_ref),
        "inception_status": f"ok: clean-fid InceptionV3 (clean mode), weights sha256 {sha[:12]}",
        "inception_n": int(feats.shape[0]),
    }


__all__ = [
    "FEATURE_DIM",
    "default_cache_dir",
    "feature_statistics",
    "fid_floor",
    "fid_from_features",
    "frechet_distance",
    "inception_fid",
    "kid",
    "real_subset",
    "reference_radii",
    "reference_stats",
    "resolve_inception_weights",
]
