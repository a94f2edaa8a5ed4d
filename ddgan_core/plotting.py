"""Figures shared by the chapters: image grids, consistent styling and caption lines.

Line plots are shown as SVG (sharp at any zoom); sample grids as PNG, upscaled by whole
factors with nearest-neighbour pixels so that every pixel of a 28x28 image stays a sharp square
(:func:`use_book_style`, :func:`grid_image`, :func:`figure_png`). :func:`provenance` and
:func:`device_label` turn a cache entry's manifest into the words a caption uses.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

#: Matplotlib settings every chapter uses (``plt.rcParams.update(BOOK_STYLE)``).
BOOK_STYLE = {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False}

#: Device pixels per CSS pixel of the PNG figures (2: sharp on high-density screens).
PNG_OVERSAMPLE = 2


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` and make every inline and glued matplotlib figure SVG."""
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    plt.rcParams.update(BOOK_STYLE)
    set_matplotlib_formats("svg")


def to_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> np.ndarray:
    """Tile images ``[N, 1, H, W]`` in [-1, 1] (or uint8 ``[N, H, W]``) into an array in [0, 1]."""
    if images.dtype == torch.uint8:
        images = images.float().div(255.0)
        if images.ndim == 3:
            images = images[:, None]
    else:
        images = (images.detach().float().clamp(-1, 1) + 1) / 2
    images = images.cpu()
    n, _, h, w = images.shape
    ncol = nrow
    nrows = int(np.ceil(n / ncol))
    grid = np.ones((nrows * (h + padding) + padding, ncol * (w + padding) + padding))
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top: top + h, left: left + w] = images[i, 0].numpy()
    return grid


def show_grid(images: torch.Tensor, nrow: int, ax=None, title: str | None = None):
    """Draw :func:`to_grid` of ``images`` on ``ax`` (new figure when ``None``); returns the axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(nrow * 0.6, max(1, len(images) // nrow) * 0.6))
    ax.imshow(to_grid(images, nrow), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> Path:
    """Write the grid of ``images`` as a PNG (for the result cache)."""
    path = Path(path)
    plt.imsave(path, to_grid(images, nrow), cmap="gray", vmin=0, vmax=1)
    return path


def grid_image(grid: np.ndarray | str | Path, scale: int = 2):
    """A sample grid as a PNG shown at ``scale`` CSS pixels per image pixel.

    ``grid`` is an array in [0, 1] (:func:`to_grid`) or a grid PNG of the result cache
    (:func:`save_grid`). The PNG holds ``scale * PNG_OVERSAMPLE`` device pixels per image pixel,
    each a sharp square (nearest neighbour), and carries its display width, so that a 28-pixel
    image is ``28 * scale`` CSS pixels wide on the page. Returns an ``IPython.display.Image``
    for ``glue`` or ``display``.
    """
    from IPython.display import Image
    from PIL import Image as PILImage

    if not isinstance(grid, np.ndarray):
        with PILImage.open(grid) as image:
            grid = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a whole number >= 1, got {scale!r}")
    factor = int(scale) * PNG_OVERSAMPLE
    pixels = np.clip(np.round(np.asarray(grid) * 255), 0, 255).astype(np.uint8)
    big = pixels.repeat(factor, axis=0).repeat(factor, axis=1)
    buffer = io.BytesIO()
    PILImage.fromarray(big).save(buffer, format="png", optimize=True)
    return Image(data=buffer.getvalue(), format="png", width=pixels.shape[1] * int(scale))


def figure_png(fig, oversample: int = PNG_OVERSAMPLE):
    """A matplotlib figure of images (a labelled sample grid) as a high-resolution PNG.

    Rendered at ``oversample`` times the figure's dpi and shown at the size the figure has at
    its own dpi (the SVG figures' scale), so image pixels stay sharp on any screen. Returns an
    ``IPython.display.Image`` for ``glue``; the figure is closed.
    """
    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi * oversample, bbox_inches="tight",
                pad_inches=0.05)
    width_px = None
    try:
        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(buffer.getvalue())) as image:
            width_px = round(image.size[0] / oversample)
    finally:
        plt.close(fig)
    return Image(data=buffer.getvalue(), format="png", width=width_px)


def device_label(manifest: dict[str, Any]) -> str:
    """A cache entry's device in words: ``"an NVIDIA H200 GPU"``, ``"an AMD EPYC CPU (2
    threads)"``."""
    kind, _, name = str(manifest.get("device", "unknown:unknown")).partition(":")
    threads = manifest.get("threads")
    # "an" before a vowel, or before an acronym read letter by letter from one ("an NVIDIA")
    acronym = name[:2].isupper() and name[:1] in "FHLMNRSX"
    article = "an" if name[:1].upper() in "AEIOU" or acronym else "a"
    if kind == "cuda":
        return f"{article} {name} GPU"
    if kind == "cpu":
        count = f" ({threads} thread{'s' if threads != 1 else ''})" if threads else ""
        return f"{article} {name} CPU{count}"
    return str(manifest.get("device", "an unrecorded device"))


def commit_label(manifest: dict[str, Any]) -> str:
    """``"commit 15d1bc2a01"``, or ``"commit not recorded"`` when the run had no git commit."""
    commit = str(manifest.get("git_commit") or "unknown")
    if commit in {"unknown", "?", ""}:
        return "commit not recorded"
    dirty = commit.endswith("-dirty")
    return f"commit {commit[:10]}" + (" with uncommitted changes" if dirty else "")


def provenance(result) -> str:
    """One line for captions: profile, device, threads, wall time, date and commit of a cache
    entry (like :meth:`~ddgan_core.cache.Result.provenance`, with the device in words and
    ``commit not recorded`` instead of ``commit unknown``)."""
    man = result.manifest
    return (
        f"profile {result.config.get('profile', '?')}, computed on {device_label(man)} in "
        f"{man.get('wall_time_s', 0):,.0f} s on {str(man.get('date', '?'))[:10]}, "
        f"{commit_label(man)}"
    )


def cost(results: Iterable[Any]) -> dict[str, Any]:
    """What a set of cache entries cost: total wall ``seconds``, the ``devices`` in words,
    ``where`` they ran (``"on a GPU"``, ``"on a CPU"`` or ``"on a GPU and a CPU"``), ``gpu``
    (any on a GPU), ``from_cache`` (every one read from the cache, none computed in this run)
    and ``source``: ``"read from the committed cache"`` (the repository's ``results/``),
    ``"read from the local result cache"`` or ``"computed in this run"``."""
    from .cache import committed_root

    results = list(results)
    devices = list(dict.fromkeys(device_label(r.manifest) for r in results))
    committed = committed_root().resolve()
    if any(getattr(r, "computed", False) for r in results):
        source = "computed in this run"
    elif all(Path(r.path).resolve().is_relative_to(committed) for r in results):
        source = "read from the committed cache"
    else:
        source = "read from the local result cache"
    kinds = {str(r.manifest.get("device", "")).partition(":")[0] for r in results}
    where = " and ".join(f"a {name}" for kind, name in (("cuda", "GPU"), ("cpu", "CPU"))
                         if kind in kinds)
    return {
        "seconds": float(sum(float(r.manifest.get("wall_time_s", 0.0)) for r in results)),
        "devices": " and ".join(devices) if devices else "no device",
        "where": f"on {where}" if where else "on an unrecorded device",
        "gpu": "cuda" in kinds,
        "from_cache": not any(getattr(r, "computed", False) for r in results),
        "source": source,
    }


def machine_label() -> str:
    """This machine's CPU in words, for "executing this page took N s on ...":
    ``"an AMD EPYC CPU (2 cores)"``."""
    import os

    from .device import device_name

    label = device_label({"device": f"cpu:{device_name('cpu')}"})
    cores = os.cpu_count()
    return f"{label} ({cores} core{'s' if cores != 1 else ''})" if cores else label
