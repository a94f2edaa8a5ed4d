"""All sample-quality metrics in one call, and the ``eval`` command line.

``evaluate_samples(samples)`` takes generated images from a tensor, an ``.npz`` file, a folder
of PNGs or a sampler callable and returns FID, KID, precision, recall, density and coverage on
the project's FashionMNIST features, each beside the real-data floor at the same sample count,
with the extractor's name, checksum and test accuracy (and Inception FID when its weights are
present). Optionally (``bootstrap=N``) with bootstrap uncertainty over the generated samples,
and (``second_extractor=True``) the same metrics on a second, independent extractor.

Pixel values (:data:`VALUE_RULE`): uint8 images are 0..255; float images must lie in [-1, 1];
float images whose values all lie in [0, 1] are ambiguous and refused unless declared with
``value_range="01"`` (``eval --range 01``). Every input is checked before any feature is
extracted, and each problem is one ``ValueError`` line naming the parameter and what is allowed.
"""

from __future__ import annotations

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

#: How ``load_samples`` reads pixel values; ``value_range`` / ``--range`` picks the float rule.
VALUE_RANGES = ("-11", "01")
VALUE_RULE = (
    "uint8 images are read as 0..255; float images must lie in [-1, 1] (the models' range), and "
    "float images whose values all lie in [0, 1] (not all zero) are ambiguous and refused: save "
    "uint8 0..255 or floats in [-1, 1], or pass --range 01 (value_range='01') to read floats "
    "as [0, 1]"
)
_SHAPES = "[N, 28, 28] or [N, 1, 28, 28]"
_SOURCES = "an .npz file with key 'images', an .npy file or a folder of PNGs"
_TOLERANCE = 1e-3  # as features.check_images: float rounding at the ends of the range


class SamplesNotFoundError(FileNotFoundError, ValueError):
    """The samples path does not exist (a ``ValueError`` too, like every other input error)."""


def check_positive(label: str, value, meaning: str) -> None:
    """Raise ValueError (``"<label><value>: <meaning> must be an integer >= 1"``) unless
    ``value`` is an integer >= 1; ``label`` is ``"k="`` in Python or ``"--k "`` on the CLI."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{label}{value!r}: {meaning} must be an integer >= 1")


def check_value_range(value_range: str) -> None:
    if value_range not in VALUE_RANGES:
        raise ValueError(
            f"value_range={value_range!r}: expected one of {', '.join(map(repr, VALUE_RANGES))} "
            "(floats in [-1, 1], or floats in [0, 1])"
        )


def _as_tensor(images, where: str) -> torch.Tensor:
    """``images`` as a uint8 or floating tensor, else one ValueError naming its dtype."""
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8 or images.dtype.kind == "f":
            images = torch.from_numpy(np.ascontiguousarray(images))
        else:
            raise _dtype_error(where, str(images.dtype))
    if not isinstance(images, torch.Tensor):
        raise ValueError(
            f"{where} is a {type(images).__name__}; expected a uint8 or float array or tensor"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise _dtype_error(where, str(images.dtype).removeprefix("torch."))
    return images


def _dtype_error(where: str, dtype: str) -> ValueError:
    hint = " (integer images 0..255: convert with .astype(np.uint8))" if "int" in dtype else ""
    return ValueError(
        f"{where} has dtype {dtype}; expected uint8 (0..255) or float ([-1, 1]){hint}"
    )


def _check_shape(images: torch.Tensor, where: str) -> torch.Tensor:
    """``[N, 1, 28, 28]`` from ``[N, 28, 28]`` or ``[N, 1, 28, 28]``; else a ValueError."""
    shape = tuple(images.shape)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{where} has shape {shape}; expected {_SHAPES}")
    if images.shape[0] == 0:
        raise ValueError(f"{where} holds no images (shape {shape})")
    return images


def _float_to_model(images: torch.Tensor, where: str, value_range: str,
                    ambiguous_ok: bool = False) -> torch.Tensor:
    """Float images checked against ``value_range`` (see :data:`VALUE_RULE`), as [-1, 1]."""
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{where} holds NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if value_range == "01":
        if lo < -_TOLERANCE or hi > 1 + _TOLERANCE:
            raise ValueError(
                f"{where}: value_range='01' needs float values in [0, 1], got values in "
                f"[{lo:.4g}, {hi:.4g}]"
            )
        return images * 2 - 1
    if lo < -1 - _TOLERANCE or hi > 1 + _TOLERANCE:
        raise ValueError(
            f"{where}: float values in [{lo:.4g}, {hi:.4g}] lie outside [-1, 1]; {VALUE_RULE}"
        )
    if not ambiguous_ok and lo >= 0 and hi > 0:
        raise ValueError(
            f"{where}: float values all in [0, 1] (min {lo:.4g}, max {hi:.4g}) are ambiguous "
            "(the models' range is [-1, 1]); save uint8 0..255 or floats in [-1, 1], or pass "
            "--range 01 (value_range='01') if these are [0, 1] images"
        )
    return images


def _to_model(images, where: str, value_range: str = "-11",
              ambiguous_ok: bool = False) -> torch.Tensor:
    """Validated images (uint8 or float, see :data:`VALUE_RULE`) as float ``[N, 1, 28, 28]``."""
    from ddgan_core.data import uint8_to_model

    images = _check_shape(_as_tensor(images, where), where)
    if images.dtype == torch.uint8:
        return uint8_to_model(images)
    return _float_to_model(images, where, value_range, ambiguous_ok).float()


def load_samples(source, n: int | None = None, batch_size: int = 1000,
                 value_range: str = "-11") -> torch.Tensor:
    """Generated images as float32 ``[N, 1, 28, 28]`` in [-1, 1] from any source:

    * a tensor or numpy array;
    * a path to an ``.npz`` file with key ``images``, or to an ``.npy`` file;
    * a folder of PNG files (read in sorted name order as 8-bit grayscale);
    * a sampler callable ``fn(b) -> tensor in [-1, 1]``, called in batches of ``batch_size``
      until ``n`` images exist (``n`` is then required).

    Images are ``[N, 28, 28]`` or ``[N, 1, 28, 28]``. The value rule: uint8 images are read as
    0..255; float images must lie in [-1, 1]; float images whose values all lie in [0, 1] (and
    are not all zero) are ambiguous and raise ``ValueError`` asking for uint8 or [-1, 1]
    floats, unless ``value_range="01"`` says that the floats are [0, 1] images (they are then
    mapped by ``x * 2 - 1``). A sampler's output and a torch tensor (what the project's samplers
    return) are taken as [-1, 1] as documented (checked for range, not for ambiguity: a barely
    trained generator may well emit only positive values). NaN, other dtypes (integers other
    than uint8, strings, objects) and other shapes raise ``ValueError`` with one line naming
    the problem; a missing path raises :class:`SamplesNotFoundError` (a ``FileNotFoundError``
    and a ``ValueError``).

    ``n`` keeps the first ``n`` images; ``n < 1``, or more than the source holds, is an error.
    """
    check_value_range(value_range)
    if n is not None:
        check_positive("n=", n, "the number of images")
    if callable(source) and not isinstance(source, (torch.Tensor, np.ndarray)):
        if n is None:
            raise ValueError("n (the number of images to draw) is required for a sampler")
        check_positive("batch_size=", batch_size, "the sampler's batch size")
        images = _to_model(_draw(source, n, batch_size), "sampler output", value_range,
                           ambiguous_ok=True)
    elif isinstance(source, (str, os.PathLike)):
        images = _load_path(Path(source), value_range)
    else:  # a model's tensor output is [-1, 1] by contract; numpy arrays come from files
        images = _to_model(source, "samples", value_range,
                           ambiguous_ok=isinstance(source, torch.Tensor))
    if n is not None:
        if images.shape[0] < n:
            count = images.shape[0]
            raise ValueError(
                f"n={n}: asked for {n} images but the source holds {count} images (allowed: "
                f"1 to {count})"
            )
        images = images[:n]
    return images


def _draw(sampler, n: int, batch_size: int) -> torch.Tensor:
    """``n`` images from ``sampler(b)`` in batches of at most ``batch_size`` (float, CPU)."""
    chunks, have = [], 0
    while have < n:
        b = min(batch_size, n - have)
        out = sampler(b)
        if not isinstance(out, torch.Tensor) or out.shape[0] != b:
            raise ValueError(
                f"sampler(b) must return a tensor with b={b} images, got "
                f"{getattr(out, 'shape', type(out).__name__)}"
            )
        chunks.append(out.detach().float().cpu())
        have += b
    return torch.cat(chunks)


def _load_path(path: Path, value_range: str = "-11") -> torch.Tensor:
    """Images from a PNG folder, an ``.npz`` file (key ``images``) or an ``.npy`` file."""
    if path.is_dir():
        return _load_png_folder(path)
    if not path.is_file():
        raise SamplesNotFoundError(f"samples {path}: not found (expected {_SOURCES})")
    if path.suffix == ".npz":
        return _to_model(_read_npz(path), f"{path}: 'images'", value_range)
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ValueError(f"{path}: cannot be read as .npy ({_first_line(err)})") from None
        return _to_model(array, str(path), value_range)
    raise ValueError(f"{path}: expected {_SOURCES}")


def _read_npz(path: Path) -> np.ndarray:
    """The ``images`` array of an ``.npz`` file; one ValueError for anything else."""
    import zipfile

    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: cannot be read as .npz ({_first_line(err)})") from None
    with archive as z:
        if "images" not in z.files:
            raise ValueError(f"{path}: no key 'images' (keys: {z.files}); expected {_SOURCES}")
        try:
            return z["images"]
        except ValueError:  # object arrays need pickle, which is never loaded
            raise _dtype_error(f"{path}: 'images'", "object (pickled Python objects)") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _load_png_folder(path: Path) -> torch.Tensor:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise ValueError(f"{path}: folder holds no .png files (expected {_SOURCES})")
    arrays = []
    for file in files:
        with Image.open(file) as img:
            arr = np.asarray(img.convert("L"))
        if arr.shape != (28, 28):
            raise ValueError(f"{file}: expected a 28x28 image, got {arr.shape}")
        arrays.append(arr)
    return _to_model(np.stack(arrays), str(path))


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
    value_range: str = "-11",
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
    second_extractor: bool = False,
    second_reference: dict | None = None,
) -> dict:
    """FID, KID, precision, recall, density and coverage of generated images.

    ``samples``: anything :func:`load_samples` accepts, under its value rule (uint8 0..255;
    floats in [-1, 1]; floats all in [0, 1] refused as ambiguous unless ``value_range="01"``).
    ``n`` images are used (all by default; ``n`` is required for a sampler). ``k`` and ``n``
    (integers >= 1, ``n`` at most the images available, ``k`` fewer) and the images are checked
    before any feature is extracted, each failure one ``ValueError`` line.

    Features come from the pinned classifier (``fmnist-cnn-v1``). FID is against the full train
    split; KID against the seeded 10k train subset; precision/recall/density/coverage (k nearest
    neighbours) against the first ``min(n, 10000)`` features of that subset. ``fid_floor`` (and
    ``floor``: every metric) is the same computation on held-out test images at the same n (at
    most 10,000). ``inception``: path of the Inception weights (file or folder), else
    ``$DDGAN_INCEPTION_WEIGHTS``; skipped with a status when absent. Returns a JSON-serialisable
    dict (metrics at the top level; ``extractor``, ``floor`` and ``timings_s`` nested).

    ``bootstrap`` (0: off; else the number of replicates, >= 2): bootstrap uncertainty over the
    generated samples (:func:`~ddgan_core.metrics.uncertainty.bootstrap_metrics`, seeded with
    ``bootstrap_seed``); the result gains ``uncertainty`` (``{metric: {"std", "lo", "hi",
    "n_boot", "bias"}}``, a bias-corrected 95% percentile interval) and ``bootstrap``
    (``{"replicates", "over": "generated samples", "seed"}``). ``second_extractor``: the result
    gains ``second``, the same metrics on the independent extractor ``fmnist-cnn-b``
    (:mod:`~ddgan_core.metrics.second`) against its own reference statistics
    (``second_reference``, else computed and cached like the first extractor's), with its own
    ``fid_floor`` and, when bootstrapping, its ``uncertainty``. With the defaults the result is
    exactly what it was without these options.
    """
    check_positive("k=", k, "the number of nearest neighbours")
    if (isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer))
            or bootstrap < 0 or bootstrap == 1):
        raise ValueError(
            f"bootstrap={bootstrap!r}: the number of bootstrap replicates must be 0 (off) or "
            "an integer >= 2"
        )
    device = str(torch.device(device or default_device()))
    t_start = time.perf_counter()
    timings = {}
    t = time.perf_counter()
    images = load_samples(samples, n=n, batch_size=batch_size, value_range=value_range)
    timings["load"] = time.perf_counter() - t
    n_samples = images.shape[0]
    if n_samples <= FEATURE_DIM:
        raise ValueError(
            f"FID needs more samples than the feature dimension ({FEATURE_DIM}): got "
            f"{n_samples}, so the covariance is singular. Use at least {FEATURE_DIM + 1} samples "
            "(2,000 or more for a useful estimate; 10,000 is the project's standard)."
        )
    if k >= n_samples:
        raise ValueError(f"k={k}: must be smaller than the number of samples ({n_samples})")
    t = time.perf_counter()
    import cleanfid.fid  # noqa: F401 - a slow first import; timed apart from the metrics

    timings["imports"] = time.perf_counter() - t
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
    extra = {}
    if bootstrap:
        from .uncertainty import bootstrap_metrics

        t = time.perf_counter()
        extra["uncertainty"] = bootstrap_metrics(
            feats, reference, n_boot=bootstrap, seed=bootstrap_seed, k=k, device=device,
            real_radii=radii, real_features=real_subset(reference, n_real),
            point={"fid": fid, "kid": kid_mean, **prdc},
        )
        extra["bootstrap"] = {"replicates": bootstrap, "over": "generated samples",
                              "seed": bootstrap_seed}
        timings["bootstrap"] = time.perf_counter() - t
    if second_extractor:
        t = time.perf_counter()
        extra["second"] = _second_extractor_metrics(
            images, k=k, device=device, cache_dir=cache_dir, batch_size=batch_size,
            kid_subsets=kid_subsets, reference=second_reference, with_floor=with_floor,
            bootstrap=bootstrap, bootstrap_seed=bootstrap_seed,
        )
        timings["second"] = time.perf_counter() - t
    t = time.perf_counter()
    result.update(inception_fid(images, weights=inception, device=device, cache_dir=cache_dir))
    timings["inception"] = time.perf_counter() - t
    result.update(extra)
    timings["total"] = time.perf_counter() - t_start
    result["timings_s"] = timings
    return result


def _second_extractor_metrics(images: torch.Tensor, *, k: int, device: str, cache_dir,
                              batch_size: int, kid_subsets: int, reference: dict | None,
                              with_floor: bool, bootstrap: int, bootstrap_seed: int) -> dict:
    """FID, KID, precision, recall, density, coverage (and floor, and bootstrap uncertainty)
    of ``images`` on the second extractor ``fmnist-cnn-b``, computed exactly as for the first:
    FID against its train-split statistics, KID against its seeded 10k train subset, PR/DC
    against the first ``min(n, 10000)`` of that subset, the floor on held-out test images."""
    from .second import extract_second_features, get_second_extractor, load_second_manifest

    model = get_second_extractor(device)
    if reference is None:
        reference = reference_stats(model=model, cache_dir=cache_dir, device=device)
    if reference["sha256"] != model.sha256:
        raise ValueError(
            f"second_reference belongs to the extractor with sha256 {reference['sha256'][:12]}, "
            f"not to {model.extractor_name} ({model.sha256[:12]})"
        )
    feats = extract_second_features(images, model=model, batch_size=batch_size)
    n_samples = feats.shape[0]
    fid = fid_from_features(feats, reference["mu"], reference["sigma"])
    kid_mean, kid_std = kid(feats, reference["subset_features"], num_subsets=kid_subsets)
    n_real = min(n_samples, reference["subset_features"].shape[0])
    radii = reference_radii(reference, n_real, k, device=device)
    prdc = compute_prdc(
        real_subset(reference, n_real), feats, nearest_k=k, device=device, real_radii=radii
    )
    out = {
        "extractor": {"name": model.extractor_name, "sha256": model.sha256},
        "classifier_test_accuracy": load_second_manifest().get("test_accuracy"),
        "fid": fid,
        "kid": kid_mean,
        "kid_std": kid_std,
        **prdc,
        "n_real_prdc": n_real,
        "n_real_kid": int(reference["subset_features"].shape[0]),
        "n_train_fid": int(reference["n_train"]),
    }
    if with_floor:
        floor_n = min(n_samples, reference["test_features"].shape[0])
        floor = fid_floor(floor_n, reference=reference, k=k, kid_subsets=kid_subsets,
                          device=device)
        out.update(fid_floor=floor["fid"], fid_floor_n=floor_n, floor=floor)
    else:
        out["fid_floor"] = None
    if bootstrap:
        from .uncertainty import bootstrap_metrics

        out["uncertainty"] = bootstrap_metrics(
            feats, reference, n_boot=bootstrap, seed=bootstrap_seed, k=k, device=device,
            real_radii=radii, real_features=real_subset(reference, n_real),
            point={"fid": fid, "kid": kid_mean, **prdc},
        )
    return out


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
    ]
    if result.get("uncertainty"):
        boot = result.get("bootstrap", {})
        lines.append(f"bootstrap    {boot.get('replicates')} replicates over "
                     f"{boot.get('over')} (seed {boot.get('seed')}), 95% interval:")
        lines += _interval_lines(result)
    second = result.get("second")
    if second:
        sext = second["extractor"]
        lines.append(f"second       {sext['name']} sha256 {sext['sha256'][:12]}: "
                     f"{'metric':<11}{'samples':>10}{'real floor':>12}")
        sfloor = second.get("floor") or {}
        for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
            value, ref = second[key], sfloor.get(key)
            fmt = "{:.3f}" if key == "fid" else "{:.5f}" if key == "kid" else "{:.4f}"
            r = fmt.format(ref) if isinstance(ref, float) else "-"
            lines.append(f"{'':<13}{key:<11}{fmt.format(value):>10}{r:>12}")
        if second.get("uncertainty"):
            lines.append(f"{'':<13}95% bootstrap interval on {sext['name']}:")
            lines += _interval_lines(second)
    lines.append(
        f"time         {result['timings_s']['total']:.1f} s on {result['device']} "
        f"({result['num_threads']} threads)"
    )
    return "\n".join(lines)


def _interval_lines(result: dict) -> list[str]:
    """``metric  value [lo, hi]  (std)`` lines of a result's bootstrap ``uncertainty``."""
    lines = []
    for key, u in result["uncertainty"].items():
        fmt = "{:.3f}" if key == "fid" else "{:.5f}" if key == "kid" else "{:.4f}"
        lines.append(
            f"{'':<13}{key:<11}{fmt.format(result[key]):>10} "
            f"[{fmt.format(u['lo'])}, {fmt.format(u['hi'])}]  std {fmt.format(u['std'])}"
        )
    return lines


def cli_eval(argv: list[str] | None = None) -> int:
    """``python -m ddgan_core eval --samples PATH [--n N] [--k K] [--range {-11,01}] [--json]``.

    Parses ``argv`` with the command line's ``eval`` parser (:mod:`ddgan_core.cli`, the one
    definition) and runs :func:`ddgan_core.cli.run_eval`: every input (``--k``, ``--n``, the
    samples path, its dtype, shape and values under :data:`VALUE_RULE`) is checked before any
    feature is extracted; a bad one raises ``ValueError`` with one line naming the option, the
    value and what is allowed.
    """
    from ddgan_core import cli

    return cli.run_eval(cli.command_parser("eval").parse_args(argv))


def _cli_names(message: str) -> str:
    """A message about ``n=5`` / ``k=5`` (the Python names) as ``--n 5`` / ``--k 5``."""
    for name, option in (("n=", "--n "), ("k=", "--k ")):
        if message.startswith(name):
            return option + message[len(name):]
    return message


__all__ = [
    "REFERENCE_SUBSET",
    "VALUE_RANGES",
    "VALUE_RULE",
    "SamplesNotFoundError",
    "cli_eval",
    "evaluate_samples",
    "format_report",
    "load_samples",
]
