"""Bootstrap uncertainty of the sample-quality metrics over the generated samples.

A metric computed from ``n`` generated samples is itself a random quantity: another ``n``
samples from the same generator would give another value. :func:`bootstrap_metrics` estimates
that spread with the nonparametric bootstrap (Efron 1979; Efron and Tibshirani 1993): each
replicate draws ``n`` of the generated features *with replacement* (seeded, so the same seed
gives the same replicates), recomputes FID, KID, precision, recall, density and coverage
against the *fixed* real side (reference statistics, reference subset, real k-NN radii), and
the spread of the replicates is reported as a standard deviation and a 95% percentile interval
(the 2.5th and 97.5th percentiles of the replicate values, bias-corrected: see below). Only the
generated side is resampled: the real-side reference is the same for every generator, so it
does not change a comparison between generators.

Nothing is recomputed from scratch per replicate; a replicate is a vector of multiplicities
``w`` (how often each original sample was drawn, summing to ``n``) and every metric is written
as a function of ``w`` over quantities computed once:

* **precision and density** are means over generated samples of per-sample facts against the
  fixed real balls (is sample ``i`` inside some real ball; how many real balls contain it), so a
  replicate is the ``w``-weighted mean of those facts;
* **coverage** asks, for each real point, whether some generated sample that is *present* in the
  replicate (``w_i > 0``) lies inside its ball; the (generated, real) pairs that do are listed
  once;
* **recall** needs the k-NN radii of the generated samples themselves. Drawn duplicates would
  make a naive k-NN radius zero (a point's own copies are its nearest neighbours), so in each
  replicate the radius of a present sample is the distance to its k-th nearest *distinct*
  original sample among those present in the replicate, itself and its copies excluded (see
  :func:`distinct_neighbour_radii`). With every sample present once this is exactly the radius
  that :func:`~ddgan_core.metrics.prdc.compute_prdc` uses. Each sample's nearest neighbours are
  listed once (in ascending order) and a replicate walks down the list to the k-th present one;
  the rare sample with fewer than k present neighbours in its list is recomputed exactly;
* **FID** from the resampled mean and covariance (weighted moments of the same features) and the
  Frechet distance ``|mu_b - mu_r|^2 + tr S_b + tr S_r - 2 tr (S_b S_r)^(1/2)``. The trace of the
  matrix square root is taken as ``sum sqrt(eig(A S_b A))`` with ``A = S_r^(1/2)`` (symmetric
  eigenvalue problems; the eigenvalues of ``S_b S_r`` and ``A S_b A`` coincide), the same
  quantity that :func:`~ddgan_core.metrics.fid.frechet_distance` computes with
  ``scipy.linalg.sqrtm``, which takes ~0.35 s per 128x128 call on one thread;
* **KID**: the reported KID is clean-fid's estimate averaged over random subsets. A replicate is
  that reported value plus the change, from the original samples to the replicate, of the
  full-sample unbiased MMD^2 estimate with the same kernel ``k(x, y) = (x.y / d + 1)^3``
  (Binkowski et al. 2018): ``mean_{i != j} k(g_i, g_j) - 2 mean_{i, r} k(g_i, r)`` over the
  ``w``-weighted generated samples, pairs of copies of one original sample excluded (the
  real-real term does not depend on the generated samples and cancels). This captures the
  spread from the choice of generated samples; the separate spread from clean-fid's random
  subsets is the reported ``kid_std``.

Intervals. Precision and density are linear in ``w``, so their replicates centre on the point
estimate; KID's and recall's nearly do. FID is biased upwards at finite ``n`` and a replicate,
which holds only about ``0.632 n`` distinct samples, is more so; coverage falls with fewer
distinct samples. The plain percentile interval of such a metric can miss its own point
estimate (n = 2,000 test images scored as generated: FID 0.187, replicates 0.29-0.52; coverage
0.967, replicates 0.90-0.93). So ``lo``/``hi`` are the percentiles of the replicates shifted by
the bootstrap bias estimate (replicate mean minus point estimate), reported as ``bias``: the
plain percentile interval is ``[lo + bias, hi + bias]`` (see :func:`percentile_summary`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .features import default_device
from .fid import fid_from_features, kid
from .prdc import _sq_distances, _to_tensor

#: The metrics :func:`bootstrap_metrics` reports, in this order.
BOOTSTRAP_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")
#: Coverage of the percentile interval.
CONFIDENCE = 0.95
#: The range of each metric, which clips its interval (KID, an unbiased estimate, can be < 0).
BOUNDS = {"fid": (0.0, np.inf), "precision": (0.0, 1.0), "recall": (0.0, 1.0),
          "density": (0.0, np.inf), "coverage": (0.0, 1.0)}
#: Row chunk of the distance computations: the same as ``compute_prdc``'s default, so the same
#: matrix products, hence bit-identical distances and identical decisions.
CHUNK = 1024


# ----------------------------------------------------------------------------------------------
# resampling


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Multiplicities ``[n_boot, n]`` (int64, each row summing to ``n``) of ``n`` draws with
    replacement from ``n`` items, one row per bootstrap replicate.

    The draws are ``numpy.random.default_rng(seed).integers(0, n, (n_boot, n))``: the same
    ``seed`` gives the same replicates on every machine.
    """
    if n < 1 or n_boot < 1:
        raise ValueError(f"need n >= 1 and n_boot >= 1, got n={n}, n_boot={n_boot}")
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    offsets = (np.arange(n_boot, dtype=np.int64) * n)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * n).reshape(n_boot, n)


def percentile_summary(values, point: float | None = None, confidence: float = CONFIDENCE,
                       bounds: tuple[float, float] | None = None) -> dict:
    """``{"std", "lo", "hi", "n_boot"}`` (and ``"bias"`` with ``point``) of bootstrap replicates.

    ``std``: the replicates' standard deviation (ddof=1). ``lo``/``hi``: the ``confidence``
    percentile interval (for 95%: 2.5th and 97.5th percentiles, linear interpolation) of the
    replicates. With ``point`` (the estimate on the original samples) the replicates are first
    shifted by their bias ``bias = mean(replicates) - point`` (bias-corrected percentile
    interval: the plain percentile interval is ``[lo + bias, hi + bias]``), so that an
    estimator whose replicates are systematically off (FID, coverage) gets an interval around
    its reported value, and ``bias`` is reported; ``bounds`` (the metric's range) clips
    ``lo``/``hi``.
    """
    values = np.asarray(values, dtype=np.float64)
    bias = float(values.mean() - point) if point is not None else 0.0
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(values - bias, [tail, 100 - tail])
    if bounds is not None:
        lo, hi = np.clip([lo, hi], *bounds)
    out = {
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "lo": float(lo),
        "hi": float(hi),
        "n_boot": int(values.size),
    }
    if point is not None:
        out["bias"] = bias
    return out


# ----------------------------------------------------------------------------------------------
# precision, recall, density, coverage as functions of the multiplicities


def _kth_distinct_sq(x: torch.Tensor, x_sq: torch.Tensor, rows: torch.Tensor,
                     present: torch.Tensor, k: int) -> torch.Tensor:
    """Squared distance from each ``x[rows]`` to its k-th nearest point among ``x[present]``
    (indices), the row itself excluded by index."""
    if present.numel() <= k:
        raise ValueError(
            f"a bootstrap replicate holds {present.numel()} distinct samples; the k-NN radius "
            f"needs more than k={k} (use more samples)"
        )
    d = _sq_distances(x[rows], x[present], x_sq[present])
    d[rows[:, None] == present[None, :]] = float("inf")
    return torch.topk(d, k, dim=1, largest=False).values[:, -1]


def distinct_neighbour_radii(features, counts, k: int, device=None) -> np.ndarray:
    """k-NN radii of the generated samples in a bootstrap replicate, duplicates aside.

    ``counts[i]`` is how often original sample ``i`` was drawn. For each *present* sample
    (``counts[i] > 0``) the radius is the Euclidean distance to its k-th nearest *distinct*
    original sample among the present ones, itself (and so its own copies) excluded; absent
    samples get NaN. With all counts one this is the radius ``compute_prdc`` uses for the fake
    side. (The direct computation; :func:`weighted_prdc` gets the same radii from precomputed
    neighbour lists.)
    """
    device = torch.device(device or default_device())
    x = _to_tensor(features, device)
    counts = torch.as_tensor(np.asarray(counts)).to(device)
    if counts.shape != (x.shape[0],):
        raise ValueError(f"counts must have shape [{x.shape[0]}], got {tuple(counts.shape)}")
    present = torch.nonzero(counts > 0).flatten()
    x_sq = (x * x).sum(dim=1)
    radii = torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=device)
    for start in range(0, present.numel(), CHUNK):
        rows = present[start: start + CHUNK]
        radii[rows] = _kth_distinct_sq(x, x_sq, rows, present, k).sqrt()
    return radii.cpu().numpy()


@dataclass
class PRDCFacts:
    """What precision, recall, density and coverage of any resample of the generated features
    depend on, computed once by :func:`prdc_facts` (indices are numpy int64 arrays).

    ``inside``: per generated sample, the number of real balls ``||g - x|| < r_k(x)`` that hold
    it; ``cover_gen``/``cover_real``: the (generated, real) pairs with ``g`` inside the real ball;
    ``neigh_idx``/``neigh_sq``: each generated sample's ``m`` nearest other generated samples
    and squared distances, ascending; ``recall_gen``/``recall_real``/``recall_t``: the pairs
    with the real point inside the generated ball of radius ``neigh_sq[g, m - 1]``, and
    ``recall_t`` the smallest list position ``j`` whose radius ``neigh_sq[g, j]`` holds it.
    """

    k: int
    n_gen: int
    n_real: int
    inside: np.ndarray
    cover_gen: np.ndarray
    cover_real: np.ndarray
    neigh_idx: np.ndarray
    neigh_sq: np.ndarray
    recall_gen: np.ndarray
    recall_real: np.ndarray
    recall_t: np.ndarray
    gen: torch.Tensor
    gen_sq: torch.Tensor
    real: torch.Tensor
    real_sq: torch.Tensor


def prdc_facts(real_features, gen_features, k: int, real_radii: torch.Tensor | None = None,
               device=None, neighbours: int | None = None) -> PRDCFacts:
    """Precompute the per-generated-sample facts behind precision, recall, density and coverage
    (:class:`PRDCFacts`): one pass over the generated-vs-real and generated-vs-generated
    distances, in the same float64 chunks as :func:`~ddgan_core.metrics.prdc.compute_prdc`.

    ``real_radii``: the real k-NN radii (``reference_radii``); computed when ``None``.
    ``neighbours``: length of each generated sample's neighbour list (default ``3k + 10``, so
    that a bootstrap replicate, holding each original sample with probability ~0.632, almost
    never lacks k present neighbours in it; when it does, that radius is computed exactly).
    Memory: the pair lists hold about ``density * k * n`` cover pairs and, for recall, the
    real points inside each generated sample's widest candidate ball (typically a few times
    ``neighbours * n_real``; n = n_real = 10,000 test images: ~0.3 M pairs, a few MB).
    """
    from .prdc import _sq_radii

    device = torch.device(device or default_device())
    real = _to_tensor(real_features, device)
    gen = _to_tensor(gen_features, device)
    if real.shape[1] != gen.shape[1]:
        raise ValueError(
            f"real and generated features differ in dimension: {real.shape[1]} vs {gen.shape[1]}"
        )
    n_gen, n_real = gen.shape[0], real.shape[0]
    if n_gen <= k:
        raise ValueError(f"need more than k={k} generated samples, got {n_gen}")
    if real_radii is None:
        real_r2 = _sq_radii(real, k, CHUNK)
    else:
        real_r2 = real_radii.to(device=device, dtype=torch.float64).square()
        if real_r2.shape != (n_real,):
            raise ValueError(f"real_radii must have shape [{n_real}]")
    m = min(n_gen - 1, neighbours if neighbours is not None else 3 * k + 10)
    if m < k:
        raise ValueError(f"neighbours={neighbours} must be at least k={k}")
    gen_sq = (gen * gen).sum(dim=1)
    real_sq = (real * real).sum(dim=1)
    neigh_idx, neigh_sq = [], []
    inside, cover, recall = [], [], []
    for start in range(0, n_gen, CHUNK):
        rows = torch.arange(start, min(start + CHUNK, n_gen), device=device)
        d = _sq_distances(gen[start: start + CHUNK], gen, gen_sq)
        d[torch.arange(rows.numel(), device=device), rows] = float("inf")  # not itself
        nearest = torch.topk(d, m, dim=1, largest=False, sorted=True)
        neigh_idx.append(nearest.indices)
        neigh_sq.append(nearest.values)
        d = _sq_distances(gen[start: start + CHUNK], real, real_sq)  # [chunk, n_real]
        in_real = d < real_r2[None, :]
        inside.append(in_real.sum(dim=1))
        pairs = torch.nonzero(in_real)
        cover.append(torch.stack([pairs[:, 0] + start, pairs[:, 1]]))
        # position of the first list radius that holds x: x in ball(j) iff d < neigh_sq[j]
        t = torch.searchsorted(nearest.values.contiguous(), d.contiguous(), right=True)
        pairs = torch.nonzero(t < m)
        recall.append(torch.stack([pairs[:, 0] + start, pairs[:, 1],
                                   t[pairs[:, 0], pairs[:, 1]]]))
    # int32 halves the memory of the pair lists (12 bytes per recall pair, 8 per cover pair)
    cover_pairs = torch.cat(cover, dim=1).to(torch.int32).cpu().numpy()
    recall_pairs = torch.cat(recall, dim=1).to(torch.int32).cpu().numpy()
    return PRDCFacts(
        k=k, n_gen=n_gen, n_real=n_real,
        inside=torch.cat(inside).cpu().numpy(),
        cover_gen=cover_pairs[0], cover_real=cover_pairs[1],
        neigh_idx=torch.cat(neigh_idx).cpu().numpy(),
        neigh_sq=torch.cat(neigh_sq).cpu().numpy(),
        recall_gen=recall_pairs[0], recall_real=recall_pairs[1], recall_t=recall_pairs[2],
        gen=gen, gen_sq=gen_sq, real=real, real_sq=real_sq,
    )


def _kth_present_position(facts: PRDCFacts, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per generated sample: the position in its neighbour list of its k-th present neighbour,
    and whether the list holds k present neighbours at all."""
    seen = np.cumsum(present[facts.neigh_idx], axis=1)
    ok = seen[:, -1] >= facts.k
    return np.argmax(seen >= facts.k, axis=1), ok


def weighted_prdc(facts: PRDCFacts, counts) -> dict:
    """Precision, recall, density and coverage of the resample that holds original generated
    sample ``i`` ``counts[i]`` times (Python floats).

    Precision = ``sum_i w_i [g_i in some real ball] / sum w``; density =
    ``sum_i w_i #(real balls holding g_i) / (k sum w)``; coverage = fraction of real points
    whose ball holds a present sample; recall = fraction of real points inside the ball of a
    present sample, whose radius is the distance to its k-th nearest distinct present original
    sample (:func:`distinct_neighbour_radii`). With all counts one this equals
    :func:`~ddgan_core.metrics.prdc.compute_prdc` on the original features.
    """
    counts = np.asarray(counts)
    if counts.shape != (facts.n_gen,):
        raise ValueError(f"counts must have shape [{facts.n_gen}], got {counts.shape}")
    w = counts.astype(np.float64)
    total = w.sum()
    present = counts > 0
    covered = np.zeros(facts.n_real, dtype=bool)
    covered[facts.cover_real[present[facts.cover_gen]]] = True
    position, ok = _kth_present_position(facts, present)
    g = facts.recall_gen
    held = present[g] & ok[g] & (facts.recall_t <= position[g])
    recalled = np.zeros(facts.n_real, dtype=bool)
    recalled[facts.recall_real[held]] = True
    short = np.nonzero(present & ~ok)[0]
    if short.size:  # fewer than k present neighbours in the list: the exact radius
        device = facts.gen.device
        rows = torch.from_numpy(short).to(device)
        r2 = _kth_distinct_sq(facts.gen, facts.gen_sq, rows,
                              torch.from_numpy(np.nonzero(present)[0]).to(device), facts.k)
        d = _sq_distances(facts.gen[rows], facts.real, facts.real_sq)
        recalled |= (d < r2[:, None]).any(dim=0).cpu().numpy()
    return {
        "precision": float(w @ (facts.inside > 0) / total),
        "recall": float(recalled.mean()),
        "density": float(w @ facts.inside / (facts.k * total)),
        "coverage": float(covered.mean()),
    }


# ----------------------------------------------------------------------------------------------
# FID and KID as functions of the multiplicities


def fid_replicates(gen_features, mu_ref, sigma_ref, counts) -> np.ndarray:
    """FID of each resample (rows of ``counts``) against the reference Gaussian.

    The resample's mean and covariance (``np.cov`` convention, ``n - 1``) are the
    multiplicity-weighted moments of the original features; the Frechet distance is
    ``|mu_b - mu_r|^2 + tr S_b + tr S_r - 2 sum sqrt(eig(A S_b A))`` with ``A = S_r^(1/2)``
    (eigenvalues below zero from rounding clipped to zero), which equals
    :func:`~ddgan_core.metrics.fid.frechet_distance` (clean-fid's ``sqrtm`` form).
    """
    x = np.asarray(gen_features.detach().cpu() if isinstance(gen_features, torch.Tensor)
                   else gen_features, dtype=np.float64)
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    n = x.shape[0]
    mean = x.mean(axis=0)
    xc = x - mean
    sigma_ref = np.asarray(sigma_ref, dtype=np.float64)
    lam, vec = np.linalg.eigh(sigma_ref)
    root = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T
    tr_ref = float(np.trace(sigma_ref))
    shift = counts @ xc / n  # [B, D]: the resample's mean minus the original mean
    out = np.empty(counts.shape[0])
    for b, w in enumerate(counts):
        total = w.sum()
        sigma = (xc.T @ (w[:, None] * xc) - total * np.outer(shift[b], shift[b])) / (total - 1)
        inner = root @ sigma @ root
        eig = np.linalg.eigvalsh((inner + inner.T) / 2)
        diff = mean + shift[b] - np.asarray(mu_ref, dtype=np.float64)
        out[b] = (diff @ diff + np.trace(sigma) + tr_ref
                  - 2 * np.sqrt(np.clip(eig, 0, None)).sum())
    return out


def kid_statistic_replicates(gen_features, real_features, counts) -> np.ndarray:
    """The generated-sample part of the unbiased MMD^2 estimate with KID's kernel
    ``k(x, y) = (x.y / d + 1)^3`` for each resample (rows of ``counts``, multiplicities ``w``):
    ``(w^T K w - sum_i w_i^2 K_ii) / (n^2 - sum_i w_i^2) - 2 sum_i w_i mean_r k(g_i, r) / n``,
    i.e. the mean kernel over pairs of drawn samples that are not copies of one original, minus
    twice the mean generated-real kernel. MMD^2 is this plus the real-real mean kernel, which
    does not depend on the resample. Float64, in row chunks.
    """
    device = torch.device("cpu")
    g = _to_tensor(gen_features, device)
    r = _to_tensor(real_features, device)
    w = torch.as_tensor(np.atleast_2d(np.asarray(counts)), dtype=torch.float64)
    n, dim = g.shape
    row_real = torch.empty(n, dtype=torch.float64)
    kw = torch.empty(w.shape[0], n, dtype=torch.float64)  # (K w)_i per replicate
    for start in range(0, n, CHUNK):
        rows = g[start: start + CHUNK]
        row_real[start: start + CHUNK] = ((rows @ r.T) / dim + 1).pow_(3).mean(dim=1)
        kernel = ((rows @ g.T) / dim + 1).pow_(3)  # [chunk, n]
        kw[:, start: start + CHUNK] = w @ kernel.T
    diag = ((g * g).sum(dim=1) / dim + 1) ** 3
    total = w.sum(dim=1)
    w2 = w.square()
    same = ((w * kw).sum(dim=1) - w2 @ diag) / (total.square() - w2.sum(dim=1))
    return (same - 2 * (w @ row_real) / total).numpy()


# ----------------------------------------------------------------------------------------------
# all metrics


def bootstrap_metrics(
    gen_features,
    reference: dict,
    *,
    n_boot: int,
    seed: int,
    k: int,
    device,
    real_radii: torch.Tensor,
    real_features,
    point: dict | None = None,
    kid_subsets: int = 100,
) -> dict:
    """Bootstrap uncertainty of FID, KID, precision, recall, density and coverage over the
    generated samples (see the module docstring for how each replicate is computed).

    ``gen_features`` ``[n, D]``; ``reference``: the reference statistics
    (:func:`~ddgan_core.metrics.fid.reference_stats`: ``mu``/``sigma`` for FID,
    ``subset_features`` for KID); ``real_features``/``real_radii``: the real side of
    precision/recall/density/coverage and its k-NN radii (as ``evaluate_samples`` passes them to
    ``compute_prdc``). ``n_boot`` replicates, each ``n`` draws with replacement
    (:func:`resample_counts` with ``seed``). ``point``: the ``fid`` and ``kid`` the caller
    reports, computed here when absent (KID with ``kid_subsets`` subsets, seed 0, as
    ``evaluate_samples``); the precision/recall/density/coverage point estimates are taken
    from the precomputed facts at unit weights, which equal ``compute_prdc``'s.

    Returns ``{metric: {"std", "lo", "hi", "n_boot", "bias"}}`` for each of
    :data:`BOOTSTRAP_METRICS`: ``std`` of the replicates, ``lo``/``hi`` the 95% percentile
    interval of the replicates shifted by ``bias`` (their mean minus the point estimate; see
    :func:`percentile_summary`), clipped to the metric's range (:data:`BOUNDS`).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot={n_boot!r}: the number of replicates must be an integer >= 2")
    device = torch.device(device or default_device())
    x = gen_features.detach().cpu().double() if isinstance(gen_features, torch.Tensor) \
        else torch.from_numpy(np.asarray(gen_features, dtype=np.float64))
    n = x.shape[0]
    counts = resample_counts(n, n_boot, seed)
    point = dict(point or {})
    if point.get("fid") is None:
        point["fid"] = fid_from_features(x, reference["mu"], reference["sigma"])
    if point.get("kid") is None:
        point["kid"] = kid(x, reference["subset_features"], num_subsets=kid_subsets)[0]
    facts = prdc_facts(real_features, x, k, real_radii=real_radii, device=device)
    point.update(weighted_prdc(facts, np.ones(n, dtype=np.int64)))
    replicates = {name: np.empty(n_boot) for name in BOOTSTRAP_METRICS}
    for b in range(n_boot):
        for name, value in weighted_prdc(facts, counts[b]).items():
            replicates[name][b] = value
    replicates["fid"] = fid_replicates(x, reference["mu"], reference["sigma"], counts)
    ones = np.ones((1, n), dtype=np.int64)
    stats = kid_statistic_replicates(x, reference["subset_features"],
                                     np.concatenate([ones, counts]))
    replicates["kid"] = point["kid"] + stats[1:] - stats[0]
    return {name: percentile_summary(replicates[name], point[name], bounds=BOUNDS.get(name))
            for name in BOOTSTRAP_METRICS}


__all__ = [
    "BOOTSTRAP_METRICS",
    "CONFIDENCE",
    "PRDCFacts",
    "bootstrap_metrics",
    "distinct_neighbour_radii",
    "fid_replicates",
    "kid_statistic_replicates",
    "percentile_summary",
    "prdc_facts",
    "resample_counts",
    "weighted_prdc",
]
