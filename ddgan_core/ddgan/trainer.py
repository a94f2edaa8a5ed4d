"""Training a Denoising Diffusion GAN (Xiao, Kreis, Vahdat, ICLR 2022): real pairs, losses, R1,
the trainer, and :func:`train_ddgan` for FashionMNIST.

DDGAN keeps a short Gaussian forward chain (T = 4 steps of the discrete VP schedule) and models
each reverse step with a conditional GAN: the generator of :mod:`ddgan_core.ddgan.sampler`, and a
time-conditioned discriminator D(x_{t-1}, x_t, t) that tells real pairs from fake pairs.

Indexing (0-based, as :mod:`ddgan_core.diffusion`): ``t`` runs over ``0 .. T-1``; ``betas[t]``
is the step x_{t-1} -> x_t and ``x_{-1}`` is the data x_0. For a timestep t:

* real pair: x_{t-1} ~ q(x_{t-1} | x_0) (``q_sample`` at index t-1; the data itself at t = 0)
  and x_t ~ q(x_t | x_{t-1}) by one forward step (``q_step`` at index t);
* fake pair: the same x_t and x'_{t-1} ~ q(x_{t-1} | x_t, G(x_t, t, z)), the posterior at
  index t (:func:`~ddgan_core.ddgan.sampler.generator_posterior_sample`).

Losses, the non-saturating form of the paper's eqs. (8)-(9) (eq. (9) of the seed text writes q
where the generator's expectation is under p_theta):

* D: ``softplus(-D(x_{t-1}, x_t, t)) + softplus(D(x'_{t-1}, x_t, t))``, plus R1 on the real
  x_{t-1}, ``gamma / 2 * E ||grad_{x_{t-1}} D||^2``. With lazy regularisation (the penalty on
  every k-th D update only) two conventions exist, chosen by ``ddgan_r1_convention``:
  ``"ddgan"`` keeps the weight gamma / 2 (the DDGAN authors' code, whose gamma = 0.02 and k = 15
  the profiles copy), ``"stylegan2"`` multiplies it by k so that the average penalty per update
  is the same as without laziness (Karras et al. 2020). With the same gamma and k the second is
  k times stronger;
* G: ``softplus(-D(x'_{t-1}, x_t, t))``.

Adam with betas (0.5, 0.9), cosine learning-rate decay without warm-up, an EMA of G,
``d_steps`` discriminator updates (each on a fresh batch) per generator update (on the last
batch), bf16 autocast on CUDA only. The same :class:`DDGANTrainer` trains the image model
(:func:`train_ddgan`) and the 2-D toy model (:mod:`ddgan_core.toy`).

Stall watch. A DDGAN can sit at parity from the first steps: D(real) = D(fake), the D loss at
2 ln 2 and R1 near zero, the generator undoing every step of a weak discriminator. A globally
pooled discriminator head is such a one: freshly initialised, it is close to a linear map of
each image's mean intensity, which the generator matches within a few dozen steps, and the
spatial features D would need never get a gradient (:mod:`ddgan_core.nets.discriminator`). The
history records the gap ``mean D(real) - mean D(fake)`` of every logging interval;
:func:`stall_fraction` is the share of intervals at parity and ``train_ddgan`` warns when the
first half of training is mostly at parity (late parity can be convergence).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import (
    DDGAN_CHECKPOINT,
    CheckpointError,
    load_checkpoint,
    require_format,
    save_checkpoint,
)
from ..device import pick_device
from ..diffusion import GaussianDiffusion
from ..distributed import World, current_world
from ..nets.discriminator import Discriminator
from ..nets.unet import count_parameters
from ..training import (
    EMA,
    autocast_context,
    check_finite,
    check_weights_finite,
    checkpoint_cadence,
    global_rng_state,
    prepare_workdir,
    restoring,
    resume_state,
    run_training_loop,
    set_global_rng_state,
    warmup_cosine,
)
from .losses import (
    DRIFT_WEIGHT,
    GP_WEIGHT,
    chance_loss,
    check_loss,
    d_loss,
    g_loss,
    gradient_penalty,
)
from .sampler import (
    GENERATOR_FILE,
    IMAGE_SHAPE,
    DDGANGenerator,
    _arch,
    generator_from_weights,
    generator_posterior_sample,
    make_ddgan_diffusion,
    make_generator,
    save_generator,
)

#: The D loss at parity (D(real) = D(fake) = 0): 2 ln 2.
LN4 = 2.0 * math.log(2.0)
#: Format tag of the resumable training state ``checkpoint.pt``.
CHECKPOINT_FORMAT = DDGAN_CHECKPOINT
ADAM_BETAS = (0.5, 0.9)


def make_discriminator(config: Mapping[str, Any]) -> Discriminator:
    """The image discriminator D(x_{t-1}, x_t, t) with channels ``ddgan_d_channels`` and head
    ``ddgan_d_head`` (``"flatten"`` or ``"mean"``, see :mod:`ddgan_core.nets.discriminator`)."""
    return Discriminator(channels=list(config["ddgan_d_channels"]), in_channels=IMAGE_SHAPE[0],
                         image_size=IMAGE_SHAPE[1], head=str(config["ddgan_d_head"]))


# --------------------------------------------------------------------------------------------
# pairs, losses, R1
# --------------------------------------------------------------------------------------------


def _randn(shape: Sequence[int], gen: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, device=like.device, dtype=torch.float32)


def q_sample_pairs(
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    t: torch.Tensor,
    gen: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real pairs (x_{t-1}, x_t) of the forward process for 0-based timesteps ``t`` [B].

    x_{t-1} ~ q(x_{t-1} | x_0) = N(sqrt(abar_{t-1}) x_0, (1 - abar_{t-1}) I) (x_0 itself where
    t = 0), then x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps, so that jointly
    x_t ~ q(x_t | x_0) and Cov(x_{t-1}, x_t | x_0) = sqrt(1 - beta_t) (1 - abar_{t-1}) I.
    Noise comes from ``gen`` (a generator on x0's device) or the global RNG.
    """
    x0 = x0.float()
    t_prev = (t - 1).clamp(min=0)
    x_prev = diffusion.q_sample(x0, t_prev, noise=_randn(x0.shape, gen, x0))
    is_data = (t == 0).to(x0.device).reshape((-1,) + (1,) * (x0.ndim - 1))
    x_prev = torch.where(is_data, x0, x_prev)
    x_t = diffusion.q_step(x_prev, t, noise=_randn(x0.shape, gen, x0))
    return x_prev, x_t


def r1_penalty(d_real: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """E_batch ||grad_{x_real} D||^2 from logits ``d_real`` computed on ``x_real``.

    ``x_real`` must require grad and ``d_real`` come from it; the graph is kept
    (``create_graph=True``) so the penalty trains D. The gradient is that of the batch sum, as
    in StyleGAN2 (identical to per-image gradients when images do not interact).
    """
    (grad,) = torch.autograd.grad(d_real.float().sum(), x_real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


#: Conventions of the lazy R1 weight (:func:`r1_weight`).
R1_CONVENTIONS = ("ddgan", "stylegan2")


def r1_weight(gamma: float, lazy: int, d_update: int, convention: str = "stylegan2") -> float:
    """Weight of :func:`r1_penalty` at the ``d_update``-th D update (0-based).

    ``gamma / 2`` every update when ``lazy <= 1``. Otherwise the penalty is applied on every
    ``lazy``-th update only (0 elsewhere), weighted ``gamma / 2`` under ``convention="ddgan"``
    (the DDGAN code) or ``gamma / 2 * lazy`` under ``"stylegan2"`` (the lazy penalty made as
    strong on average as an every-step one).
    """
    if convention not in R1_CONVENTIONS:
        raise ValueError(f"ddgan_r1_convention={convention!r} is unknown; allowed: "
                         f"{list(R1_CONVENTIONS)}")
    if gamma <= 0:
        return 0.0
    if lazy <= 1:
        return gamma / 2.0
    if d_update % lazy:
        return 0.0
    return gamma / 2.0 * (lazy if convention == "stylegan2" else 1)


def stall_fraction(
    history: Sequence[Mapping[str, float]], gap_tol: float = 0.05, loss_tol: float = 0.03
) -> float:
    """Share of history entries at parity: |gap| < gap_tol and |loss_d - 2 ln 2| < loss_tol.

    Parity late in a run can be the equilibrium a converged GAN approaches (the 2-D toy ends
    near gap 0.05, loss 1.37); a stall is parity *early*, before the generator is any good, so
    apply this to the first half of the history (``history[: len(history) // 2]``).
    """
    if not history:
        return 0.0
    stalled = [
        abs(h["gap"]) < gap_tol and abs(h["loss_d"] - LN4) < loss_tol for h in history
    ]
    return sum(stalled) / len(stalled)


def discriminator_state(history: Sequence[Mapping[str, float]],
                        loss_tol: float = 0.03, loss: str = "ns") -> dict[str, float]:
    """How far the discriminator is from chance over ``history``, by two statistics rather than
    one threshold (logged intervals, all of them and the second half):

    * the logit gap ``mean D(real) - mean D(fake)``: its median and its second-half mean
      (0 when D cannot tell the pairs apart);
    * the D loss's distance from the loss of a D that outputs 0 everywhere (``2 ln 2`` for the
      ``ns`` loss; :func:`~ddgan_core.ddgan.losses.chance_loss` of ``loss``): its median, and
      the share of intervals within ``loss_tol`` of it.
    """
    if not history:
        return {}
    chance = chance_loss(loss)
    gaps = [float(h["gap"]) for h in history]
    distance = [abs(float(h["loss_d"]) - chance) for h in history]
    late = history[len(history) // 2:]

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])

    return {
        "gap_median": median(gaps),
        "gap_late_mean": sum(float(h["gap"]) for h in late) / len(late),
        "loss_d_distance_median": median(distance),
        "near_parity_share": sum(d < loss_tol for d in distance) / len(distance),
        "loss_tol": loss_tol,
        "intervals": len(history),
    }


# --------------------------------------------------------------------------------------------
# the trainer (generic over networks and data shapes)
# --------------------------------------------------------------------------------------------

_STATS = ("loss_d", "loss_g", "d_real", "d_fake", "r1", "r1_count")


class DDGANTrainer:
    """One DDGAN optimisation state: G, D, EMA of G, two Adams, the noise RNG and counters.

    ``G(x_t, t, z)`` returns a predicted x_0 shaped like x_t; ``D(x_prev, x_t, t)`` returns
    logits [B]. Data batches are tensors [B, ...] of any shape. All noise (t, z, forward and
    posterior noise) comes from one ``torch.Generator`` on ``device`` seeded with ``seed``, whose
    state is part of :meth:`state_dict`, so a resumed run continues bit for bit.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        diffusion: GaussianDiffusion,
        *,
        nz: int,
        lr_g: float,
        lr_d: float,
        total_steps: int,
        r1_gamma: float,
        lazy_r1: int = 1,
        r1_convention: str = "stylegan2",
        loss: str = "ns",
        d_steps: int = 1,
        ema_decay: float = 0.999,
        device: str | torch.device = "cpu",
        seed: int = 0,
        world: World | None = None,
    ):
        if d_steps < 1:
            raise ValueError(f"d_steps={d_steps} must be >= 1")
        self.device = torch.device(device)
        self.G = G.to(self.device)
        self.D = D.to(self.device)
        self.diffusion = diffusion
        self.T = diffusion.num_timesteps
        self.nz = int(nz)
        self.lr_g, self.lr_d = float(lr_g), float(lr_d)
        self.total_steps = int(total_steps)
        self.r1_gamma = float(r1_gamma)
        self.lazy_r1 = int(lazy_r1)
        r1_weight(self.r1_gamma, self.lazy_r1, 0, r1_convention)  # checks the name
        self.r1_convention = r1_convention
        self.loss = check_loss(loss)
        self.d_steps = int(d_steps)
        self.ema = EMA(self.G, ema_decay)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.lr_g, betas=ADAM_BETAS)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.lr_d, betas=ADAM_BETAS)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(seed))
        self.step = 0  # completed generator updates
        self.d_updates = 0  # completed discriminator updates
        # under torchrun: every process draws the global batch's noise and keeps its share
        # (whole minibatch-stddev groups), gradients are averaged (ddgan_core.distributed)
        self.world = world or World()
        self._groups = int(getattr(D, "stddev_group", 1) or 1)

    # -- helpers -------------------------------------------------------------------------------

    def lr_factor(self) -> float:
        return warmup_cosine(self.step, self.total_steps, 0)

    def _set_lr(self) -> None:
        factor = self.lr_factor()
        for group in self.opt_g.param_groups:
            group["lr"] = self.lr_g * factor
        for group in self.opt_d.param_groups:
            group["lr"] = self.lr_d * factor

    def _t(self, batch: int) -> torch.Tensor:
        return torch.randint(0, self.T, (batch,), generator=self.gen, device=self.device)

    def _z(self, batch: int) -> torch.Tensor:
        return torch.randn(batch, self.nz, generator=self.gen, device=self.device)

    # -- updates -------------------------------------------------------------------------------

    def d_step(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update on data ``x0``; returns detached statistics."""
        x0 = x0.to(self.device, torch.float32)
        b = x0.shape[0]
        t = self._t(b)
        x_prev, x_t = q_sample_pairs(self.diffusion, x0, t, self.gen)
        z = self._z(b)  # drawn in the same order as ever: t, the pair's noise, z, noise
        noise = torch.randn(x0.shape, generator=self.gen, device=self.device)
        # WGAN-GP's interpolation weights, drawn for the global batch after the rest (no other
        # loss draws them, so their random streams are as before the option existed)
        mix = (torch.rand((b,) + (1,) * (x0.ndim - 1), generator=self.gen, device=self.device)
               if self.loss == "wgan-gp" else None)
        x_prev, x_t, t, z, noise = (self.world.shard(v, self._groups)
                                    for v in (x_prev, x_t, t, z, noise))
        mix = self.world.shard(mix, self._groups) if mix is not None else None
        weight = r1_weight(self.r1_gamma, self.lazy_r1, self.d_updates, self.r1_convention)
        if weight > 0:
            x_prev.requires_grad_(True)
        self.D.requires_grad_(True)
        with autocast_context(self.device):
            d_real = self.D(x_prev, x_t, t).float()
        r1 = r1_penalty(d_real, x_prev) if weight > 0 else None
        with torch.no_grad(), autocast_context(self.device):
            x_fake, _ = generator_posterior_sample(self.G, self.diffusion, x_t, t, z, noise)
        with autocast_context(self.device):
            d_fake = self.D(x_fake, x_t, t).float()
        loss = d_loss(d_real, d_fake, self.loss)
        total = loss + weight * r1 if r1 is not None else loss
        if mix is not None:  # the critic's own stabilisers (see ddgan_core.ddgan.losses)
            with autocast_context(self.device):
                gp = gradient_penalty(self.D, x_prev, x_fake, x_t, t, mix)
            total = total + GP_WEIGHT * gp + DRIFT_WEIGHT * d_real.pow(2).mean()
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.world.average_gradients(self.D.parameters())
        self.opt_d.step()
        self.d_updates += 1
        zero = torch.zeros((), device=self.device)
        return {
            "loss_d": loss.detach(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
            "r1": r1.detach() if r1 is not None else zero,
            "r1_count": torch.ones((), device=self.device) if r1 is not None else zero,
        }

    def g_step(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """One generator update (then the EMA) on data ``x0``; returns detached statistics."""
        x0 = x0.to(self.device, torch.float32)
        b = x0.shape[0]
        t = self._t(b)
        x_t = self.diffusion.q_sample(
            x0, t, noise=torch.randn(x0.shape, generator=self.gen, device=self.device)
        )
        z = self._z(b)
        noise = torch.randn(x0.shape, generator=self.gen, device=self.device)
        x_t, t, z, noise = (self.world.shard(v, self._groups) for v in (x_t, t, z, noise))
        self.D.requires_grad_(False)
        with autocast_context(self.device):
            x_fake, _ = generator_posterior_sample(self.G, self.diffusion, x_t, t, z, noise)
            d_fake = self.D(x_fake, x_t, t).float()
        loss = g_loss(d_fake, self.loss)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.world.average_gradients(self.G.parameters())
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.ema.update(self.G)
        return {"loss_g": loss.detach()}

    def train_step(self, next_batch: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``d_steps`` D updates (a fresh batch each) and one G update (on the last batch).

        Returns the step's statistics stacked in the order of ``_STATS`` (D values averaged over
        the D updates, r1 summed with its count) as a detached tensor on the device.
        """
        self._set_lr()
        self.G.train()
        self.D.train()
        d_stats = [self.d_step(x0 := next_batch()) for _ in range(self.d_steps)]
        g_stats = self.g_step(x0)
        self.step += 1
        n = float(self.d_steps)
        return self.world.mean(torch.stack([
            sum(s["loss_d"] for s in d_stats) / n,
            g_stats["loss_g"],
            sum(s["d_real"] for s in d_stats) / n,
            sum(s["d_fake"] for s in d_stats) / n,
            sum(s["r1"] for s in d_stats),
            sum(s["r1_count"] for s in d_stats),
        ]))

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.gen.get_state(),
            "step": self.step,
            "d_updates": self.d_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.gen.set_state(state["rng"].cpu())
        self.step = int(state["step"])
        self.d_updates = int(state["d_updates"])


class HistoryLogger:
    """Accumulates per-step statistics on the device and turns them into history entries."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset(time.perf_counter())

    def reset(self, now: float) -> None:
        self.sums = torch.zeros(len(_STATS), device=self.device, dtype=torch.float64)
        self.steps = 0
        self.images = 0
        self.since = now

    def add(self, stats: torch.Tensor, images: int) -> None:
        self.sums += stats.double()
        self.steps += 1
        self.images += images

    def check(self, step: int) -> list[float]:
        """Means of the interval so far; raises DivergenceError on NaN/inf/huge losses."""
        values = (self.sums / max(1, self.steps)).tolist()
        check_finite(step, {"loss_d": values[0], "loss_g": values[1], "d_real": values[2],
                            "d_fake": values[3]})
        return values

    def entry(self, step: int, lr_factor: float, lr_g: float, lr_d: float) -> dict[str, float]:
        now = time.perf_counter()
        loss_d, loss_g, d_real, d_fake, _, _ = self.check(step)
        r1_sum, r1_count = self.sums[4].item(), self.sums[5].item()
        entry = {
            "step": step,
            "loss_d": loss_d,
            "loss_g": loss_g,
            "r1": r1_sum / r1_count if r1_count else float("nan"),
            "d_real": d_real,
            "d_fake": d_fake,
            "gap": d_real - d_fake,
            "lr_g": lr_g * lr_factor,
            "lr_d": lr_d * lr_factor,
            "images_per_s": self.images / max(now - self.since, 1e-9),
        }
        self.reset(now)
        return entry


# --------------------------------------------------------------------------------------------
# image training
# --------------------------------------------------------------------------------------------


#: Profile keys that only say how often state is saved or logged: not part of a run's identity.
CADENCE_KEYS = ("ddgan_checkpoint_every", "ddgan_log_every")


def training_config(profile: Mapping[str, Any],
                    without: Sequence[str] = ()) -> dict[str, Any]:
    """The keys of a resolved profile that determine a trained DDGAN (as
    :func:`ddgan_core.ddpm.training_config` for DDPM): the seed and every ``ddgan_`` key but the
    cadences, which go to :func:`train_ddgan` as ``checkpoint_every`` / ``log_every``.
    ``without`` names keys to leave out, unread (a timing harness's key holds neither the seed
    nor the step count: time depends on neither).

    ``ddgan_loss`` enters only when it is not ``ns``: a configuration without it means the
    ``ns`` loss (every entry computed before the key existed), so those entries keep their keys.
    """
    names = ["seed", *(k for k in sorted(profile)
                       if k.startswith("ddgan_") and k not in CADENCE_KEYS)]
    config = {k: profile[k] for k in names if k not in without}
    if config.get("ddgan_loss") == "ns":
        del config["ddgan_loss"]
    return config


def _log_every(total: int) -> int:
    return max(1, min(50, total // 50))


def _check_data(data: torch.Tensor) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or not data.dtype.is_floating_point:
        raise ValueError("data must be a float tensor of images [N, 1, 28, 28] in [-1, 1]")
    if tuple(data.shape[1:]) != IMAGE_SHAPE or data.shape[0] < 1:
        raise ValueError(f"data must have shape [N, 1, 28, 28], got {tuple(data.shape)}")
    return data


def train_ddgan(
    config: Mapping[str, Any],
    workdir: str | Path,
    device: str | torch.device | None = None,
    progress: bool = True,
    data: torch.Tensor | None = None,
    *,
    stop_after: int | None = None,
    checkpoint_every: int | None = None,
    log_every: int | None = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Train a DDGAN on FashionMNIST (or ``data``) from the ``ddgan_*`` keys of ``config``.

    Checkpoints go to ``workdir/checkpoint.pt`` every ``checkpoint_every`` steps (default: the
    config's ``ddgan_checkpoint_every``, 0 for none; the cadence is not part of a run's
    identity), at the end and when stopping early; an existing checkpoint is resumed (its
    network shapes, ``ARCH_KEYS``, must match ``config``; learning rates, step counts etc. may
    change) and kept after the end. Early stops (``stop_after``: at that step of the run,
    counting the steps of earlier calls; ``max_seconds``: after that long in this call) are
    those of :func:`~ddgan_core.training.run_training_loop`, as in DDPM's trainer: they leave a
    checkpoint and return ``finished = False``. A history entry is logged every
    ``log_every`` steps (default: the config's ``ddgan_log_every``, else
    ``min(50, steps // 50)``). When all ``ddgan_train_steps`` are done,
    ``workdir/generator_ema.safetensors`` holds the EMA generator in fp16 with the configuration
    needed by :func:`~ddgan_core.ddgan.load_generator`.

    Raises :class:`~ddgan_core.training.DivergenceError` on NaN/inf or |loss| > 1e4 (the last
    checkpoint is kept) and :class:`~ddgan_core.checkpoint.CheckpointError` for a bad checkpoint.
    Returns metrics: ``train_steps``, ``images_seen`` (real images shown to D, ``d_steps`` batches
    per step), ``wall_time_s`` (all calls), ``images_per_s`` (this call), the final interval's
    ``loss_d``, ``loss_g``, ``r1``, ``d_real``, ``d_fake``, ``gap``, ``stall_fraction`` (whole run)
    and ``stall_fraction_early`` (first half; a warning when above 0.5), ``history`` and
    ``finished``.
    """
    world, device = current_world(pick_device(device))
    workdir = prepare_workdir(workdir)
    arch = _arch(config)
    seed = int(config.get("seed", 0))
    total = int(config["ddgan_train_steps"])
    batch_size = int(config["ddgan_batch_size"])
    world.check_batch(batch_size, "ddgan_batch_size")
    every_ckpt = checkpoint_cadence(checkpoint_every, config, "ddgan_checkpoint_every")
    log_every = int(log_every or config.get("ddgan_log_every", 0) or _log_every(total))

    torch.manual_seed(seed)
    G, D = make_generator(config), make_discriminator(config)
    diffusion = make_ddgan_diffusion(int(config["ddgan_timesteps"]))
    trainer = DDGANTrainer(
        G, D, diffusion,
        nz=int(config["ddgan_nz"]),
        lr_g=float(config["ddgan_lr_g"]),
        lr_d=float(config["ddgan_lr_d"]),
        total_steps=total,
        r1_gamma=float(config["ddgan_r1_gamma"]),
        lazy_r1=int(config["ddgan_lazy_r1"]),
        # a configuration from before the key existed meant StyleGAN2's weight
        r1_convention=str(config.get("ddgan_r1_convention", "stylegan2")),
        loss=str(config.get("ddgan_loss", "ns")),  # likewise: before the key, the ns loss
        d_steps=int(config["ddgan_d_steps"]),
        ema_decay=float(config["ddgan_ema_decay"]),
        device=device,
        seed=seed,
        world=world,
    )
    if data is None:
        from ..data import load_fashion_mnist

        data = load_fashion_mnist("train")[0]
    data = _check_data(data).to(device)
    data_gen = torch.Generator().manual_seed(seed + 1)

    ckpt_path = workdir / "checkpoint.pt"
    history: list[dict[str, float]] = []
    wall_before = 0.0
    images = {"seen": 0, "this_call": 0}
    state = resume_state(ckpt_path, CHECKPOINT_FORMAT, "a DDGAN training checkpoint", device)
    if state is not None:
        if state.get("arch") != arch:
            raise CheckpointError(
                f"{ckpt_path} was written for networks {state.get('arch')} but the config asks "
                f"for {arch}; delete it or use a fresh workdir"
            )
        with restoring(ckpt_path, "the networks"):
            trainer.load_state_dict(state["trainer"])
        data_gen.set_state(state["data_rng"].cpu())
        set_global_rng_state(state.get("global_rng"), device)
        history = list(state["history"])
        wall_before = float(state["wall_time_s"])
        images["seen"] = int(state["images_seen"])

    probe = _probe_batch(data, diffusion, int(config["ddgan_nz"]), device)
    n_data, n_img = data.shape[0], batch_size * trainer.d_steps
    check_each_step = device.type == "cpu"
    logger = HistoryLogger(device)
    lr_factor = [trainer.lr_factor()]

    def next_batch() -> torch.Tensor:
        idx = torch.randint(0, n_data, (batch_size,), generator=data_gen)
        return data[idx.to(device)]

    def train_step() -> int:
        lr_factor[0] = trainer.lr_factor()
        stats = trainer.train_step(next_batch)
        images["seen"] += n_img
        images["this_call"] += n_img
        logger.add(stats, n_img)
        if check_each_step:
            values = stats.tolist()
            check_finite(trainer.step, {"loss_d": values[0], "loss_g": values[1]})
        return trainer.step

    def log(step: int) -> dict[str, str]:
        entry = logger.entry(step, lr_factor[0], trainer.lr_g, trainer.lr_d)
        history.append(entry)
        return {"loss_d": f"{entry['loss_d']:.3f}", "loss_g": f"{entry['loss_g']:.3f}",
                "gap": f"{entry['gap']:.3f}"}

    def save(step: int, seconds: float) -> None:
        if logger.steps:
            logger.check(step)
        networks = {"G": trainer.G, "D": trainer.D, "G_ema": trainer.ema.model}
        check_weights_finite(step, networks,
                             probe_logits(trainer.G, trainer.D, diffusion, *probe))
        if not world.is_main:  # the processes hold the same state; one writes it
            world.barrier()
            return
        save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT,
            "arch": arch,
            "trainer": trainer.state_dict(),
            "data_rng": data_gen.get_state(),
            "global_rng": global_rng_state(device),
            "history": history,
            "wall_time_s": wall_before + seconds,
            "images_seen": images["seen"],
        })
        world.barrier()

    end = run_training_loop(
        train_step, save, log, start=trainer.step, total=total, desc="DDGAN",
        progress=progress and world.is_main,
        log_every=log_every, checkpoint_every=every_ckpt, stop_after=stop_after,
        max_seconds=max_seconds,
    )
    if end.finished and world.is_main:
        save_generator(workdir / GENERATOR_FILE, trainer.ema.model, config, trainer.step)
    world.barrier()

    early = history[: max(1, len(history) // 2)]
    metrics: dict[str, Any] = {
        "train_steps": trainer.step,
        "finished": end.finished,
        "images_seen": images["seen"],
        "wall_time_s": wall_before + end.seconds,
        "images_per_s": images["this_call"] / end.seconds if images["this_call"] else 0.0,
        "device": str(device),
        "generator_parameters": count_parameters(trainer.G),
        "discriminator_parameters": count_parameters(trainer.D),
        "stall_fraction": stall_fraction(history),
        "stall_fraction_early": stall_fraction(early),
        "history": history,
        "processes": world.size,
    }
    last = history[-1] if history else {}
    for key in ("loss_d", "loss_g", "r1", "d_real", "d_fake", "gap"):
        metrics[key] = last.get(key, float("nan"))
    if end.finished and len(early) >= 5 and metrics["stall_fraction_early"] > 0.5:
        warnings.warn(
            f"DDGAN training looks stalled: in {metrics['stall_fraction_early']:.0%} of the "
            "first half's logging intervals D(real) = D(fake) and the D loss sits at 2 ln 2. "
            "Use ddgan_d_head=flatten (a mean-pooled discriminator sees little more than each "
            "image's mean intensity, which the generator matches within a few dozen steps), "
            "raise ddgan_d_steps or lower ddgan_lr_g; ddgan.discriminator_state(history) gives "
            "the logit gap and the D loss's distance from 2 ln 2.",
            RuntimeWarning, stacklevel=2,
        )
    return metrics


def _probe_batch(data: torch.Tensor, diffusion: GaussianDiffusion, nz: int,
                 device: torch.device) -> tuple[torch.Tensor, ...]:
    """A fixed (x_t, t, z, noise) batch for checking new weights before a checkpoint; drawn from
    its own generator, so the training RNGs are untouched."""
    gen = torch.Generator().manual_seed(20_221)
    x0 = data[:16].to(device, torch.float32)
    t = torch.arange(x0.shape[0]) % diffusion.num_timesteps
    x_t = diffusion.q_sample(x0, t.to(device), torch.randn(x0.shape, generator=gen).to(device))
    z = torch.randn(x0.shape[0], nz, generator=gen).to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    return x_t, t.to(device), z, noise


@torch.no_grad()
def probe_logits(G: nn.Module, D: nn.Module, diffusion: GaussianDiffusion, x_t: torch.Tensor,
                 t: torch.Tensor, z: torch.Tensor, noise: torch.Tensor) -> dict[str, float]:
    """Largest |x_0 prediction| and |D logit| of the current networks on a fixed batch (eval
    mode); :func:`~ddgan_core.training.check_weights_finite` refuses NaN/inf or |value| > 1e4."""
    modes = G.training, D.training
    G.eval()
    D.eval()
    try:
        with autocast_context(x_t.device):
            x_fake, x0_pred = generator_posterior_sample(G, diffusion, x_t, t, z, noise)
            logits = D(x_fake, x_t, t).float()
    finally:
        G.train(modes[0])
        D.train(modes[1])
    return {"probe_x0": float(x0_pred.float().abs().max()),
            "probe_logit": float(logits.abs().max())}


# --------------------------------------------------------------------------------------------
# what an unfinished run in a workdir holds
# --------------------------------------------------------------------------------------------


def _training_state(workdir: str | Path, device: str | torch.device = "cpu") -> dict:
    """The DDGAN training state ``workdir/checkpoint.pt`` (format checked)."""
    path = Path(workdir) / "checkpoint.pt"
    return require_format(load_checkpoint(path, device), CHECKPOINT_FORMAT, path,
                          "a DDGAN training checkpoint")


def trained_steps(workdir: str | Path) -> int:
    """Generator steps done by the DDGAN run in ``workdir`` (0 when it has no checkpoint)."""
    if not (Path(workdir) / "checkpoint.pt").exists():
        return 0
    return int(_training_state(workdir)["trainer"]["step"])


def ema_generator_from_checkpoint(workdir: str | Path,
                                  device: str | torch.device | None = None) -> DDGANGenerator:
    """The EMA generator of the DDGAN training state in ``workdir`` (for evaluating a run
    before it finishes; the finished one is in ``generator_ema.safetensors``), fp32, eval
    mode, with ``arch`` like :func:`~ddgan_core.ddgan.load_generator`'s."""
    device = pick_device(device)
    state = _training_state(workdir, device)
    with restoring(Path(workdir) / "checkpoint.pt", "the networks it names"):
        return generator_from_weights(state["arch"], state["trainer"]["ema"], device)
