"""Other reverse kernels on the 2-D toys, and their exact evaluation.

The seed's second question is whether other ways of making the reverse kernel
p(x_{t-1} | x_t) multimodal, or other divergences than the adversarial one, do as well as
DDGAN. On a Gaussian mixture the data density and every true reverse kernel are known
(:meth:`~ddgan_core.mixtures.GaussianMixture.reverse_kernel_sample`), so each method can be
scored exactly. Every method has the same forward process (DDGAN's VP schedule with ``T``
steps), the same number of training steps and batch, and the same evaluation. A method is a
*kernel*: a function drawing x_{t-1} for a batch of x_t at a 0-based step t (t = 0 is the last
step, x_1 -> x_0).

Methods (:data:`TOY_METHODS`):

- the DDGAN kernel under each divergence of :data:`~ddgan_core.ddgan.losses.LOSSES` (named by
  the divergence; ``wgan-gp`` without R1, the others with DDGAN's R1);
- ``no-latent``: DDGAN's generator without z (non-saturating loss), a deterministic x_0
  prediction, so the kernel is one Gaussian;
- ``gaussian``: the Gaussian kernel of DDPM at the same small T: a deterministic x_0 predictor
  trained by squared error (it learns E[x_0 | x_t]), then the posterior q(x_{t-1} | x_t, x_0)
  around it, with DDPM's variance. The direct test of the paper's claim that the Gaussian
  assumption is what breaks at large steps;
- ``mixture``: a network that outputs the weights, means and scales of a K-component isotropic
  Gaussian mixture for p(x_{t-1} | x_t), trained by maximum likelihood on forward-process
  pairs: multimodal and likelihood-based, with no adversary.

Scores (:func:`evaluate_kernel`): modes covered and the share of samples within 3 standard
deviations of a mode (:func:`~ddgan_core.toy.mode_coverage`); the sliced Wasserstein-2 distance
to data samples, with its floor (two data samples of the same size); and the per-step kernel
error, the sliced Wasserstein distance between the method's and the true kernel's draws at
points x_t drawn from q(x_t), with its floor (two draws of the true kernel).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .ddgan.losses import LOSSES
from .ddgan.sampler import generator_posterior_sample, make_ddgan_diffusion
from .diffusion import GaussianDiffusion
from .nets.toy import ToyGenerator, _mlp
from .nets.unet import timestep_embedding
from .toy import mixture, mode_coverage, sample_mixture, train_toy_ddgan, true_reverse_samples
from .training import EMA, warmup_cosine

#: Every method of the toy study, in the order of its tables.
TOY_METHODS = (*LOSSES, "no-latent", "gaussian", "mixture")
#: The settings every method shares (part of each entry's cache key).
TOY_SETTINGS = {"batch_size": 256, "hidden": 128, "nz": 4, "lr": 3e-3, "ema_decay": 0.99,
                "mixture_components": 10, "n_eval": 2500, "kernel_points": 8,
                "kernel_draws": 500, "projections": 256}

Kernel = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


# --------------------------------------------------------------------------------------------
# the mixture-of-Gaussians kernel


class MixtureKernelNet(nn.Module):
    """p(x_{t-1} | x_t) = sum_k w_k N(mu_k, s_k^2 I): an MLP on [x_t, emb(t)] outputs the K
    logits of w, the K means and the K log-scales."""

    def __init__(self, dim: int = 2, components: int = 10, hidden: int = 128, layers: int = 3,
                 temb_dim: int = 32):
        super().__init__()
        self.dim, self.components, self.temb_dim = dim, components, temb_dim
        self.net = _mlp(dim + temb_dim, hidden, layers, components * (dim + 2), nn.SiLU)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor):
        temb = timestep_embedding(t, self.temb_dim).to(x_t.dtype)
        out = self.net(torch.cat([x_t, temb], dim=1))
        k, d = self.components, self.dim
        logits, means, log_scale = out[:, :k], out[:, k: k + k * d], out[:, k + k * d:]
        # means as offsets from x_t; scales bounded below (a component cannot collapse to a
        # point and send the likelihood to infinity) and above
        means = x_t.unsqueeze(1) + means.reshape(-1, k, d)
        return logits, means, log_scale.clamp(math.log(1e-3), math.log(10.0))

    def nll(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of ``x_prev`` under the kernel at (x_t, t)."""
        logits, means, log_scale = self(x_t, t)
        sq = (x_prev.unsqueeze(1) - means).pow(2).sum(-1)
        log_normal = (-0.5 * sq * torch.exp(-2 * log_scale) - self.dim * log_scale
                      - 0.5 * self.dim * math.log(2 * math.pi))
        log_w = torch.log_softmax(logits, dim=1)
        return -torch.logsumexp(log_w + log_normal, dim=1).mean()

    @torch.no_grad()
    def sample(self, x_t: torch.Tensor, t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        logits, means, log_scale = self(x_t, t)
        k = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).squeeze(1)
        rows = torch.arange(x_t.shape[0])
        noise = torch.randn(x_t.shape, generator=gen)
        return means[rows, k] + torch.exp(log_scale[rows, k]).unsqueeze(1) * noise


# --------------------------------------------------------------------------------------------
# training


def _forward_pairs(diffusion: GaussianDiffusion, x0: torch.Tensor, gen: torch.Generator):
    """(t, x_{t-1}, x_t) for a batch: t uniform over the T steps, x_{t-1} ~ q(x_{t-1} | x_0)
    (the data itself at t = 0), x_t ~ q(x_t | x_{t-1})."""
    b = x0.shape[0]
    t = torch.randint(0, diffusion.num_timesteps, (b,), generator=gen)
    prev = diffusion.q_sample(x0, (t - 1).clamp(min=0),
                              noise=torch.randn(x0.shape, generator=gen))
    prev = torch.where((t == 0).unsqueeze(1), x0, prev)
    x_t = diffusion.q_step(prev, t, noise=torch.randn(x0.shape, generator=gen))
    return t, prev, x_t


def _train_regression(name: str, diffusion: GaussianDiffusion, model: nn.Module, steps: int,
                      seed: int, loss_fn) -> tuple[nn.Module, float]:
    """Adam with cosine decay and an EMA (the toy DDGAN's optimiser settings) on
    ``loss_fn(model, t, x_prev, x_t, x0)``; returns the EMA model and the seconds spent."""
    s = TOY_SETTINGS
    gen = torch.Generator().manual_seed(seed)
    data_gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=s["lr"])
    ema = EMA(model, s["ema_decay"])
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = s["lr"] * warmup_cosine(step, steps, 0)
        x0 = sample_mixture(name, s["batch_size"], data_gen)
        t, x_prev, x_t = _forward_pairs(diffusion, x0, gen)
        loss = loss_fn(model, t, x_prev, x_t, x0)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"toy {type(model).__name__} loss is {loss} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
    return ema.model.eval(), time.perf_counter() - start


def train_toy_kernel(method: str, name: str, T: int, steps: int, seed: int
                     ) -> tuple[Kernel, dict[str, Any]]:
    """Train ``method`` (:data:`TOY_METHODS`) on mixture ``name`` with a ``T``-step chain for
    ``steps`` updates; returns its kernel and what training reported (seconds, and for the
    adversarial methods the discriminator's mean gap)."""
    if method not in TOY_METHODS:
        raise ValueError(f"method={method!r} is unknown; valid: {list(TOY_METHODS)}")
    s = TOY_SETTINGS
    torch.manual_seed(seed)
    diffusion = make_ddgan_diffusion(T)
    if method in LOSSES or method == "no-latent":
        nz = 0 if method == "no-latent" else s["nz"]
        loss = "ns" if method == "no-latent" else method
        run = train_toy_ddgan(T=T, steps=steps, seed=seed, name=name, nz=nz, hidden=s["hidden"],
                              batch_size=s["batch_size"], lr_g=s["lr"], lr_d=s["lr"],
                              ema_decay=s["ema_decay"], loss=loss, n_eval=16, progress=False,
                              r1_gamma=0.0 if loss == "wgan-gp" else 0.05,
                              log_every=max(1, steps // 40))
        G = run["G"].eval()

        def kernel(x_t: torch.Tensor, t: int, gen: torch.Generator) -> torch.Tensor:
            tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
            z = torch.randn(x_t.shape[0], nz, generator=gen)
            with torch.no_grad():
                return generator_posterior_sample(G, diffusion, x_t, tt, z,
                                                  torch.randn(x_t.shape, generator=gen))[0]

        return kernel, {"train_seconds": run["train_seconds"], "mean_gap": run["mean_gap"]}
    if method == "gaussian":
        model = ToyGenerator(dim=2, z_dim=0, hidden=s["hidden"])
        empty = torch.zeros(s["batch_size"], 0)

        def mse(net, t, x_prev, x_t, x0):
            return (net(x_t, t, empty[: x_t.shape[0]]) - x0).pow(2).sum(1).mean()

        net, seconds = _train_regression(name, diffusion, model, steps, seed, mse)

        def kernel(x_t: torch.Tensor, t: int, gen: torch.Generator) -> torch.Tensor:
            tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
            with torch.no_grad():
                return generator_posterior_sample(net, diffusion, x_t, tt,
                                                  torch.zeros(x_t.shape[0], 0),
                                                  torch.randn(x_t.shape, generator=gen))[0]

        return kernel, {"train_seconds": seconds}
    model = MixtureKernelNet(dim=2, components=s["mixture_components"], hidden=s["hidden"])

    def nll(net, t, x_prev, x_t, x0):
        return net.nll(x_prev, x_t, t)

    net, seconds = _train_regression(name, diffusion, model, steps, seed, nll)

    def kernel(x_t: torch.Tensor, t: int, gen: torch.Generator) -> torch.Tensor:
        return net.sample(x_t, torch.full((x_t.shape[0],), t, dtype=torch.long), gen)

    return kernel, {"train_seconds": seconds}


# --------------------------------------------------------------------------------------------
# evaluation


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256,
                       gen: torch.Generator | None = None) -> float:
    """Sliced Wasserstein-2 distance between two equal-size point sets [n, d]: the root mean,
    over random unit directions, of the squared W2 distance of the 1-D projections (sorted
    projections matched in order)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two point sets of one shape [n, d], got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    directions = torch.randn(a.shape[1], projections, generator=gen, dtype=torch.float64)
    directions /= directions.norm(dim=0, keepdim=True)
    pa = torch.sort(a.double() @ directions, dim=0).values
    pb = torch.sort(b.double() @ directions, dim=0).values
    return float((pa - pb).pow(2).mean().sqrt())


@torch.no_grad()
def sample_chain(kernel: Kernel, T: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` samples of the chain: x_T ~ N(0, I), then the kernel at t = T-1, ..., 0."""
    x = torch.randn(n, 2, generator=gen)
    for t in reversed(range(T)):
        x = kernel(x, t, gen)
    return x


@torch.no_grad()
def evaluate_kernel(kernel: Kernel, name: str, T: int, seed: int) -> dict[str, Any]:
    """Every score of the toy study (see the module docstring) for one trained kernel.

    The model's draws and the reference draws (data, the x_t points, the true kernels, the
    projections) come from two generators, so every method of one seed is scored against the
    same references and the floors are the same for all of them."""
    s = TOY_SETTINGS
    gen = torch.Generator().manual_seed(10_000 + seed)
    ref = torch.Generator().manual_seed(20_000 + seed)
    diffusion = make_ddgan_diffusion(T)
    centers, std = mixture(name)
    samples = sample_chain(kernel, T, s["n_eval"], gen)
    finite = bool(torch.isfinite(samples).all())
    modes, near = mode_coverage(torch.nan_to_num(samples, nan=1e6), centers, std)
    data = sample_mixture(name, s["n_eval"], ref)
    data_b = sample_mixture(name, s["n_eval"], ref)
    out: dict[str, Any] = {
        "modes": modes, "n_modes": int(centers.shape[0]), "near_mode_share": near,
        "sw_data": sliced_wasserstein(samples, data, s["projections"], ref) if finite
        else float("nan"),
        "sw_data_floor": sliced_wasserstein(data_b, data, s["projections"], ref),
        "finite": finite,
    }
    per_step, floors = [], []
    for t in range(T):
        x0 = sample_mixture(name, s["kernel_points"], ref)
        tt = torch.full((s["kernel_points"],), t, dtype=torch.long)
        x_t = diffusion.q_sample(x0, tt, noise=torch.randn(x0.shape, generator=ref))
        errors, floor = [], []
        for point in x_t:
            true = true_reverse_samples(name, diffusion, point, t, s["kernel_draws"], ref)
            again = true_reverse_samples(name, diffusion, point, t, s["kernel_draws"], ref)
            model = kernel(point.reshape(1, 2).expand(s["kernel_draws"], 2).contiguous(), t, gen)
            errors.append(sliced_wasserstein(model, true, s["projections"], ref)
                          if torch.isfinite(model).all() else float("nan"))
            floor.append(sliced_wasserstein(again, true, s["projections"], ref))
        per_step.append(sum(errors) / len(errors))
        floors.append(sum(floor) / len(floor))
    out["kernel_error"] = per_step  # index t: 0 is the last reverse step
    out["kernel_error_floor"] = floors
    out["kernel_error_mean"] = sum(per_step) / T
    out["kernel_error_floor_mean"] = sum(floors) / T
    return out


@torch.no_grad()
def kernel_draws_at(kernel: Kernel, x_t: torch.Tensor, t: int, n: int, seed: int) -> torch.Tensor:
    """``n`` draws [n, 2] of the kernel at one point ``x_t`` [2] and step ``t`` (the figure of
    each method's kernel against the true one)."""
    gen = torch.Generator().manual_seed(30_000 + seed)
    return kernel(torch.as_tensor(x_t, dtype=torch.float32).reshape(1, 2).expand(n, 2)
                  .contiguous(), t, gen)
