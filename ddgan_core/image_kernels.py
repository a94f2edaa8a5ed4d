"""Reverse kernels for FashionMNIST that are not adversarial (chapter 6).

DDGAN's chain (the discrete VP schedule with ``ddgan_timesteps`` steps, the same generator
backbone and width) with its kernel p(x_{t-1} | x_t) fitted without a discriminator:

``gaussian``
    One Gaussian per step, DDPM's kernel (Ho et al. 2020, eq. 11 with the "fixed small"
    variance beta~_t): a UNet predicts the noise, trained with the simple loss
    ``E ||eps - eps_theta(x_t, t)||^2`` over the T steps, sampled ancestrally. The direct test
    of the DDGAN paper's claim that the Gaussian kernel is what fails when T is small. With
    T = 4 the x_0 it implies, (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t), multiplies the
    noise predictor's error by sqrt((1 - abar_t) / abar_t), about 150 at the first reverse step.
``gaussian-x0``
    The same Gaussian kernel, q(x_{t-1} | x_t, x_0 = x0_theta(x_t, t)) with beta~_t, with the
    network predicting x_0 (tanh-bounded, DDGAN's generator without latent) by squared error
    ``E ||x_0 - x0_theta(x_t, t)||^2``: the posterior mean E[x_0 | x_t], without the
    amplification. It is the deterministic generator of DDGAN's "no latent" ablation trained by
    regression instead of adversarially.
``mixture``
    A mixture of K Gaussians per step, fitted by maximum likelihood on forward-process pairs
    (x_{t-1}, x_t). The UNet predicts, for each component k, an image x0_k (tanh-bounded, as
    DDGAN's generator), a weight logit and a log-scale offset (each the spatial mean of one
    output channel). Component k is the posterior q(x_{t-1} | x_t, x_0 = x0_k) with its variance
    scaled by exp(s_k):

        p(x_{t-1} | x_t) = sum_k pi_k N(x_{t-1}; mu~_t(x_t, x0_k), exp(s_k) beta~_t I),

    with beta~_t the posterior variance (at t = 0, where the posterior is a point mass, the
    t = 1 value, as DDPM's clipped log-variance). The loss is the negative log-likelihood per
    pixel. Sampling draws k ~ pi, then x_{t-1} from component k (its mean at t = 0, as DDGAN).

Both train with the generator's optimiser settings (Adam (0.5, 0.9) at ``ddgan_lr_g`` with
cosine decay, batch ``ddgan_batch_size``, EMA ``ddgan_ema_decay``), so that a run of the same
number of steps as a DDGAN sweep point differs from it only in the kernel and the loss. One
step costs one network forward and backward: about a third of a DDGAN step, which also trains
its discriminator (chapter 6 reports both costs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import save_checkpoint
from .ddgan.sampler import IMAGE_SHAPE, make_ddgan_diffusion
from .ddgan.trainer import ADAM_BETAS, q_sample_pairs
from .device import pick_device
from .diffusion import GaussianDiffusion
from .nets.unet import UNet, count_parameters
from .training import (
    EMA,
    check_finite,
    check_weights_finite,
    prepare_workdir,
    restoring,
    resume_state,
    run_training_loop,
    warmup_cosine,
)

#: The kernels of this module.
IMAGE_KERNELS = ("gaussian", "gaussian-x0", "mixture")
CHECKPOINT_FORMAT = "ddgan_core.image_kernel/1"


def _check_kernel(kernel: str) -> str:
    if kernel not in IMAGE_KERNELS:
        raise ValueError(f"image_kernel={kernel!r} is unknown; valid: {', '.join(IMAGE_KERNELS)}")
    return kernel


class MixtureKernelUNet(nn.Module):
    """A UNet whose ``K (C + 2)`` output channels are K images x0_k (tanh), K weight logits
    and K log-scale offsets (the spatial means of one channel each); see the module text."""

    def __init__(self, net: UNet, components: int, channels: int = IMAGE_SHAPE[0]):
        super().__init__()
        self.net, self.components, self.channels = net, int(components), int(channels)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(x_t, t)
        b, K, C = out.shape[0], self.components, self.channels
        x0 = torch.tanh(out[:, : K * C]).view(b, K, C, *out.shape[2:])
        logits = out[:, K * C: K * C + K].mean(dim=(2, 3))
        log_scale = out[:, K * C + K:].mean(dim=(2, 3))
        return x0, logits, log_scale


class X0Predictor(nn.Module):
    """x0_theta(x_t, t) = tanh(UNet(x_t, t)): the ``gaussian-x0`` kernel's network."""

    def __init__(self, net: UNet):
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(x_t, t))


def make_kernel_network(config: Mapping[str, Any]) -> nn.Module:
    """The network of ``config["image_kernel"]``: DDGAN's generator backbone (``ddgan_channels``,
    ``ddgan_res_blocks``, attention at 7x7) without latent, predicting the noise (gaussian),
    x_0 (gaussian-x0, :class:`X0Predictor`) or the mixture's parameters
    (:class:`MixtureKernelUNet`, ``image_kernel_components`` of them).
    """
    kernel = _check_kernel(str(config["image_kernel"]))
    C = IMAGE_SHAPE[0]
    K = int(config.get("image_kernel_components", 1)) if kernel == "mixture" else 1
    if K < 1:
        raise ValueError(f"image_kernel_components={K} must be >= 1")
    net = UNet(channels=list(config["ddgan_channels"]),
               num_res_blocks=int(config["ddgan_res_blocks"]), attention_resolutions=(7,),
               in_channels=C, out_channels=K * (C + 2) if kernel == "mixture" else C,
               z_dim=0, dropout=0.0, image_size=IMAGE_SHAPE[1])
    if kernel == "mixture":
        return MixtureKernelUNet(net, K, C)
    return X0Predictor(net) if kernel == "gaussian-x0" else net


def _component_moments(diffusion: GaussianDiffusion, x0: torch.Tensor, x_t: torch.Tensor,
                       t: torch.Tensor, log_scale: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Means [B, K, ...] and log-variances [B, K] of the mixture's components."""
    b, K = x0.shape[:2]
    flat_t = t.repeat_interleave(K)
    mean, _, log_var = diffusion.q_posterior_mean_variance(
        x0.reshape(b * K, *x0.shape[2:]), x_t.repeat_interleave(K, dim=0), flat_t)
    log_var = log_var.reshape(b, K, -1)[..., 0] + log_scale
    return mean.view_as(x0), log_var


def mixture_nll(model: MixtureKernelUNet, diffusion: GaussianDiffusion, x_prev: torch.Tensor,
                x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """-log p(x_{t-1} | x_t) per pixel under the mixture (module text), mean over the batch."""
    x0, logits, log_scale = model(x_t, t)
    mean, log_var = _component_moments(diffusion, x0.float(), x_t, t, log_scale.float())
    d = x_prev[0].numel()
    sq = (x_prev.unsqueeze(1) - mean).flatten(2).pow(2).sum(-1)  # [B, K]
    log_normal = -0.5 * (sq * torch.exp(-log_var) + d * (log_var + math.log(2 * math.pi)))
    log_p = torch.logsumexp(F.log_softmax(logits.float(), dim=1) + log_normal, dim=1)
    return -(log_p / d).mean()


def kernel_loss(model: nn.Module, kernel: str, diffusion: GaussianDiffusion, x0: torch.Tensor,
                gen: torch.Generator) -> torch.Tensor:
    """The training loss of ``kernel`` on a batch of data ``x0``: t uniform over the chain,
    x_t by eq. (2); the squared error of the noise (gaussian) or of x_0 (gaussian-x0), or
    :func:`mixture_nll` of x_{t-1} drawn from q(x_{t-1} | x_t, x_0) (mixture)."""
    b = x0.shape[0]
    t = torch.randint(0, diffusion.num_timesteps, (b,), generator=gen, device=x0.device)
    if kernel in ("gaussian", "gaussian-x0"):
        eps = torch.randn(x0.shape, generator=gen, device=x0.device)
        out = model(diffusion.q_sample(x0, t, eps), t)
        return F.mse_loss(out, eps if kernel == "gaussian" else x0)
    # the pair (x_{t-1}, x_t): x_{t-1} ~ q(x_{t-1} | x_0), then x_t ~ q(x_t | x_{t-1})
    x_prev, x_t = q_sample_pairs(diffusion, x0, t, gen)
    return mixture_nll(model, diffusion, x_prev, x_t, t)


@torch.no_grad()
def kernel_step(model: nn.Module, kernel: str, diffusion: GaussianDiffusion, x_t: torch.Tensor,
                t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One reverse step x_t -> x_{t-1} of ``kernel`` (no noise at t = 0)."""
    noise = torch.randn(x_t.shape, generator=gen, device=x_t.device)
    if kernel == "gaussian":
        return diffusion.p_sample_from_eps(model(x_t, t), x_t, t, noise=noise, clip=True)
    if kernel == "gaussian-x0":
        return diffusion.p_sample_from_x0(model(x_t, t), x_t, t, noise=noise, clip=False)
    x0, logits, log_scale = model(x_t, t)
    k = torch.multinomial(F.softmax(logits.float(), dim=1), 1, generator=gen)[:, 0]
    rows = torch.arange(x_t.shape[0], device=x_t.device)
    mean, log_var = _component_moments(diffusion, x0[rows, k][:, None].float(), x_t, t,
                                       log_scale[rows, k][:, None].float())
    std = torch.exp(0.5 * log_var[:, 0]) * (t > 0)
    return mean[:, 0] + std.view(-1, *([1] * (x_t.ndim - 1))) * noise


@torch.no_grad()
def kernel_sample(model: nn.Module, kernel: str, diffusion: GaussianDiffusion, n: int,
                  seed: int = 0, batch_size: int = 256, device: str | torch.device | None = None
                  ) -> tuple[torch.Tensor, int]:
    """``n`` samples of the T-step chain of ``kernel`` from x_{T-1} ~ N(0, I); returns
    (samples clamped to [-1, 1] on the CPU, NFE = T). Seeded per call, batches in order."""
    _check_kernel(kernel)
    device = pick_device(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            x = torch.randn((b, *IMAGE_SHAPE), generator=gen, device=device)
            for i in reversed(range(diffusion.num_timesteps)):
                x = kernel_step(model, kernel, diffusion, x,
                                torch.full((b,), i, device=device, dtype=torch.long), gen)
            out.append(x.clamp(-1.0, 1.0).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out), diffusion.num_timesteps


def train_image_kernel(config: Mapping[str, Any], workdir: str | Path,
                       device: str | torch.device | None = None, data: torch.Tensor | None = None,
                       *, checkpoint_every: int = 0, log_every: int | None = None,
                       stop_after: int | None = None, progress: bool = False,
                       ) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``config["image_kernel"]`` for ``ddgan_train_steps`` steps (module text); resumes
    ``workdir/checkpoint.pt`` (written every ``checkpoint_every`` steps, at the end and at
    ``stop_after``, the run's step to stop at, as :func:`~ddgan_core.training.run_training_loop`).
    Returns (EMA network, metrics: ``train_steps``, ``wall_time_s``, ``parameters``,
    ``history`` of the mean loss per logging interval)."""
    kernel = _check_kernel(str(config["image_kernel"]))
    device = pick_device(device)
    workdir = prepare_workdir(workdir)
    seed = int(config["seed"])
    total = int(config["ddgan_train_steps"])
    batch = int(config["ddgan_batch_size"])
    log_every = int(log_every or max(1, total // 50))
    torch.manual_seed(seed)
    model = make_kernel_network(config).to(device)
    ema = EMA(model, float(config["ddgan_ema_decay"]))
    lr = float(config["ddgan_lr_g"])
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=ADAM_BETAS)
    diffusion = make_ddgan_diffusion(int(config["ddgan_timesteps"]))
    if data is None:
        from .data import load_fashion_mnist

        data = load_fashion_mnist("train")[0]
    data = data.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    data_gen = torch.Generator().manual_seed(seed + 1)
    state = {"step": 0, "wall": 0.0, "history": [], "sum": 0.0, "count": 0}
    path = workdir / "checkpoint.pt"
    saved = resume_state(path, CHECKPOINT_FORMAT, "an image-kernel checkpoint", device)
    if saved is not None:
        with restoring(path, "the network"):
            model.load_state_dict(saved["model"])
            ema.load_state_dict(saved["ema"])
            opt.load_state_dict(saved["opt"])
        gen.set_state(saved["rng"].cpu())
        data_gen.set_state(saved["data_rng"])
        state.update(step=saved["step"], wall=saved["wall_time_s"], history=saved["history"])

    def train_step() -> int:
        for group in opt.param_groups:
            group["lr"] = lr * warmup_cosine(state["step"], total, 0)
        x0 = data[torch.randint(0, data.shape[0], (batch,), generator=data_gen).to(device)]
        loss = kernel_loss(model, kernel, diffusion, x0.float(), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
        value = loss.item()
        check_finite(state["step"] + 1, {"loss": value})
        state["sum"] += value
        state["count"] += 1
        state["step"] += 1
        return state["step"]

    def log(step: int) -> dict[str, str]:
        entry = {"step": step, "loss": state["sum"] / max(1, state["count"])}
        state["history"].append(entry)
        state["sum"], state["count"] = 0.0, 0
        return {"loss": f"{entry['loss']:.4f}"}

    def save(step: int, seconds: float) -> None:
        check_weights_finite(step, {"model": model, "ema": ema.model})
        save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": model.state_dict(),
                               "ema": ema.state_dict(), "opt": opt.state_dict(),
                               "rng": gen.get_state(), "data_rng": data_gen.get_state(),
                               "step": step, "wall_time_s": state["wall"] + seconds,
                               "history": state["history"]})

    end = run_training_loop(train_step, save, log, start=state["step"], total=total,
                            desc=f"{kernel} kernel", progress=progress, log_every=log_every,
                            checkpoint_every=checkpoint_every, stop_after=stop_after)
    metrics = {"train_steps": state["step"], "finished": end.finished,
               "wall_time_s": state["wall"] + end.seconds, "parameters": count_parameters(model),
               "history": state["history"], "device": str(device)}
    return ema.model, metrics
