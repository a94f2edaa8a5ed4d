"""A time-conditioned UNet for 28x28 images, optionally conditioned on a latent z.

DDPM's network eps_theta(x_t, t) {Ho et al. 2020} and DDGAN's generator G(x_t, z, t)
{Xiao et al. 2022} share this body:

- resolutions 28 -> 14 -> 7 with ``channels[i]`` features and ``num_res_blocks`` residual blocks
  at each, self-attention at the resolutions listed in ``attention_resolutions``;
- the timestep enters through a sinusoidal embedding and an MLP, added inside every block;
- with ``z_dim > 0`` a latent z goes through a mapping MLP (PixelNorm, Linear + SiLU layers, as in
  StyleGAN) and every group norm becomes adaptive: ``(1 + gamma(w)) * GN(h) + beta(w)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps ``t`` [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit mean square (StyleGAN's mapping input)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def mapping_network(z_dim: int, out_dim: int, layers: int = 3) -> nn.Sequential:
    """z -> w: PixelNorm then ``layers`` Linear + SiLU."""
    modules: list[nn.Module] = [PixelNorm()]
    width = z_dim
    for _ in range(layers):
        modules += [nn.Linear(width, out_dim), nn.SiLU()]
        width = out_dim
    return nn.Sequential(*modules)


def _groups(channels: int) -> int:
    for groups in (32, 16, 8, 4, 2, 1):
        if channels % groups == 0 and channels // groups >= 4:
            return groups
    return 1


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm whose scale and shift come from a style vector when one is given."""

    def __init__(self, channels: int, style_dim: int = 0):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, affine=style_dim == 0)
        self.style = nn.Linear(style_dim, 2 * channels) if style_dim else None
        if self.style is not None:
            nn.init.zeros_(self.style.weight)
            nn.init.zeros_(self.style.bias)

    def forward(self, h: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(h)
        if self.style is None:
            return h
        gamma, beta = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * h + beta


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb_dim: int, style_dim: int, dropout: float):
        super().__init__()
        self.norm1 = AdaptiveGroupNorm(cin, style_dim)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb_dim, cout)
        self.norm2 = AdaptiveGroupNorm(cout, style_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, w)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h, w))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads if channels % heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        attended = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps_theta(x_t, t) or, with ``z_dim > 0``, G(x_t, z, t); see the module docstring.

    ``in_channels`` is the image's channel count; the output has ``out_channels`` (default: the
    same). Timesteps are the integer indices of the (original, unrespaced) chain.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 64),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (7,),
        in_channels: int = 1,
        out_channels: int | None = None,
        z_dim: int = 0,
        style_dim: int = 256,
        dropout: float = 0.0,
        image_size: int = 28,
    ):
        super().__init__()
        if len(channels) < 1 or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels={list(channels)} must be a non-empty list of positive ints")
        if image_size % 2 ** (len(channels) - 1):
            raise ValueError(
                f"image_size={image_size} must be divisible by 2**(len(channels)-1) "
                f"= {2 ** (len(channels) - 1)}"
            )
        sizes = [image_size // 2**i for i in range(len(channels))]
        if any(isinstance(r, bool) or not isinstance(r, int) or r not in sizes
               for r in attention_resolutions):
            raise ValueError(
                f"attention_resolutions={list(attention_resolutions)} must list resolutions of "
                f"this UNet, a subset of {sizes} (ddpm_attention in the profiles)"
            )
        self.z_dim = z_dim
        base = channels[0]
        temb_dim = 4 * base
        self.time_mlp = nn.Sequential(
            nn.Linear(base, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim)
        )
        self.mapping = mapping_network(z_dim, style_dim) if z_dim else None
        sdim = style_dim if z_dim else 0
        self.stem = nn.Conv2d(in_channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [base]
        width, size = base, image_size
        for level, ch in enumerate(channels):
            for _ in range(num_res_blocks):
                blocks = nn.ModuleList([ResBlock(width, ch, temb_dim, sdim, dropout)])
                if size in attention_resolutions:
                    blocks.append(SelfAttention(ch))
                self.down.append(blocks)
                width = ch
                skips.append(width)
            if level < len(channels) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(width, width, 3, stride=2, padding=1)]))
                skips.append(width)
                size //= 2
        self.mid = nn.ModuleList([
            ResBlock(width, width, temb_dim, sdim, dropout),
            SelfAttention(width),
            ResBlock(width, width, temb_dim, sdim, dropout),
        ])
        self.up = nn.ModuleList()
        for level, ch in reversed(list(enumerate(channels))):
            for _ in range(num_res_blocks + 1):
                blocks = nn.ModuleList([ResBlock(width + skips.pop(), ch, temb_dim, sdim, dropout)])
                if size in attention_resolutions:
                    blocks.append(SelfAttention(ch))
                self.up.append(blocks)
                width = ch
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(width, width, 3, padding=1)]))
                size *= 2
        self.out_norm = AdaptiveGroupNorm(width, sdim)
        self.out = nn.Conv2d(width, out_channels or in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self._base = base

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None
    ) -> torch.Tensor:
        if (z is None) != (self.mapping is None):
            raise ValueError(
                f"this UNet has z_dim={self.z_dim}: pass z of shape [B, {self.z_dim}]"
                if self.mapping is not None else "this UNet takes no latent z (z_dim=0)"
            )
        temb = self.time_mlp(timestep_embedding(t, self._base))
        w = self.mapping(z) if self.mapping is not None else None
        h = self.stem(x)
        hs = [h]
        for blocks in self.down:
            for block in blocks:
                h = block(h, temb, w) if isinstance(block, ResBlock) else block(h)
            hs.append(h)
        for block in self.mid:
            h = block(h, temb, w) if isinstance(block, ResBlock) else block(h)
        for blocks in self.up:
            if isinstance(blocks[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            for block in blocks:
                h = block(h, temb, w) if isinstance(block, ResBlock) else block(h)
        return self.out(F.silu(self.out_norm(h, w)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
