"""The networks of the 2-D toy DDGAN (:mod:`ddgan_core.toy`): small MLPs called like the image
networks, ``G(x_t, t, z)`` and ``D(x_{t-1}, x_t, t)``.

Time enters through the sinusoidal embedding of :func:`~ddgan_core.nets.unet.timestep_embedding`
(Vaswani et al. 2017, as in DDPM), concatenated with the inputs; the generator first maps z
through a small MLP, as StyleGAN's mapping network does (Karras et al. 2019). The discriminator
uses LeakyReLU(0.2), as the image discriminator (:mod:`ddgan_core.nets.discriminator`); the
generator SiLU and a linear output (its x_0 prediction is not bounded, unlike the image one).
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import timestep_embedding

__all__ = ["ToyDiscriminator", "ToyGenerator"]

_SLOPE = 0.2


def _mlp(din: int, hidden: int, layers: int, dout: int, act: type[nn.Module]) -> nn.Sequential:
    """``layers`` hidden Linear + ``act`` layers of width ``hidden``, then a Linear to ``dout``."""
    modules: list[nn.Module] = []
    width = din
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), act()]
        width = hidden
    modules.append(nn.Linear(width, dout))
    return nn.Sequential(*modules)


class _LeakyReLU(nn.LeakyReLU):
    def __init__(self):
        super().__init__(_SLOPE)


class ToyDiscriminator(nn.Module):
    """D(x_{t-1}, x_t, t) -> logits [B] for vectors [B, dim]: MLP on [x_{t-1}, x_t, emb(t)]."""

    def __init__(self, dim: int = 2, hidden: int = 256, layers: int = 3, temb_dim: int = 32):
        super().__init__()
        self.temb_dim = temb_dim
        self.net = _mlp(2 * dim + temb_dim, hidden, layers, 1, _LeakyReLU)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = timestep_embedding(t, self.temb_dim).to(x_t.dtype)
        return self.net(torch.cat([x_prev, x_t, temb], dim=1)).squeeze(1)


class ToyGenerator(nn.Module):
    """G(x_t, t, z) -> predicted x_0 [B, dim]: MLP on [x_t, emb(t), w(z)] (linear output;
    with ``z_dim = 0`` on [x_t, emb(t)], and ``z`` of shape [B, 0] is ignored).

    ``z`` first goes through a small mapping MLP; the network is called like the image
    generator, ``G(x_t, t, z)``.
    """

    def __init__(
        self, dim: int = 2, z_dim: int = 8, hidden: int = 256, layers: int = 3, temb_dim: int = 32
    ):
        super().__init__()
        self.z_dim = z_dim
        self.temb_dim = temb_dim
        # z_dim = 0: no latent and no mapping, a deterministic x_0 prediction
        self.mapping = nn.Sequential(nn.Linear(z_dim, hidden // 4), nn.SiLU()) if z_dim else None
        width = hidden // 4 if z_dim else 0
        self.net = _mlp(dim + temb_dim + width, hidden, layers, dim, nn.SiLU)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        temb = timestep_embedding(t, self.temb_dim).to(x_t.dtype)
        parts = [x_t, temb] + ([self.mapping(z)] if self.mapping is not None else [])
        return self.net(torch.cat(parts, dim=1))
