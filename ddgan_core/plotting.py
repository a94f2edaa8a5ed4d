"""Figures shared by the chapters: image grids and consistent styling."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

#: Matplotlib settings every chapter uses (``plt.rcParams.update(BOOK_STYLE)``).
BOOK_STYLE = {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False}


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
