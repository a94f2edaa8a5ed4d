"""Time-conditioned discriminators D(x_{t-1}, x_t, t) of a Denoising Diffusion GAN.

DDGAN {Xiao et al. 2022} judges a *pair*: the candidate denoised image x_{t-1} (real: drawn from
the forward process; fake: drawn from the generator's p_theta(x_{t-1} | x_t)) next to the noisy
x_t it came from, at timestep t. :class:`Discriminator` is the 28x28 image version:

- x_{t-1} and x_t are concatenated on the channel axis and mapped to ``channels[0]`` features
  by a 3x3 stem convolution at 28x28;
- ``len(channels) - 1`` residual blocks halve the resolution (28 -> 14 -> 7 for three entries),
  each ``LeakyReLU(0.2) -> conv -> + time bias -> LeakyReLU -> avg-pool -> conv`` plus a pooled
  1x1 skip, summed with a 1/sqrt(2) scale;
- the time t enters through the sinusoidal embedding of :func:`~ddgan_core.nets.unet
  .timestep_embedding` and an MLP; a per-block linear layer turns it into a channel bias;
- a minibatch standard-deviation feature (Karras et al. 2018, group size 4) is appended before
  the final 3x3 conv (plus a time bias);
- the head (``head="flatten"``, the default) flattens the last feature map and applies
  ``Linear -> LeakyReLU -> Linear``, as StyleGAN2's epilogue; ``head="mean"`` instead averages
  over positions before one linear layer, as the official DDGAN discriminators (which sum).

Why the flatten head. With global pooling, a freshly initialised discriminator is close to a
linear map (LeakyReLU(0.2) is nearly linear) followed by a spatial average, i.e. a function of
little more than each image's mean intensity. A generator matches that within a few dozen steps
and training settles at parity: D(real) = D(fake), the D loss at 2 ln 2, R1 near zero, and the
spatial features D would need never get a gradient. A flattened head sees *where* things are
from the first step. The head is the profile key ``ddgan_d_head`` ("mean" or "flatten"), so the
two can be compared with one sweep (``-p ddgan_d_head mean flatten``). An earlier single-seed
comparison of 600 steps on FashionMNIST was too short and too noisy to rank them by FID, so this
choice rests on the argument above, not on a measured FID difference.

The MLP networks of the 2-D toy model, with the same call signatures, are in
:mod:`ddgan_core.nets.toy`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .unet import timestep_embedding

__all__ = [
    "DownBlock",
    "Discriminator",
    "TimeEmbedding",
    "minibatch_stddev",
]

_SLOPE = 0.2


class TimeEmbedding(nn.Module):
    """Integer timesteps [B] -> sinusoidal features [B, dim] -> MLP -> [B, out_dim]."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(
            nn.Linear(dim, out_dim), nn.LeakyReLU(_SLOPE), nn.Linear(out_dim, out_dim)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.dim))


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, eps: float = 1e-8) -> torch.Tensor:
    """Append one channel: the feature standard deviation within groups of the minibatch.

    As in progressive GAN / StyleGAN2: the batch is split into groups of ``G = min(group_size,
    B)`` images (sample ``i`` belongs to group ``i mod (B / G)``); in each group the standard
    deviation of every feature over the G images is averaged over channels and pixels, and the
    scalar is broadcast as an extra feature map to the group's images. When ``B`` is not a
    multiple of ``group_size`` the largest divisor of ``B`` not above it is used.
    """
    b, c, h, w = x.shape
    g = min(group_size, b)
    while b % g:
        g -= 1
    y = x.float().reshape(g, b // g, c, h, w)
    y = y - y.mean(dim=0, keepdim=True)
    y = (y.square().mean(dim=0) + eps).sqrt()  # [B/G, C, H, W]
    y = y.mean(dim=(1, 2, 3))  # [B/G]
    y = y.repeat(g).reshape(b, 1, 1, 1).expand(b, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class DownBlock(nn.Module):
    """Residual block with a time bias, optionally halving the resolution (average pooling)."""

    def __init__(self, cin: int, cout: int, temb_dim: int, downsample: bool = True):
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb_dim, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def _pool(self, h: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(h, 2) if self.downsample else h

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(x, _SLOPE))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self._pool(F.leaky_relu(h, _SLOPE)))
        return (self.skip(self._pool(x)) + h) * (1.0 / math.sqrt(2.0))


class Discriminator(nn.Module):
    """D(x_{t-1}, x_t, t) -> logits [B] for images; see the module docstring.

    ``channels`` are the feature counts at successive resolutions (28, 14, 7 for three entries);
    ``in_channels`` the image channels (each of x_{t-1} and x_t). ``stddev_group`` 0 disables
    the minibatch-stddev feature. ``head`` is ``"flatten"`` or ``"mean"`` (module docstring).
    """

    HEADS = ("flatten", "mean")

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        in_channels: int = 1,
        temb_dim: int | None = None,
        stddev_group: int = 4,
        image_size: int = 28,
        head: str = "flatten",
    ):
        super().__init__()
        if head not in self.HEADS:
            raise ValueError(f"head={head!r} must be one of {self.HEADS}")
        channels = [int(c) for c in channels]
        if len(channels) < 1 or any(c < 1 for c in channels):
            raise ValueError(f"channels={channels} must be a non-empty list of positive ints")
        if image_size % 2 ** (len(channels) - 1):
            raise ValueError(
                f"image_size={image_size} must be divisible by 2**(len(channels)-1) "
                f"= {2 ** (len(channels) - 1)}"
            )
        temb_dim = temb_dim or 4 * channels[0]
        self.in_channels = in_channels
        self.stddev_group = stddev_group
        self.time = TimeEmbedding(channels[0], temb_dim)
        self.stem = nn.Conv2d(2 * in_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            DownBlock(cin, cout, temb_dim) for cin, cout in zip(channels[:-1], channels[1:])
        )
        last = channels[-1]
        self.final_conv = nn.Conv2d(last + (1 if stddev_group else 0), last, 3, padding=1)
        self.final_temb = nn.Linear(temb_dim, last)
        self.head_kind = head
        if head == "flatten":
            side = image_size // 2 ** (len(channels) - 1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(last * side * side, last),
                                      nn.LeakyReLU(_SLOPE), nn.Linear(last, 1))
        else:
            self.head = nn.Linear(last, 1)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x_prev.shape != x_t.shape:
            raise ValueError(
                f"x_prev {tuple(x_prev.shape)} and x_t {tuple(x_t.shape)} must have one shape"
            )
        temb = self.time(t)
        h = self.stem(torch.cat([x_prev, x_t], dim=1))
        for block in self.blocks:
            h = block(h, temb)
        h = F.leaky_relu(h, _SLOPE)
        if self.stddev_group:
            h = minibatch_stddev(h, self.stddev_group)
        h = self.final_conv(h) + self.final_temb(temb)[:, :, None, None]
        h = F.leaky_relu(h, _SLOPE)
        if self.head_kind == "mean":
            h = h.mean(dim=(2, 3))
        return self.head(h).squeeze(1)
