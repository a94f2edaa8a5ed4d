"""The evidence lower bound of a Gaussian diffusion, and the toys that check it numerically.

The chapter "The evidence lower bound" derives the seed's eqs. (3)-(6); this module computes
everything it checks. Notation is the paper's (1-based ``t = 1..T``); arrays indexed by the
library's 0-based code step ``k = t - 1`` say so (see :mod:`ddgan_core.diffusion`).

* eq. (5): the per-step term L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) of two
  Gaussians, in closed form                                  -> :func:`gaussian_kl`,
  :func:`posterior_kl_exact`
* eq. (6), corrected: that KL equals ``lambda_t ||eps - eps_theta||^2 + C_t`` with
  ``lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t))``
                                  -> :func:`elbo_weights`, :func:`posterior_kl_from_eps`,
  :func:`kl_identity_check`; the seed's printed weight -> :func:`seed_weights`
* eq. (4): the ELBO of the best Gaussian-kernel reverse model of a 1-D Gaussian mixture, whose
  posterior mean E[x_0 | x_t] is known in closed form (:mod:`ddgan_core.mixtures`)
                                                             -> :class:`GaussianMixture`,
  :func:`elbo_monte_carlo`, :func:`elbo_gap_sweep`
* sec. 2.2: the true reverse kernel q(x_{t-1} | x_t) of a 2-D mixture on a grid, and how far it
  is from a Gaussian as the step grows                      -> :func:`reverse_kernel_grid`,
  :func:`kernel_summary`, :func:`kernel_sweep`

Everything runs in float64 numpy (torch only where the library's diffusion is called) and is
seeded: the same arguments give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .diffusion import GaussianDiffusion, make_beta_schedule
from .mixtures import ELBO_RING, LOG_2PI, GaussianMixture, ring8, three_gaussians_1d

__all__ = [
    "GaussianMixture",
    "KernelGrid",
    "elbo_gap_sweep",
    "elbo_monte_carlo",
    "elbo_weights",
    "eight_gaussians",
    "expected_log_prob_1d",
    "gaussian_kl",
    "kernel_summary",
    "kernel_sweep",
    "kl_identity_check",
    "posterior_kl_exact",
    "posterior_kl_from_eps",
    "reverse_kernel_grid",
    "seed_weights",
    "three_gaussians_1d",
    "vp_step_levels",
]

# --------------------------------------------------------------------------------------------
# eqs. (5)-(6): one step's KL and the weighted squared error
# --------------------------------------------------------------------------------------------


def gaussian_kl(mean1, var1, mean2, var2):
    """Elementwise KL(N(mean1, var1) || N(mean2, var2)) of univariate Gaussians.

    ``0.5 (log(var2 / var1) + (var1 + (mean1 - mean2)^2) / var2 - 1)``; sum over the coordinates
    of a diagonal Gaussian. Works on numpy arrays and torch tensors alike (broadcasting).
    """
    lib = torch if isinstance(mean1, torch.Tensor) else np
    return 0.5 * (lib.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _reverse_variance(diffusion: GaussianDiffusion, sigma: str) -> np.ndarray:
    """sigma_t^2 per code step: ``"posterior"`` (beta~_t, Ho et al.'s "fixed small") or
    ``"beta"`` (beta_t, "fixed large")."""
    if sigma == "posterior":
        return diffusion.posterior_variance
    if sigma == "beta":
        return diffusion.betas
    raise ValueError(f"sigma must be 'posterior' or 'beta', got {sigma!r}")


def elbo_weights(diffusion: GaussianDiffusion, sigma: str = "posterior") -> np.ndarray:
    """The weights lambda_t of the corrected eq. (6), per code step (entry 0, t = 1, is NaN).

    ``lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t))`` for t = 2..T: the factor of
    ``||eps - eps_theta||^2`` in KL(q(x_{t-1} | x_t, x_0) || N(mu_theta, sigma_t^2 I)). With
    ``sigma = "posterior"`` (sigma_t^2 = beta~_t) it simplifies to
    ``beta_t / (2 alpha_t (1 - abar_{t-1}))``. The t = 1 term L_0 is a decoder likelihood, not a
    KL of this form, hence NaN.
    """
    sigma2 = _reverse_variance(diffusion, sigma)
    b, a, abar = diffusion.betas, diffusion.alphas, diffusion.alphas_cumprod
    with np.errstate(divide="ignore", invalid="ignore"):  # beta~_0 = 0: entry 0 is unused
        w = b**2 / (2.0 * sigma2 * a * (1.0 - abar))
    w[0] = np.nan
    return w


def seed_weights(diffusion: GaussianDiffusion) -> np.ndarray:
    """The weight of the seed's eq. (6) as printed, per code step (entry 0 is NaN).

    ``beta_t^2 / (2 bbar_t (1 - beta_t) (1 - abar_t))`` with ``bbar_t = (1 - abar_{t-1}) /
    (1 - abar_t)``, reading the seed's unindexed beta as beta_t. ``bbar_t`` lacks the factor
    beta_t of the posterior variance beta~_t, so this is ``beta_t`` times the correct weight.
    """
    b, a = diffusion.betas, diffusion.alphas
    abar, abar_prev = diffusion.alphas_cumprod, diffusion.alphas_cumprod_prev
    bbar = (1.0 - abar_prev) / (1.0 - abar)
    with np.errstate(divide="ignore"):
        w = b**2 / (2.0 * bbar * a * (1.0 - abar))
    w[0] = np.nan
    return w


def posterior_kl_exact(
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    eps: torch.Tensor,
    eps_theta: torch.Tensor,
    t: torch.Tensor,
    sigma: str = "posterior",
) -> torch.Tensor:
    """KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) per row, from the Gaussians themselves.

    ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (eq. 2); q's mean and variance come from
    :meth:`GaussianDiffusion.q_posterior_mean_variance`; p_theta has variance sigma_t^2 and the
    mean of DDPM's eps-parameterisation, built the way a sampler builds it: x_0 predicted from
    ``eps_theta`` and put through the same posterior mean. ``t`` holds code steps >= 1 (t >= 2).
    Float64 tensors ``[B, ...]``; returns ``[B]``.
    """
    if int(t.min()) < 1:
        raise ValueError("t must be >= 1 (code step; the paper's t >= 2): L_0 is not a KL")
    xt = diffusion.q_sample(x0, t, eps)
    mean_q, var_q, _ = diffusion.q_posterior_mean_variance(x0, xt, t)
    x0_pred = diffusion.predict_x0_from_eps(xt, t, eps_theta)
    mean_p, _, _ = diffusion.q_posterior_mean_variance(x0_pred, xt, t)
    sigma2 = torch.from_numpy(_reverse_variance(diffusion, sigma))[t]
    sigma2 = sigma2.reshape((-1,) + (1,) * (x0.ndim - 1)).to(x0.dtype)
    return gaussian_kl(mean_q, var_q, mean_p, sigma2).flatten(1).sum(1)


def posterior_kl_from_eps(
    diffusion: GaussianDiffusion,
    eps: torch.Tensor,
    eps_theta: torch.Tensor,
    t: torch.Tensor,
    sigma: str = "posterior",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The corrected eq. (6): ``(lambda_t ||eps - eps_theta||^2, C_t)`` per row.

    ``C_t = d/2 (r - 1 - log r)``, ``r = beta~_t / sigma_t^2``, is the part of the KL that does
    not depend on the network (0 when sigma_t^2 = beta~_t); d is the number of coordinates.
    """
    lam = torch.from_numpy(elbo_weights(diffusion, sigma))[t].to(eps.dtype)
    sq = ((eps - eps_theta) ** 2).flatten(1).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):  # entry 0 (t = 1) is never gathered
        ratio = diffusion.posterior_variance / _reverse_variance(diffusion, sigma)
    r = torch.from_numpy(ratio)[t]
    d = eps[0].numel()
    const = 0.5 * d * (r - 1.0 - torch.log(r))
    return lam * sq, const.to(eps.dtype)


def kl_identity_check(
    schedules: Sequence[tuple[str, int]] = (
        ("linear", 1000), ("cosine", 1000), ("vp", 1000), ("vp", 4)),
    sigmas: Sequence[str] = ("posterior", "beta"),
    batch: int = 64,
    dim: int = 16,
    steps: int = 25,
    seed: int = 0,
) -> dict:
    """Compare the exact KL (eq. 5) with the corrected weighted MSE (eq. 6) and the seed's weight.

    For each schedule ``(name, T)``, reverse variance and up to ``steps`` timesteps t = 2..T
    (evenly spaced), draws ``batch`` rows of x_0 ~ U(-1, 1)^dim, eps ~ N(0, I) and a stand-in
    network output eps_theta = eps + N(0, s^2 I) with s drawn per row from [0.05, 2]. Returns a
    dict with ``max_rel_err`` (max over everything of |KL - (lambda ||.||^2 + C)| / KL), per-row
    arrays ``beta``, ``ratio_seed`` (the seed's weight over the weight implied by the exact KL,
    sigma_t^2 = beta~_t rows only) and ``n_rows``.
    """
    gen = torch.Generator().manual_seed(seed)
    max_rel, betas, ratios, rows = 0.0, [], [], 0
    for name, T in schedules:
        diffusion = GaussianDiffusion(make_beta_schedule(name, T))
        ks = np.unique(np.linspace(1, T - 1, min(steps, T - 1)).round().astype(int))
        seed_w = seed_weights(diffusion)
        for sigma in sigmas:
            for k in ks:
                t = torch.full((batch,), int(k), dtype=torch.long)
                x0 = torch.rand(batch, dim, generator=gen, dtype=torch.float64) * 2 - 1
                eps = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
                scale = 0.05 + 1.95 * torch.rand(batch, 1, generator=gen, dtype=torch.float64)
                eps_theta = eps + scale * torch.randn(batch, dim, generator=gen,
                                                      dtype=torch.float64)
                kl = posterior_kl_exact(diffusion, x0, eps, eps_theta, t, sigma)
                mse, const = posterior_kl_from_eps(diffusion, eps, eps_theta, t, sigma)
                max_rel = max(max_rel, float(((kl - mse - const).abs() / kl).max()))
                rows += batch
                if sigma == "posterior":
                    # the weight the exact KL implies, without using the formula for lambda_t
                    implied = (kl - const) / ((eps - eps_theta) ** 2).sum(1)
                    ratios.append(seed_w[k] / implied.numpy())
                    betas.append(np.full(batch, diffusion.betas[k]))
    return {
        "max_rel_err": max_rel,
        "beta": np.concatenate(betas),
        "ratio_seed": np.concatenate(ratios),
        "n_rows": rows,
    }


# --------------------------------------------------------------------------------------------
# Gaussian mixtures (:mod:`ddgan_core.mixtures`): data with a known posterior E[x_0 | x_t]
# --------------------------------------------------------------------------------------------


def eight_gaussians(radius: float = ELBO_RING["radius"],
                    std: float = ELBO_RING["std"]) -> GaussianMixture:
    """The 2-D toy of the kernel section: :func:`~ddgan_core.mixtures.ring8` with radius 0.8
    and std 0.08 (inside [-1, 1]^2, like the images; the toy DDGAN's ring is another one)."""
    return ring8(radius, std)


def expected_log_prob_1d(mixture: GaussianMixture, n_grid: int = 200_001) -> float:
    """E_{x ~ p}[log p(x)] (minus the differential entropy) of a 1-D mixture, by quadrature."""
    if mixture.dim != 1:
        raise ValueError(f"expected_log_prob_1d needs a 1-D mixture, got dim={mixture.dim}")
    lo = float((mixture.means[:, 0] - 12 * mixture.stds).min())
    hi = float((mixture.means[:, 0] + 12 * mixture.stds).max())
    x = np.linspace(lo, hi, n_grid)
    lp = mixture.log_prob(x[:, None])
    return float(np.sum(np.exp(lp) * lp) * (x[1] - x[0]))


# --------------------------------------------------------------------------------------------
# eq. (4): the ELBO of the best Gaussian-kernel reverse model, by Monte Carlo
# --------------------------------------------------------------------------------------------


def _log_normal(x: np.ndarray, mean, var) -> np.ndarray:
    """log N(x; mean, var I) summed over the last axis of [N, d] arrays."""
    return -0.5 * (((x - mean) ** 2) / var + LOG_2PI + np.log(var)).sum(-1)


def elbo_monte_carlo(
    mixture: GaussianMixture,
    diffusion: GaussianDiffusion,
    n: int,
    rng: np.random.Generator,
    variance: str = "matched",
) -> dict:
    """Per-sample ELBO (eq. 4, split as in eq. 5) of a Gaussian-kernel reverse model, x_0 ~ data.

    The model: p(x_T) = N(0, I); for t = 2..T, p(x_{t-1} | x_t) = N(mu~_t(E[x_0 | x_t], x_t),
    sigma_t^2) with the exact posterior mean of the data (:meth:`GaussianMixture.posterior_x0`)
    and ``variance``:

    ``"posterior"``
        sigma_t^2 = beta~_t (DDPM's "fixed small" choice);
    ``"matched"``
        sigma_t^2 = beta~_t + c_t^2 Var[x_0 | x_t] (c_t the factor of x_0 in mu~_t): the variance
        of the true q(x_{t-1} | x_t), so each kernel is the Gaussian closest to it in
        KL(q || p). Together with the optimal mean this is the best reverse model whose
        kernels are Gaussian (each term E_q[log p(x_{t-1} | x_t)] is maximised separately).

    The decoder p(x_0 | x_1) is N(E[x_0 | x_1], Var[x_0 | x_1]) in both.

    Estimator: one forward trajectory x_1..x_T ~ q(x_{1:T} | x_0) per data point (eq. 1 step by
    step) and the single-sample ELBO log p(x_{0:T}) - log q(x_{1:T} | x_0). Its terms follow
    eq. (5) path-wise: ``L_T = log q(x_T | x_0) / p(x_T)``, ``L_mid`` = the sum over t = 2..T of
    ``log q(x_{t-1} | x_t, x_0) / p(x_{t-1} | x_t)`` and ``L_0 = -log p(x_0 | x_1)``; their
    expectations are the KLs and the decoder term of eq. (5). When p is close to q along the
    path the per-sample gap ``log q(x_0) - ELBO`` is nearly constant, so its mean is far more
    precise than a difference of separately estimated means.

    Returns per-sample arrays [n]: ``elbo``, ``log_p`` (the data log-density), ``gap``,
    ``L_T``, ``L_mid``, ``L_0`` and ``factorisation_err`` (|log q(x_{1:T} | x_0) as the product
    of eq. (1) steps minus the same as q(x_T | x_0) times the posteriors q(x_{t-1} | x_t, x_0)|,
    which is 0 up to rounding); and ``L_steps`` [T - 1], the mean of each step's term
    (t = 2..T, code steps 1..T-1).
    """
    if variance not in ("posterior", "matched"):
        raise ValueError(f"variance must be 'posterior' or 'matched', got {variance!r}")
    n = int(n)
    T = diffusion.num_timesteps
    abar = diffusion.alphas_cumprod
    x0 = mixture.sample(n, rng)
    log_p = mixture.log_prob(x0)
    log_q_steps = np.zeros(n)   # sum of log q(x_t | x_{t-1}), eq. (1)
    log_q_post = np.zeros(n)    # sum of log q(x_{t-1} | x_t, x_0), t = 2..T
    L_mid = np.zeros(n)
    L_steps = np.zeros(max(T - 1, 0))
    x_prev = x0
    x1 = None
    for k in range(T):  # code step k: x_prev = paper x_{t-1}, x_new = x_t, t = k + 1
        a, b = diffusion.alphas[k], diffusion.betas[k]
        x_new = math.sqrt(a) * x_prev + math.sqrt(b) * rng.standard_normal(x0.shape)
        log_q_steps += _log_normal(x_new, math.sqrt(a) * x_prev, b)
        if k == 0:
            x1 = x_new
        else:
            c1, c2 = diffusion.posterior_mean_coef1[k], diffusion.posterior_mean_coef2[k]
            var_q = diffusion.posterior_variance[k]
            ex0, vx0 = mixture.posterior_x0(x_new, abar[k])
            var_p = var_q + c1**2 * vx0 if variance == "matched" else var_q
            log_q = _log_normal(x_prev, c1 * x0 + c2 * x_new, var_q)
            term = log_q - _log_normal(x_prev, c1 * ex0 + c2 * x_new, var_p)
            log_q_post += log_q
            L_mid += term
            L_steps[k - 1] = term.mean()
        x_prev = x_new
    x_T = x_prev
    log_q_T = _log_normal(x_T, math.sqrt(abar[-1]) * x0, 1.0 - abar[-1])
    L_T = log_q_T - _log_normal(x_T, 0.0, 1.0)
    ex0, vx0 = mixture.posterior_x0(x1, abar[0])
    L_0 = -_log_normal(x0, ex0, vx0)
    elbo = -(L_T + L_mid + L_0)
    return {
        "elbo": elbo, "log_p": log_p, "gap": log_p - elbo,
        "L_T": L_T, "L_mid": L_mid, "L_0": L_0, "L_steps": L_steps,
        "factorisation_err": np.abs(log_q_steps - (log_q_T + log_q_post)),
    }


def elbo_gap_sweep(
    mixture: GaussianMixture,
    T_values: Sequence[int],
    n: int,
    seed: int = 0,
    schedule: str = "vp",
    variance: str = "matched",
) -> dict:
    """E_data[ELBO] and the gap E_data[log p(x_0)] - E_data[ELBO] against the number of steps T.

    One :func:`elbo_monte_carlo` run of ``n`` samples per T, seeded from ``(seed, T)`` only, so
    both ``variance`` models see the same data points and trajectories. The gap is averaged per
    sample (log p(x_0) - ELBO(x_0)); its expectation is KL(q(x_{0:T}) || p(x_{0:T})) >= 0.
    Returns arrays over T: ``T``, ``elbo``, ``elbo_se``, ``gap``, ``gap_se`` (standard errors
    of the means), ``L_T``, ``L_mid``, ``L_0``, ``log_p`` (Monte Carlo means), the largest
    ``factorisation_err`` of all runs, and ``L_steps``: one array of per-step means per T.
    """
    keys = ("elbo", "elbo_se", "gap", "gap_se", "L_T", "L_mid", "L_0", "log_p")
    out: dict = {k: [] for k in keys}
    steps, fact_err = [], 0.0
    for T in T_values:
        diffusion = GaussianDiffusion(make_beta_schedule(schedule, int(T)))
        rng = np.random.default_rng([int(seed), int(T)])
        r = elbo_monte_carlo(mixture, diffusion, n, rng, variance)
        for k in ("elbo", "gap"):
            out[k].append(r[k].mean())
            out[k + "_se"].append(r[k].std(ddof=1) / math.sqrt(n))
        for k in ("L_T", "L_mid", "L_0", "log_p"):
            out[k].append(r[k].mean())
        steps.append(r["L_steps"])
        fact_err = max(fact_err, float(r["factorisation_err"].max()))
    result = {k: np.array(v) for k, v in out.items()}
    result.update(T=np.array([int(T) for T in T_values]), L_steps=steps,
                  factorisation_err=fact_err)
    return result


# --------------------------------------------------------------------------------------------
# sec. 2.2: the true reverse kernel q(x_{t-1} | x_t) on a grid
# --------------------------------------------------------------------------------------------


def vp_step_levels(T: int, fraction: float = 0.25) -> tuple[int, float, float]:
    """The step of DDGAN's VP chain with T steps that ends at a fraction of the chain.

    Returns ``(t, abar_t, abar_{t-1})`` for the paper step ``t = fraction * T`` (an integer is
    required). The VP nodes tau_i = i / T (1 - 1e-3) + 1e-3 put step t = T/4 of every chain at
    the same noise level, so chains of different length can be compared at the same x_t.
    """
    t = fraction * T
    if t != int(t) or not 1 <= t <= T:
        raise ValueError(f"fraction * T must be an integer step in [1, T], got {fraction} * {T}")
    t = int(t)
    diffusion = GaussianDiffusion(make_beta_schedule("vp", T))
    return t, float(diffusion.alphas_cumprod[t - 1]), float(diffusion.alphas_cumprod_prev[t - 1])


@dataclass
class KernelGrid:
    """q(x_{t-1} | x_t) on a regular 2-D grid: ``density[i, j]`` is at ``(xs[j], ys[i])``."""

    xs: np.ndarray
    ys: np.ndarray
    density: np.ndarray
    x_t: np.ndarray
    beta: float

    @property
    def cell(self) -> float:
        return float((self.xs[1] - self.xs[0]) * (self.ys[1] - self.ys[0]))


def reverse_kernel_grid(
    mixture: GaussianMixture,
    x_t: Sequence[float],
    abar_t: float,
    abar_prev: float,
    n_grid: int = 161,
    zoom: bool = True,
) -> KernelGrid:
    """The true reverse kernel of a 2-D mixture, by Bayes' rule on a grid.

    ``q(x_{t-1} | x_t) = q(x_t | x_{t-1}) q(x_{t-1}) / q(x_t)`` with q(x_t | x_{t-1}) =
    N(sqrt(alpha) x_{t-1}, beta I) (eq. 1, alpha = abar_t / abar_prev) and both marginals the
    analytic noisy mixture (:meth:`GaussianMixture.noisy`); ``abar_prev = 1`` is the data itself.
    Nothing is normalised on the grid, so the grid sum of ``density * cell`` checks Bayes' rule
    and the grid's coverage. The first grid spans the box where both factors matter: +-8
    standard deviations of the likelihood around x_t / sqrt(alpha), cut to +-8 component
    standard deviations around the prior's modes. With ``zoom`` a second grid of the same size
    covers only the cells of the first where the density exceeds 1e-9 of its maximum (plus one
    cell), which sharpens narrow kernels.
    """
    if mixture.dim != 2:
        raise ValueError(f"reverse_kernel_grid needs a 2-D mixture, got dim={mixture.dim}")
    if not 0.0 < abar_t < abar_prev <= 1.0:
        raise ValueError(f"need 0 < abar_t < abar_prev <= 1, got {abar_t}, {abar_prev}")
    if int(n_grid) != n_grid or n_grid < 5:
        raise ValueError(f"n_grid must be an integer >= 5, got {n_grid!r}")
    x_t = np.asarray(x_t, dtype=np.float64).reshape(2)
    alpha = abar_t / abar_prev
    beta = 1.0 - alpha
    prior = mixture.noisy(abar_prev)
    log_q_t = mixture.noisy(abar_t).log_prob(x_t[None])[0]

    def evaluate(lo: np.ndarray, hi: np.ndarray) -> KernelGrid:
        xs = np.linspace(lo[0], hi[0], int(n_grid))
        ys = np.linspace(lo[1], hi[1], int(n_grid))
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
        sq = ((x_t - math.sqrt(alpha) * pts) ** 2).sum(1)
        log_lik = -0.5 * sq / beta - (LOG_2PI + math.log(beta))
        density = np.exp(log_lik + prior.log_prob(pts) - log_q_t).reshape(gx.shape)
        return KernelGrid(xs, ys, density, x_t, beta)

    centre, width = x_t / math.sqrt(alpha), 8.0 * math.sqrt(beta / alpha)
    reach = 8.0 * prior.stds.max()
    lo = np.maximum(centre - width, prior.means.min(0) - reach)
    hi = np.minimum(centre + width, prior.means.max(0) + reach)
    if np.any(lo >= hi):  # x_t far from every mode: fall back to the likelihood's box
        lo, hi = centre - width, centre + width
    grid = evaluate(lo, hi)
    if zoom:
        rows, cols = np.nonzero(grid.density >= 1e-9 * grid.density.max())
        last = int(n_grid) - 1
        lo = np.array([grid.xs[max(cols.min() - 1, 0)], grid.ys[max(rows.min() - 1, 0)]])
        hi = np.array([grid.xs[min(cols.max() + 1, last)], grid.ys[min(rows.max() + 1, last)]])
        grid = evaluate(lo, hi)
    return grid


def _local_maxima(density: np.ndarray, rel_height: float) -> int:
    """Grid points higher than all 8 neighbours and at least ``rel_height`` times the maximum."""
    padded = np.pad(density, 1, constant_values=-np.inf)
    centre = padded[1:-1, 1:-1]
    is_max = centre >= rel_height * density.max()
    n = density.shape
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_max &= centre > padded[1 + di: 1 + di + n[0], 1 + dj: 1 + dj + n[1]]
    return int(is_max.sum())


def kernel_summary(grid: KernelGrid, rel_height: float = 0.01) -> dict:
    """Mass, mean, covariance, modes and distance to a Gaussian of a kernel on a grid.

    ``kl_gauss`` is KL(q(. | x_t) || N(m, C)) with m, C the kernel's own mean and covariance:
    the smallest KL(q || g) over all Gaussians g, so 0 exactly when the kernel is Gaussian.
    ``modes`` counts local maxima at least ``rel_height`` times the highest.
    """
    p = grid.density
    total = p.sum()
    mass = float(total * grid.cell)
    w = p / total
    wx, wy = w.sum(0), w.sum(1)                 # marginals along x (columns) and y (rows)
    mx, my = wx @ grid.xs, wy @ grid.ys
    dx, dy = grid.xs - mx, grid.ys - my
    cxx, cyy = wx @ dx**2, wy @ dy**2
    cxy = dy @ w @ dx
    det = cxx * cyy - cxy**2
    quad = (cyy * dx[None, :] ** 2 - 2 * cxy * dy[:, None] * dx[None, :]
            + cxx * dy[:, None] ** 2) / det
    log_g = -0.5 * (quad + 2 * LOG_2PI + math.log(det))
    log_p = np.log(np.maximum(p / (total * grid.cell), 1e-300))
    kl = float((w * (log_p - log_g)).sum())
    return {"mass": mass, "mean": np.array([mx, my]),
            "cov": np.array([[cxx, cxy], [cxy, cyy]]), "kl_gauss": max(kl, 0.0),
            "modes": _local_maxima(p, rel_height)}


def kernel_sweep(
    mixture: GaussianMixture,
    T_values: Sequence[int],
    n_xt: int,
    n_grid: int = 161,
    fraction: float = 0.25,
    seed: int = 0,
) -> dict:
    """How far q(x_{t-1} | x_t) is from a Gaussian, against the step size, averaged over x_t.

    For each chain length T (a multiple of 1 / ``fraction``) takes the VP step t = fraction * T
    (:func:`vp_step_levels`: the same noise level abar_t for every T, so the same x_t), draws
    ``n_xt`` points x_t ~ q(x_t) (the same points for every T) and evaluates the kernel of each
    on a grid. Returns arrays over T: ``T``, ``beta`` (the step's beta_t), ``kl_mean``,
    ``kl_se``, ``multimodal`` (share of x_t whose kernel has more than one mode), ``modes_mean``,
    ``mass_min`` / ``mass_max`` (grid masses, all near 1), plus ``abar_t`` and ``x_t``.
    """
    _, abar_t, _ = vp_step_levels(int(T_values[0]), fraction)
    rng = np.random.default_rng(seed)
    xts = mixture.noisy(abar_t).sample(n_xt, rng)
    out: dict = {k: [] for k in ("beta", "kl_mean", "kl_se", "multimodal", "modes_mean",
                                 "mass_min", "mass_max")}
    for T in T_values:
        _, a_t, a_prev = vp_step_levels(int(T), fraction)
        stats = [kernel_summary(reverse_kernel_grid(mixture, x, a_t, a_prev, n_grid))
                 for x in xts]
        kl = np.array([s["kl_gauss"] for s in stats])
        modes = np.array([s["modes"] for s in stats])
        mass = np.array([s["mass"] for s in stats])
        out["beta"].append(1.0 - a_t / a_prev)
        out["kl_mean"].append(kl.mean())
        out["kl_se"].append(kl.std(ddof=1) / math.sqrt(n_xt) if n_xt > 1 else 0.0)
        out["multimodal"].append(float((modes > 1).mean()))
        out["modes_mean"].append(modes.mean())
        out["mass_min"].append(mass.min())
        out["mass_max"].append(mass.max())
    result = {k: np.array(v) for k, v in out.items()}
    result.update(T=np.array([int(T) for T in T_values]), abar_t=abar_t, x_t=xts)
    return result
