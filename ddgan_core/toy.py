"""A Denoising Diffusion GAN on 2-D Gaussian mixtures: seconds on a CPU, modes countable.

The mixtures are the usual mode-collapse benchmarks of the GAN literature, built by
:mod:`ddgan_core.mixtures`:

* ``"8gaussians"``: :func:`~ddgan_core.mixtures.ring8` with radius ``scale`` (default 2) and std
  ``0.02 * scale`` (0.04): :data:`~ddgan_core.mixtures.TOY_RING`, not the ELBO chapter's ring;
* ``"25gaussians"``: :func:`~ddgan_core.mixtures.grid25`, 25 equal components on the grid
  {-2, -1, 0, 1, 2}^2 times ``scale / 2`` (spacing 1 by default), std ``0.02 * scale``.

:func:`train_toy_ddgan` trains :class:`~ddgan_core.nets.toy.ToyGenerator` and
:class:`~ddgan_core.nets.toy.ToyDiscriminator` (MLPs; time and z enter by concatenating their
embeddings) with the image model's own :class:`~ddgan_core.ddgan.DDGANTrainer` (same pairs,
losses, R1, posterior sampling) and samples with :func:`~ddgan_core.ddgan.ddgan_sample`.
:func:`mode_coverage` counts the modes a sample set covers and its share of high-quality
samples (within 3 std of a centre). :func:`true_reverse_samples` draws from the exact reverse
kernel q(x_{t-1} | x_t), a Gaussian mixture in closed form for mixture data, to set next to the
model's p_theta(x_{t-1} | x_t) (:func:`model_reverse_samples`) and to the Gaussian with the same
mean and covariance (:func:`moment_matched_gaussian`) in the DDGAN chapter's figure;
:func:`kernel_modes` measures how multimodal each of those sample sets is (share of draws near a
data mode, modes hit, share per mode).

Step indices are 0-based, as everywhere in the code (:mod:`ddgan_core.diffusion`): in a T-step
chain ``t = T - 1`` is the first reverse step and ``t = 0`` the last, the one that lands on the
data. In the book's 1-based notation of a T = 2 chain (x_0 the data), ``t = 1`` is x_2 -> x_1
and ``t = 0`` is x_1 -> x_0. The two reverse samplers check that ``t`` lies in ``0 .. T-1`` (a
``t = -1`` would otherwise wrap to the first step).

Defaults (T = 2, 2,000 steps of batch 256, Adam lr 3e-3 for both networks, two D updates per G
update, R1 gamma 0.05 every 4 D updates, EMA 0.99) cover 8/8 modes with about 80% high-quality
samples for seeds 0-2 (0.82, 0.83, 0.79) in roughly 20-35 s on one busy CPU thread. The stall
the image model can suffer (D(real) = D(fake) from the start, the D loss at 2 ln 2; see
:mod:`ddgan_core.ddgan.trainer`) is easy to provoke here: a generator faster than its
discriminator (lr_g 4e-3 against lr_d 2e-3) or a two-layer D sits at gap ~0 and D loss 2 ln 2
from the start, and a single D update per G update at lr 3e-3 stalls for the first ~1,000 steps.
"""

from __future__ import annotations

import math
import operator
import time
from typing import Any

import torch

from .ddgan import (
    DDGANTrainer,
    ddgan_sample,
    generator_posterior_sample,
    make_ddgan_diffusion,
    stall_fraction,
)
from .diffusion import GaussianDiffusion
from .mixtures import GaussianMixture, grid25, ring8
from .nets.toy import ToyDiscriminator, ToyGenerator
from .training import progress_bar

__all__ = [
    "MIXTURES",
    "ToyDiscriminator",
    "ToyGenerator",
    "kernel_modes",
    "mixture",
    "mixture_of",
    "mode_coverage",
    "model_reverse_samples",
    "moment_matched_gaussian",
    "sample_mixture",
    "train_toy_ddgan",
    "true_reverse_samples",
]

MIXTURES = ("8gaussians", "25gaussians")
BASE_STD = 0.02


def mixture_of(name: str, scale: float = 2.0) -> GaussianMixture:
    """The mixture ``name`` (``"8gaussians"`` or ``"25gaussians"``) at ``scale``; see the
    module docstring."""
    if name == "8gaussians":
        return ring8(radius=scale, std=BASE_STD * scale)
    if name == "25gaussians":
        return grid25(spacing=scale / 2.0, std=BASE_STD * scale)
    raise ValueError(f"name={name!r} is not a mixture; choose from {MIXTURES}")


def mixture(name: str, scale: float = 2.0) -> tuple[torch.Tensor, float]:
    """Centres [K, 2] (float64) and the common std of mixture ``name`` (equal weights)."""
    mix = mixture_of(name, scale)
    return torch.from_numpy(mix.means), float(mix.stds[0])


def sample_mixture(
    name: str, n: int, generator: torch.Generator | None = None, scale: float = 2.0
) -> torch.Tensor:
    """``n`` draws [n, 2] (float32) from mixture ``name``; see the module docstring."""
    return mixture_of(name, scale).sample_torch(n, generator)


def mode_coverage(
    samples: torch.Tensor, centers: torch.Tensor, std: float, min_count: int | None = None
) -> tuple[int, float]:
    """(modes covered, fraction of high-quality samples) of 2-D ``samples``.

    A sample is high quality when it lies within 3 std of its nearest centre; a mode is covered
    when at least ``min_count`` high-quality samples are nearest to it (default: 20 per 2,500
    samples, the threshold of VEEGAN, Srivastava et al. 2017, scaled to ``len(samples)``).
    """
    samples = samples.detach().double().cpu()
    centers = centers.double().cpu()
    if min_count is None:
        min_count = max(1, math.ceil(20 * samples.shape[0] / 2500))
    dist = torch.cdist(samples, centers)
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist < 3.0 * std
    counts = torch.bincount(nearest[good], minlength=centers.shape[0])
    return int((counts >= min_count).sum()), float(good.double().mean())


def train_toy_ddgan(
    T: int = 2,
    steps: int = 2000,
    seed: int = 0,
    name: str = "8gaussians",
    *,
    batch_size: int = 256,
    nz: int = 4,
    hidden: int = 128,
    lr_g: float = 3e-3,
    lr_d: float = 3e-3,
    d_steps: int = 2,
    r1_gamma: float = 0.05,
    lazy_r1: int = 4,
    ema_decay: float = 0.99,
    log_every: int = 25,
    n_eval: int = 2500,
    scale: float = 2.0,
    progress: bool = True,
    loss: str = "ns",
) -> dict[str, Any]:
    """Train a T-step DDGAN on a 2-D mixture (CPU, seconds) and evaluate it; ``loss`` is the
    divergence of every step (:data:`~ddgan_core.ddgan.losses.LOSSES`).

    Returns a dict with ``G`` (the EMA generator, used for evaluation), ``D``, ``diffusion``,
    ``history`` (entries every ``log_every`` steps: step, loss_d, loss_g, r1, d_real, d_fake,
    gap), ``samples`` [n_eval, 2], ``modes`` (covered) of ``n_modes``, ``hq_fraction``,
    ``train_seconds``, ``stall_fraction`` and ``mean_gap`` (the D gap averaged over training),
    the same two over the first half of training (``stall_fraction_early``,
    ``mean_gap_early``: a stall shows there; late parity can be convergence),
    ``centers``, ``std`` and ``nz``. A progress bar shows on a terminal unless ``progress`` is
    false.
    """
    torch.manual_seed(seed)
    diffusion = make_ddgan_diffusion(T)
    G = ToyGenerator(dim=2, z_dim=nz, hidden=hidden)
    D = ToyDiscriminator(dim=2, hidden=hidden)
    trainer = DDGANTrainer(
        G, D, diffusion, nz=nz, lr_g=lr_g, lr_d=lr_d, total_steps=steps, r1_gamma=r1_gamma,
        lazy_r1=lazy_r1, d_steps=d_steps, ema_decay=ema_decay, device="cpu", seed=seed,
        loss=loss,
    )
    data_gen = torch.Generator().manual_seed(seed + 1)

    def next_batch() -> torch.Tensor:
        return sample_mixture(name, batch_size, data_gen, scale)

    history: list[dict[str, float]] = []
    sums = torch.zeros(6, dtype=torch.float64)
    count = 0
    start = time.perf_counter()
    bar = progress_bar(total=steps, desc="toy DDGAN", enabled=progress, unit="step")
    while trainer.step < steps:
        sums += trainer.train_step(next_batch).double()
        bar.update(1)
        count += 1
        if trainer.step % log_every == 0 or trainer.step == steps:
            loss_d, loss_g, d_real, d_fake, r1_sum, r1_count = (sums / count).tolist()
            history.append({
                "step": trainer.step, "loss_d": loss_d, "loss_g": loss_g,
                "r1": r1_sum / r1_count if r1_count else float("nan"),
                "d_real": d_real, "d_fake": d_fake, "gap": d_real - d_fake,
            })
            sums.zero_()
            count = 0
    bar.close()
    seconds = time.perf_counter() - start

    early = history[: max(1, len(history) // 2)]
    G_eval = trainer.ema.model
    samples, _ = ddgan_sample(G_eval, diffusion, n_eval, nz, seed=seed + 2, batch_size=n_eval,
                              device="cpu", shape=(2,), clamp=False)
    centers, std = mixture(name, scale)
    modes, hq = mode_coverage(samples, centers, std)
    return {
        "G": G_eval,
        "G_raw": trainer.G,
        "D": trainer.D,
        "diffusion": diffusion,
        "history": history,
        "samples": samples,
        "modes": modes,
        "n_modes": int(centers.shape[0]),
        "hq_fraction": hq,
        "train_seconds": seconds,
        "stall_fraction": stall_fraction(history),
        "stall_fraction_early": stall_fraction(early),
        "mean_gap": sum(h["gap"] for h in history) / max(1, len(history)),
        "mean_gap_early": sum(h["gap"] for h in early) / len(early),
        "centers": centers,
        "std": std,
        "nz": nz,
    }


def _reverse_step(diffusion: GaussianDiffusion, t: Any) -> int:
    """``t`` as an int, once checked to be a 0-based reverse step ``0 .. T-1`` of ``diffusion``
    (``ValueError`` otherwise: a ``t = -1`` would silently index the first step)."""
    T = diffusion.num_timesteps
    try:
        if isinstance(t, bool):
            raise TypeError
        step = operator.index(t)
    except TypeError:
        raise ValueError(f"t={t!r} must be an integer reverse step in 0..{T - 1}") from None
    if not 0 <= step < T:
        raise ValueError(
            f"t={step} is not a reverse step of this {T}-step chain: t is 0-based, "
            f"t = {T - 1} is the first reverse step and t = 0 the last (x_1 -> x_0, to the data)"
        )
    return step


def true_reverse_samples(
    name: str,
    diffusion: GaussianDiffusion,
    x_t: torch.Tensor,
    t: int,
    n: int,
    generator: torch.Generator | None = None,
    scale: float = 2.0,
) -> torch.Tensor:
    """``n`` draws [n, 2] from the exact q(x_{t-1} | x_t) of the forward process on mixture data
    at the 0-based step ``t`` (x_t at noise level abar_t, x_{t-1} at abar_{t-1}, the data at
    t = 0), by :meth:`~ddgan_core.mixtures.GaussianMixture.reverse_kernel_sample`.

    ``t = 0`` is the last reverse step (x_1 -> x_0 in the book's notation, multimodal where the
    step is large), ``t = T - 1`` the first; see the module docstring.
    """
    t = _reverse_step(diffusion, t)
    return mixture_of(name, scale).reverse_kernel_sample(
        x_t, float(diffusion.alphas_cumprod_prev[t]), float(diffusion.betas[t]), n, generator)


@torch.no_grad()
def model_reverse_samples(
    G: torch.nn.Module,
    diffusion: GaussianDiffusion,
    x_t: torch.Tensor,
    t: int,
    n: int,
    nz: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` draws [n, 2] from the model's p_theta(x_{t-1} | x_t) at one point ``x_t`` [2], at
    the same 0-based step ``t`` as :func:`true_reverse_samples` (at ``t = 0`` the draws are G's
    x_0 predictions, one per latent z)."""
    t = _reverse_step(diffusion, t)
    xt = torch.as_tensor(x_t, dtype=torch.float32).reshape(1, 2).expand(n, 2).contiguous()
    tt = torch.full((n,), t, dtype=torch.long)
    z = torch.randn(n, nz, generator=generator)
    noise = torch.randn(n, 2, generator=generator)
    x_prev, _ = generator_posterior_sample(G, diffusion, xt, tt, z, noise)
    return x_prev


def moment_matched_gaussian(
    samples: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` draws [n, d] (float32) from the Gaussian with the mean and full covariance of
    ``samples`` [N, d]: the best Gaussian fit in KL(q || N), the kernel a Gaussian reverse step
    could at best have. The covariance (unbiased, float64) is factored by its eigenvectors, so a
    singular one is fine."""
    x = samples.detach().double().cpu()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"samples must have shape [N, d] with N >= 2, got {tuple(x.shape)}")
    mean = x.mean(0)
    cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp(min=0.0).sqrt()          # root @ root.T == cov
    z = torch.randn(n, x.shape[1], generator=generator, dtype=torch.float64)
    return (mean + z @ root.T).float()


def kernel_modes(
    samples: torch.Tensor,
    mixture: str | GaussianMixture = "8gaussians",
    *,
    within: float = 3.0,
    min_share: float = 0.01,
    scale: float = 2.0,
) -> dict[str, Any]:
    """How multimodal a set of 2-D kernel draws is, measured against the data modes.

    ``mixture`` is a mixture name (at ``scale``) or a
    :class:`~ddgan_core.mixtures.GaussianMixture`. A draw is *near* a mode when it lies within
    ``within`` (3) standard deviations of its nearest centre (:func:`mode_coverage`'s
    criterion). Returns a dict:

    * ``shares``: for each mode (the mixture's order), the fraction of all draws near it;
    * ``near``: their sum, the fraction of draws near some mode;
    * ``modes``: the number of modes *hit*, those whose share is at least ``min_share``
      (default 1%: 20 of 2,000 draws, about the 20 of 2,500 of :func:`mode_coverage`);
    * ``n_modes``: the number of modes of the mixture.

    On the 8-Gaussian ring (std 0.04) the exact kernel of the last step of a T = 2 chain at the
    ring's centre puts about 99% of its draws near a mode and hits all 8; the Gaussian with its
    mean and covariance about 1% and none; the first step's kernel none either (one blob).
    """
    mix = mixture_of(mixture, scale) if isinstance(mixture, str) else mixture
    if mix.dim != 2:
        raise ValueError(f"kernel_modes needs a 2-D mixture, got dimension {mix.dim}")
    x = samples.detach().double().cpu().reshape(-1, 2)
    if x.shape[0] == 0:
        raise ValueError("kernel_modes needs at least one sample")
    centers = torch.from_numpy(mix.means)
    stds = torch.from_numpy(mix.stds)
    nearest_dist, nearest = torch.cdist(x, centers).min(dim=1)
    near = nearest_dist < within * stds[nearest]
    counts = torch.bincount(nearest[near], minlength=centers.shape[0])
    shares = counts.double() / x.shape[0]
    return {
        "near": float(near.double().mean()),
        "modes": int((shares >= min_share).sum()),
        "n_modes": int(centers.shape[0]),
        "shares": shares.tolist(),
    }
