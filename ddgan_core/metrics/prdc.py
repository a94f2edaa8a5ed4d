"""Improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et
al. 2020) on feature vectors, in torch.

The definitions are exactly those of the ``prdc`` package (``prdc.compute_prdc``), with
``r_k(x)`` the distance from ``x`` to its k-th nearest neighbour within its own set (the
(k+1)-th smallest distance counting ``x`` itself) and strict inequalities:

* precision = fraction of fake ``y`` with ``||y - x|| < r_k(x)`` for some real ``x``;
* recall    = fraction of real ``x`` with ``||x - y|| < r_k(y)`` for some fake ``y``;
* density   = (1/k) * mean over fake ``y`` of the number of real ``x`` with
  ``||y - x|| < r_k(x)``;
* coverage  = fraction of real ``x`` whose nearest fake is closer than ``r_k(x)``.

Unlike ``prdc`` (which materialises the full N x M distance matrix), distances are computed in
row chunks in float64, so 10k x 10k sets fit in a few hundred MB on CPU or GPU.
"""

from __future__ import annotations

import numpy as np
import torch

from .features import default_device


def _to_tensor(features, device) -> torch.Tensor:
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    if not isinstance(features, torch.Tensor):
        features = torch.as_tensor(features)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got shape {tuple(features.shape)}")
    return features.to(device=device, dtype=torch.float64)


def _sq_distances(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[len(a), len(b)]`` in one fused matmul (float64).

    Comparing squared distances gives the same decisions as comparing distances (the square
    root is monotone) and saves a pass; float64 keeps the cancellation error of
    ``|a|^2 + |b|^2 - 2 a.b`` far below any gap that matters.
    """
    a_sq = (a * a).sum(dim=1, keepdim=True)
    return torch.addmm(b_sq[None, :], a, b.T, alpha=-2.0).add_(a_sq).clamp_min_(0.0)


def nearest_neighbour_radii(
    features, nearest_k: int = 5, chunk_size: int = 1024, device=None
) -> torch.Tensor:
    """Distance of each row to its k-th nearest neighbour in the same set (float64, ``[N]``)."""
    device = torch.device(device or default_device())
    x = _to_tensor(features, device)
    return _sq_radii(x, nearest_k, chunk_size).sqrt()


def _sq_radii(x: torch.Tensor, nearest_k: int, chunk_size: int) -> torch.Tensor:
    if nearest_k < 1:
        raise ValueError(f"nearest_k must be >= 1, got {nearest_k}")
    if x.shape[0] <= nearest_k:
        raise ValueError(f"need more than nearest_k={nearest_k} samples, got {x.shape[0]}")
    x_sq = (x * x).sum(dim=1)
    radii = []
    for start in range(0, x.shape[0], chunk_size):
        d = _sq_distances(x[start: start + chunk_size], x, x_sq)
        # the k+1 smallest include the point itself; their maximum is the k-th neighbour
        radii.append(torch.topk(d, nearest_k + 1, dim=1, largest=False).values.max(dim=1).values)
    return torch.cat(radii)


def compute_prdc(
    real_features,
    fake_features,
    nearest_k: int = 5,
    chunk_size: int = 1024,
    device=None,
    real_radii: torch.Tensor | None = None,
) -> dict:
    """Precision, recall, density and coverage of ``fake_features`` w.r.t. ``real_features``.

    Arrays or tensors ``[N, D]`` and ``[M, D]``; returns a dict of Python floats.
    ``real_radii`` (from :func:`nearest_neighbour_radii` on the same real features and k) may be
    passed to skip recomputing them.
    """
    device = torch.device(device or default_device())
    real = _to_tensor(real_features, device)
    fake = _to_tensor(fake_features, device)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}"
        )
    if real_radii is None:
        real_r2 = _sq_radii(real, nearest_k, chunk_size)
    else:
        real_r2 = real_radii.to(device=device, dtype=torch.float64).square()
        if real_r2.shape != (real.shape[0],):
            raise ValueError(f"real_radii must have shape [{real.shape[0]}]")
    fake_r2 = _sq_radii(fake, nearest_k, chunk_size)
    real_sq = (real * real).sum(dim=1)
    precise = 0
    density_count = 0
    recalled = torch.zeros(real.shape[0], dtype=torch.bool, device=device)
    nearest_fake = torch.full((real.shape[0],), float("inf"), dtype=torch.float64, device=device)
    for start in range(0, fake.shape[0], chunk_size):
        d = _sq_distances(fake[start: start + chunk_size], real, real_sq)  # [chunk, N_real]
        inside_real = d < real_r2[None, :]
        precise += int(inside_real.any(dim=1).sum())
        density_count += int(inside_real.sum())
        recalled |= (d < fake_r2[start: start + chunk_size, None]).any(dim=0)
        nearest_fake = torch.minimum(nearest_fake, d.min(dim=0).values)
    n_fake = fake.shape[0]
    return {
        "precision": precise / n_fake,
        "recall": float(recalled.double().mean()),
        "density": density_count / (nearest_k * n_fake),
        "coverage": float((nearest_fake < real_r2).double().mean()),
    }


__all__ = ["compute_prdc", "nearest_neighbour_radii"]
