"""DDGAN's generator and its reverse chain: building, sampling, and the generator's model file.

The generator predicts a clean image, ``x0_pred = G(x_t, t, z)`` with a fresh latent z, and a
reverse step draws x_{t-1} from the posterior of the forward process around that prediction
(Xiao, Kreis, Vahdat, ICLR 2022, eq. 7 with the posterior of eq. 6):

    p_theta(x_{t-1} | x_t) = E_z q(x_{t-1} | x_t, x_0 = G(x_t, t, z)),

a non-Gaussian (implicit) kernel although each draw is Gaussian given z. Indexing is 0-based, as
in :mod:`ddgan_core.diffusion`: at t = 0 the posterior is a point mass on the predicted x_0
(``posterior_mean_coef2[0] = 0`` exactly, ``posterior_mean_coef1[0] = 1`` up to float64
rounding, zero variance), so the last sampling step returns G's x_0 prediction.

The trained EMA generator is kept in ``generator_ema.safetensors`` (:data:`GENERATOR_FILE`; fp16
weights, the :data:`ARCH_KEYS` values and the format tag :data:`GENERATOR_FORMAT`, see
:mod:`ddgan_core.checkpoint`); :func:`load_generator` reads it and the torch
``generator_ema.pt`` written before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import (
    DDGAN_GENERATOR,
    MODEL_FILES,
    CheckpointError,
    half_state_dict,
    read_model_file,
    save_model_file,
)
from ..device import pick_device, sampling_network, to_channels_last
from ..diffusion import GaussianDiffusion, make_beta_schedule
from ..nets.unet import UNet
from ..training import progress_bar, restoring

#: Profile keys that fix the networks' shapes (a checkpoint must match them to resume).
ARCH_KEYS = ("ddgan_timesteps", "ddgan_nz", "ddgan_channels", "ddgan_res_blocks",
             "ddgan_d_channels", "ddgan_d_head")
#: Format tag of the EMA generator's model file.
GENERATOR_FORMAT = DDGAN_GENERATOR
#: The model file :func:`~ddgan_core.ddgan.train_ddgan` writes when it finishes.
GENERATOR_FILE = MODEL_FILES["ddgan"]
IMAGE_SHAPE = (1, 28, 28)


class DDGANGenerator(nn.Module):
    """G(x_t, t, z) = tanh(UNet(x_t, t, z)): the predicted x_0, bounded to [-1, 1].

    With ``z_dim = 0`` (``ddgan_nz = 0``) there is no latent: G(x_t, t) is deterministic, so the
    reverse kernel q(x_{t-1} | x_t, x_0 = G(x_t, t)) is one Gaussian, as DDPM's, and the UNet has
    no mapping network or adaptive norms (the DDGAN paper's "no latent" ablation). Callers still
    pass ``z`` of shape [B, 0].
    """

    def __init__(self, net: UNet):
        super().__init__()
        self.net = net
        self.z_dim = net.z_dim

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(x_t, t, z if self.z_dim else None))


def _arch(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`ARCH_KEYS` values of ``config`` (lists as lists), or ``ValueError``."""
    missing = [k for k in ARCH_KEYS if k not in config]
    if missing:
        raise ValueError(f"config lacks the DDGAN key(s) {missing}")
    return {k: (list(config[k]) if isinstance(config[k], (list, tuple)) else config[k])
            for k in ARCH_KEYS}


def make_generator(config: Mapping[str, Any]) -> DDGANGenerator:
    """The image generator: a UNet with ``z_dim = ddgan_nz``, channels ``ddgan_channels``,
    ``ddgan_res_blocks`` blocks per level, attention at 7x7, and a tanh output (``ddgan_nz = 0``:
    no latent, a deterministic generator; see :class:`DDGANGenerator`)."""
    nz = int(config["ddgan_nz"])
    if nz < 0:
        raise ValueError(f"ddgan_nz={nz} must be >= 0 (0: a generator without latent)")
    return DDGANGenerator(UNet(
        channels=list(config["ddgan_channels"]),
        num_res_blocks=int(config["ddgan_res_blocks"]),
        attention_resolutions=(7,),
        in_channels=IMAGE_SHAPE[0],
        z_dim=nz,
        dropout=0.0,
        image_size=IMAGE_SHAPE[1],
    ))


def make_ddgan_diffusion(num_timesteps: int) -> GaussianDiffusion:
    """DDGAN's forward process: the discrete VP schedule with ``num_timesteps`` steps."""
    return GaussianDiffusion(make_beta_schedule("vp", num_timesteps))


def generator_posterior_sample(
    generator: Callable[..., torch.Tensor],
    diffusion: GaussianDiffusion,
    x_t: torch.Tensor,
    t: torch.Tensor,
    z: torch.Tensor,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw x'_{t-1} ~ p_theta(x_{t-1} | x_t) = q(x_{t-1} | x_t, x_0 = G(x_t, t, z)).

    Returns ``(x_prev, x0_pred)`` in float32; differentiable in G's parameters. No clipping
    (the image generator is already bounded by its tanh); no noise where t = 0.
    """
    x0_pred = generator(x_t, t, z).float()
    x_prev = diffusion.p_sample_from_x0(x0_pred, x_t.float(), t, noise=noise, clip=False)
    return x_prev, x0_pred


# --------------------------------------------------------------------------------------------
# the generator's model file
# --------------------------------------------------------------------------------------------


def save_generator(path: str | Path, generator: nn.Module, config: Mapping[str, Any],
                   train_steps: int) -> Path:
    """Write ``generator`` (fp16) with its :data:`ARCH_KEYS` values from ``config`` and the
    number of generator steps it was trained for, as a model file that
    :func:`load_generator` reads."""
    return save_model_file(path, half_state_dict(generator), {
        "format": GENERATOR_FORMAT, "config": _arch(config), "train_steps": int(train_steps)})


def generator_from_weights(config: Mapping[str, Any], weights: Mapping[str, torch.Tensor],
                           device: str | torch.device | None = None) -> DDGANGenerator:
    """A generator of the :data:`ARCH_KEYS` in ``config`` holding ``weights`` (fp32, eval mode,
    no gradients); it carries ``arch``, those values (``ddgan_timesteps`` and ``ddgan_nz`` are
    what sampling needs)."""
    G = make_generator(config)
    G.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    G.arch = _arch(config)
    return G.to(pick_device(device)).eval().requires_grad_(False)


def load_generator(path: str | Path, device: str | torch.device | None = None) -> DDGANGenerator:
    """Rebuild the EMA generator saved by :func:`~ddgan_core.ddgan.train_ddgan` (fp16 on disk,
    fp32 in memory) from ``generator_ema.safetensors`` or the torch ``generator_ema.pt`` of
    before; see :func:`generator_from_weights` for what it carries.

    Raises ``FileNotFoundError`` for a missing file and
    :class:`~ddgan_core.checkpoint.CheckpointError` for a corrupt or mismatched one.
    """
    device = pick_device(device)
    tensors, info = read_model_file(path)
    if info.get("format") != GENERATOR_FORMAT:
        raise CheckpointError(
            f"{path} is not a DDGAN generator file (expected format {GENERATOR_FORMAT!r}); "
            f"train_ddgan writes one as {GENERATOR_FILE}"
        )
    with restoring(path, "a loadable DDGAN generator"):
        return generator_from_weights(info["config"], tensors, device)


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def ddgan_sample(
    generator: nn.Module,
    diffusion: GaussianDiffusion,
    n: int,
    nz: int,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    *,
    shape: Sequence[int] = IMAGE_SHAPE,
    return_chain: bool = False,
    clamp: bool = True,
    progress: bool = True,
    precision: str = "auto",
    compile: bool = False,
):
    """Draw ``n`` samples with the DDGAN reverse chain; returns ``(samples, nfe)``.

    Per batch: x ~ N(0, I) plays x_{T-1} (abar_{T-1} = 4.3e-5 for the VP schedule); for
    t = T-1 .. 0 a fresh z ~ N(0, I), ``x0 = G(x, t, z)`` and x <- a draw from
    q(x_{t-1} | x, x0), without noise at t = 0, where the posterior is the point mass on x0 (so
    the result is G's last x_0 prediction). ``nfe = T`` generator calls per sample. Samples are
    float32 on the CPU, clamped to [-1, 1] when ``clamp``; deterministic for a ``seed`` on a
    given device (batches are drawn in order from one generator seeded with ``seed``). The
    generator runs as :func:`~ddgan_core.device.sampling_network` sets it up: channels-last, in
    ``precision`` (``auto``: bf16 on CUDA, float32 on the CPU), compiled when ``compile``.
    ``return_chain=True`` returns ``(samples, nfe, chain)`` with chain [T + 1, n, ...]: the
    starting noise then the state after each step. A progress bar over the batches shows on a
    terminal unless ``progress`` is false.
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"n={n} and batch_size={batch_size} must be >= 1")
    device = pick_device(device)
    shape = tuple(int(s) for s in shape)
    T = diffusion.num_timesteps
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    was_training = generator.training
    generator.eval()
    outputs, chains = [], []
    try:
        with sampling_network(generator, device, precision=precision, compile=compile) as net:
            for start in progress_bar(range(0, n, batch_size), desc="DDGAN sampling",
                                      enabled=progress, unit="batch"):
                b = min(batch_size, n - start)
                x = to_channels_last(torch.randn((b, *shape), generator=gen, device=device))
                chain = [x.cpu().contiguous()] if return_chain else None
                for i in reversed(range(T)):
                    t = torch.full((b,), i, device=device, dtype=torch.long)
                    z = torch.randn(b, nz, generator=gen, device=device)
                    noise = torch.randn((b, *shape), generator=gen, device=device)
                    x, _ = generator_posterior_sample(net, diffusion, x, t, z, noise)
                    if chain is not None:
                        chain.append(x.cpu().contiguous())
                outputs.append((x.clamp(-1.0, 1.0) if clamp else x).cpu().contiguous())
                if chain is not None:
                    chains.append(torch.stack(chain))
    finally:
        generator.train(was_training)
    samples = torch.cat(outputs)
    if return_chain:
        return samples, T, torch.cat(chains, dim=1)
    return samples, T
