"""Mixtures of isotropic Gaussians: toy data whose density, noisy marginals, posterior
E[x_0 | x_t] and reverse kernel q(x_{t-1} | x_t) are known in closed form.

Under the forward process (Ho et al. 2020, eq. 4: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps)
a component N(m, s^2 I) becomes N(sqrt(abar_t) m, (abar_t s^2 + 1 - abar_t) I), so every
marginal q(x_t) is again such a mixture, and both the posterior of x_0 and the reverse kernel
q(x_{t-1} | x_t) are mixtures of Gaussians too. :class:`GaussianMixture` computes them; the ELBO
chapter's code (:mod:`ddgan_core.elbo`) and the toy DDGAN (:mod:`ddgan_core.toy`) both use it.

The named mixtures, one definition each:

* :func:`ring8` ``(radius, std)``: eight equal components with means
  ``radius * (cos(2 pi k / 8), sin(2 pi k / 8))``, k = 0..7, and standard deviation ``std``.
  The book uses two of them, kept apart on purpose, since each chapter's numbers were computed
  with its own: ``ring8(0.8, 0.08)`` (:data:`ELBO_RING`, inside [-1, 1]^2 like the images) in
  the ELBO chapter's reverse-kernel section, and ``ring8(2.0, 0.04)`` (:data:`TOY_RING`, the
  "8 Gaussians" of the GAN literature, Metz et al. 2017: radius 2, std 0.02 x radius) for the
  toy DDGAN.
* :func:`grid25` ``(spacing, std)``: 25 equal components on the grid {-2, ..., 2}^2 times
  ``spacing`` (the toy DDGAN's "25 Gaussians": spacing 1, std 0.04).
* :func:`three_gaussians_1d`: three unequal, well-separated 1-D modes inside [-1, 1] (the ELBO
  chapter's eq. (4) toy).

Densities are computed in float64 numpy; :meth:`GaussianMixture.sample_torch` and
:meth:`GaussianMixture.reverse_kernel_sample` draw with torch generators for the toy DDGAN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "ELBO_RING",
    "LOG_2PI",
    "TOY_RING",
    "GaussianMixture",
    "grid25",
    "ring8",
    "three_gaussians_1d",
]

LOG_2PI = math.log(2.0 * math.pi)
#: ``ring8`` arguments of the ELBO chapter's ring and of the toy DDGAN's (module docstring).
ELBO_RING = {"radius": 0.8, "std": 0.08}
TOY_RING = {"radius": 2.0, "std": 0.04}


@dataclass(frozen=True)
class GaussianMixture:
    """A mixture of isotropic Gaussians in d dimensions: weights [K], means [K, d], stds [K].

    Under the forward process a component N(m, s^2 I) becomes N(sqrt(abar) m, (abar s^2 + 1 -
    abar) I), so every marginal q(x_t) is again such a mixture (:meth:`noisy`) and the posterior
    of x_0 given x_t is a mixture of Gaussians too (:meth:`posterior_x0`).
    """

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        m = np.asarray(self.means, dtype=np.float64)
        s = np.asarray(self.stds, dtype=np.float64)
        if m.ndim == 1:
            m = m[:, None]
        if w.ndim != 1 or m.shape[0] != w.size or s.shape != w.shape:
            raise ValueError(
                f"weights [K], means [K, d] and stds [K] must agree, got shapes {w.shape}, "
                f"{m.shape}, {s.shape}"
            )
        if np.any(w <= 0) or not np.isclose(w.sum(), 1.0) or np.any(s <= 0):
            raise ValueError("weights must be positive and sum to 1, stds must be positive")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "means", m)
        object.__setattr__(self, "stds", s)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def noisy(self, abar: float) -> GaussianMixture:
        """The marginal q(x_t) at noise level ``abar`` = abar_t (eq. 2 on each component)."""
        var = abar * self.stds**2 + (1.0 - abar)
        return GaussianMixture(self.weights, math.sqrt(abar) * self.means, np.sqrt(var))

    def _component_log_probs(self, x: np.ndarray) -> np.ndarray:
        """log(w_k N(x; m_k, s_k^2 I)) for x [N, d]: [N, K]."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.dim)
        sq = np.zeros((x.shape[0], self.weights.size))
        for j in range(self.dim):  # a loop over the few coordinates beats an [N, K, d] array
            sq += np.subtract.outer(x[:, j], self.means[:, j]) ** 2
        var = self.stds**2
        return np.log(self.weights) - 0.5 * (sq / var + self.dim * (LOG_2PI + np.log(var)))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log density at x [N, d] (or [N] in 1-D): [N]."""
        lp = self._component_log_probs(x)
        top = lp.max(1, keepdims=True)
        return top[:, 0] + np.log(np.exp(lp - top).sum(1))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws, [n, d]."""
        k = rng.choice(self.weights.size, size=n, p=self.weights)
        return self.means[k] + self.stds[k, None] * rng.standard_normal((n, self.dim))

    def posterior_x0(self, xt: np.ndarray, abar: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean E[x_0 | x_t] and per-coordinate variance Var[x_0 | x_t], both [N, d].

        Component k given x_t: responsibility r_k proportional to w_k N(x_t; sqrt(abar) m_k,
        v_k I), v_k = abar s_k^2 + 1 - abar; within it x_0 | x_t is Gaussian with mean
        m_k + sqrt(abar) s_k^2 / v_k (x_t - sqrt(abar) m_k) and variance s_k^2 (1 - abar) / v_k.
        The totals follow from the laws of total expectation and variance.
        """
        xt = np.asarray(xt, dtype=np.float64).reshape(-1, self.dim)
        lp = self.noisy(abar)._component_log_probs(xt)
        r = np.exp(lp - lp.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        s2 = self.stds**2
        v = abar * s2 + (1.0 - abar)
        gain = math.sqrt(abar) * s2 / v                                     # [K]
        mk = self.means[None] + gain[None, :, None] * (
            xt[:, None, :] - math.sqrt(abar) * self.means[None])           # [N, K, d]
        vk = s2 * (1.0 - abar) / v                                          # [K]
        mean = (r[:, :, None] * mk).sum(1)
        second = (r[:, :, None] * (vk[None, :, None] + mk**2)).sum(1)
        return mean, np.maximum(second - mean**2, 0.0)

    def sample_torch(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws [n, d] (float32) with a torch generator: the component index first
        (uniform when the weights are equal, else multinomial), then the float64 noise."""
        means = torch.from_numpy(self.means)
        k = self.weights.size
        if np.all(self.weights == self.weights[0]):
            idx = torch.randint(0, k, (n,), generator=generator)
        else:
            idx = torch.multinomial(torch.from_numpy(self.weights), n, replacement=True,
                                    generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (means[idx] + torch.from_numpy(self.stds)[idx, None] * noise).float()

    def reverse_kernel_sample(
        self,
        x_t: torch.Tensor,
        abar_prev: float,
        beta: float,
        n: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` draws [n, d] from the exact reverse kernel q(x_{t-1} | x_t) at one point x_t.

        With x_{t-1} ~ q(x_{t-1}) = the mixture at noise level ``abar_prev`` (1: the data) and
        x_t = c x_{t-1} + sqrt(beta) eps, c = sqrt(1 - beta): a component N(mu_k, s^2 I) gives
        x_{t-1} ~ N(a mu_k, v I), a = sqrt(abar_prev), v = a^2 s^2 + 1 - a^2, and q(x_{t-1} |
        x_t) is the mixture over k with weights proportional to N(x_t; c a mu_k, (c^2 v + beta)
        I), means a mu_k + c v / (c^2 v + beta) (x_t - c a mu_k) and variance
        v beta / (c^2 v + beta). Needs equal weights and one std, where the weights reduce to a
        softmax of the squared distances.
        """
        if not (np.all(self.weights == self.weights[0]) and np.all(self.stds == self.stds[0])):
            raise ValueError("reverse_kernel_sample needs equal weights and one common std")
        centers, std = torch.from_numpy(self.means), float(self.stds[0])
        x_t = torch.as_tensor(x_t, dtype=torch.float64).reshape(self.dim)
        a = math.sqrt(abar_prev)
        c = math.sqrt(1.0 - beta)
        v = a * a * std * std + 1.0 - a * a
        marg = c * c * v + beta
        means_t = c * a * centers
        logw = -((x_t - means_t) ** 2).sum(dim=1) / (2.0 * marg)
        weights = torch.softmax(logw, dim=0)
        k = torch.multinomial(weights, n, replacement=True, generator=generator)
        mean = a * centers[k] + (c * v / marg) * (x_t - means_t[k])
        var = v * beta / marg
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (mean + math.sqrt(var) * noise).float()



def ring8(radius: float, std: float) -> GaussianMixture:
    """Eight equal Gaussians of std ``std`` evenly spaced on a circle of radius ``radius``, the
    first at angle 0 (the module docstring names the book's two rings)."""
    angles = np.arange(8) * (2 * math.pi / 8)
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(np.full(8, 1 / 8), means, np.full(8, std))


def grid25(spacing: float, std: float) -> GaussianMixture:
    """25 equal Gaussians of std ``std`` on the grid {-2, -1, 0, 1, 2}^2 times ``spacing``
    (first coordinate slowest)."""
    grid = np.arange(-2, 3, dtype=np.float64)
    means = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2) * spacing
    return GaussianMixture(np.full(25, 1 / 25), means, np.full(25, std))


def three_gaussians_1d() -> GaussianMixture:
    """The 1-D toy of the ELBO section: three unequal, well-separated modes inside [-1, 1]."""
    return GaussianMixture(
        weights=np.array([0.3, 0.5, 0.2]),
        means=np.array([[-0.7], [0.05], [0.75]]),
        stds=np.array([0.08, 0.12, 0.06]),
    )
