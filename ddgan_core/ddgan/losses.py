"""Divergences for matching each step's kernel: the adversarial losses ``ddgan_loss`` selects.

DDGAN fits every reverse step with an adversarial divergence between the true kernel
q(x_{t-1} | x_t) and the model's p_theta(x_{t-1} | x_t) (chapter 4, eq. ``eq-ddgan-objective``).
The paper uses the non-saturating GAN loss; the seed asks what other divergences do. Each loss
below is written for discriminator logits ``v = D(x_{t-1}, x_t, t)`` on real pairs (``v_r``) and
on the generator's pairs (``v_f``); the discriminator minimises ``d_loss``, the generator
``g_loss``:

``ns`` (Jensen-Shannon, non-saturating; Goodfellow et al. 2014; the DDGAN paper's)
    D: softplus(-v_r) + softplus(v_f);  G: softplus(-v_f).
``hinge`` (Lim and Ye 2017; Miyato et al. 2018)
    D: relu(1 - v_r) + relu(1 + v_f);  G: -v_f.
``lsgan`` (least squares, Pearson chi^2 for these targets; Mao et al. 2017)
    D: ((v_r - 1)^2 + v_f^2) / 2;  G: (v_f - 1)^2 / 2.
``wgan-gp`` (Wasserstein-1 through a critic; Arjovsky et al. 2017, Gulrajani et al. 2017)
    D: v_f - v_r + 10 * GP + 0.001 * v_r^2;  G: -v_f. GP is :func:`gradient_penalty` on random
    interpolates of the real and fake x_{t-1} at the same x_t; the small drift term keeps the
    critic's values near 0 (Karras et al. 2018).
``kl`` and ``reverse-kl`` (f-GAN, Nowozin et al. 2016), the variational bound
    E_P[g(v)] - E_Q[f*(g(v))] on D_f(P || Q) with P the true kernel and Q the model's; the
    generator maximises E_Q[g(v)] (the paper's practical generator objective):
    ``kl``, KL(P || Q): g(v) = v, f*(u) = exp(u - 1):
        D: -v_r + exp(v_f - 1);  G: -v_f.
    ``reverse-kl``, KL(Q || P): g(v) = -exp(-v), f*(u) = -1 - log(-u):
        D: exp(-v_r) + v_f - 1;  G: exp(-v_f).
    The exponentials take logits clamped to [-:data:`F_LOGIT_CLAMP`, :data:`F_LOGIT_CLAMP`]
    (a stabiliser: one large logit would otherwise dominate the batch).

Every loss but ``wgan-gp`` keeps DDGAN's R1 penalty on real pairs; ``wgan-gp`` has its own
gradient penalty and is trained without R1 (``ddgan_r1_gamma = 0``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: The divergences of ``ddgan_loss``; ``ns`` is DDGAN's (and the meaning of a configuration
#: without the key).
LOSSES = ("ns", "hinge", "lsgan", "wgan-gp", "kl", "reverse-kl")
#: Weight of the WGAN-GP gradient penalty (Gulrajani et al. 2017).
GP_WEIGHT = 10.0
#: Weight of the WGAN-GP critic's drift term E[D(real)^2] (Karras et al. 2018).
DRIFT_WEIGHT = 1e-3
#: Bound on the logits inside the f-GAN losses' exponentials.
F_LOGIT_CLAMP = 15.0


def check_loss(loss: str) -> str:
    """``loss`` when it is one of :data:`LOSSES`, else one ``ValueError`` naming them."""
    if loss not in LOSSES:
        raise ValueError(f"ddgan_loss={loss!r} is unknown; allowed: {list(LOSSES)}")
    return loss


def d_loss(d_real: torch.Tensor, d_fake: torch.Tensor, loss: str = "ns") -> torch.Tensor:
    """The discriminator's loss (batch mean) under divergence ``loss``, without penalties."""
    v_r, v_f = d_real.float(), d_fake.float()
    if loss == "ns":
        return F.softplus(-v_r).mean() + F.softplus(v_f).mean()
    if loss == "hinge":
        return F.relu(1.0 - v_r).mean() + F.relu(1.0 + v_f).mean()
    if loss == "lsgan":
        return 0.5 * ((v_r - 1.0).pow(2).mean() + v_f.pow(2).mean())
    if loss == "wgan-gp":
        return v_f.mean() - v_r.mean()
    if loss == "kl":
        return -v_r.mean() + torch.exp(v_f.clamp(-F_LOGIT_CLAMP, F_LOGIT_CLAMP) - 1.0).mean()
    if loss == "reverse-kl":
        return torch.exp(-v_r.clamp(-F_LOGIT_CLAMP, F_LOGIT_CLAMP)).mean() + v_f.mean() - 1.0
    raise ValueError(check_loss(loss))


def g_loss(d_fake: torch.Tensor, loss: str = "ns") -> torch.Tensor:
    """The generator's loss (batch mean) under divergence ``loss``."""
    v_f = d_fake.float()
    if loss == "ns":
        return F.softplus(-v_f).mean()
    if loss in ("hinge", "wgan-gp", "kl"):
        return -v_f.mean()
    if loss == "lsgan":
        return 0.5 * (v_f - 1.0).pow(2).mean()
    if loss == "reverse-kl":
        return torch.exp(-v_f.clamp(-F_LOGIT_CLAMP, F_LOGIT_CLAMP)).mean()
    raise ValueError(check_loss(loss))


def chance_loss(loss: str = "ns") -> float:
    """The discriminator loss of a discriminator that outputs 0 everywhere (cannot tell real
    from fake): 2 ln 2 for ``ns``; the reference for "the discriminator sits at chance"."""
    return {"ns": 2.0 * math.log(2.0), "hinge": 2.0, "lsgan": 0.5, "wgan-gp": 0.0,
            "kl": math.exp(-1.0), "reverse-kl": 0.0}[check_loss(loss)]


def gradient_penalty(D, x_real: torch.Tensor, x_fake: torch.Tensor, x_t: torch.Tensor,
                     t: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty E[(||grad_x D(x, x_t, t)||_2 - 1)^2] at x = e x_real + (1 - e) x_fake,
    with ``e`` ~ U(0, 1) per pair, shaped [B, 1, ...] (Gulrajani et al. 2017); the graph is
    kept so it trains D."""
    x_hat = (e * x_real.detach() + (1.0 - e) * x_fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat, x_t, t).float().sum(), x_hat, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1.0).pow(2).mean()
