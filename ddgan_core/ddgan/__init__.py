"""Denoising Diffusion GAN (Xiao, Kreis, Vahdat, ICLR 2022) on FashionMNIST.

DDGAN keeps a short Gaussian forward chain (T = 4 steps of the discrete VP schedule) and models
each reverse step p_theta(x_{t-1} | x_t) with a conditional GAN whose generator predicts x_0.
Three modules:

- :mod:`ddgan_core.ddgan.sampler`: the generator, the reverse chain (:func:`ddgan_sample`) and
  the generator's model file (:func:`load_generator`);
- :mod:`ddgan_core.ddgan.losses`: the divergences ``ddgan_loss`` selects (non-saturating JS,
  hinge, least squares, WGAN-GP, f-GAN KL and reverse KL);
- :mod:`ddgan_core.ddgan.trainer`: real pairs, R1, the stall watch, the generic
  :class:`DDGANTrainer` and :func:`train_ddgan`.

Everything is importable from here (``from ddgan_core import ddgan; ddgan.train_ddgan(...)``).
"""

from ..checkpoint import CheckpointError
from ..training import DivergenceError
from .losses import LOSSES, chance_loss, d_loss, g_loss, gradient_penalty
from .sampler import (
    ARCH_KEYS,
    GENERATOR_FILE,
    GENERATOR_FORMAT,
    IMAGE_SHAPE,
    DDGANGenerator,
    ddgan_sample,
    generator_from_weights,
    generator_posterior_sample,
    load_generator,
    make_ddgan_diffusion,
    make_generator,
    save_generator,
)
from .sampler import _arch as _arch  # the ARCH_KEYS values of a config (tests use it)
from .trainer import (
    ADAM_BETAS,
    CADENCE_KEYS,
    CHECKPOINT_FORMAT,
    LN4,
    R1_CONVENTIONS,
    DDGANTrainer,
    HistoryLogger,
    discriminator_state,
    ema_generator_from_checkpoint,
    make_discriminator,
    probe_logits,
    q_sample_pairs,
    r1_penalty,
    r1_weight,
    stall_fraction,
    train_ddgan,
    trained_steps,
    training_config,
)

__all__ = [
    "ADAM_BETAS",
    "CADENCE_KEYS",
    "ARCH_KEYS",
    "CHECKPOINT_FORMAT",
    "GENERATOR_FILE",
    "GENERATOR_FORMAT",
    "IMAGE_SHAPE",
    "LN4",
    "LOSSES",
    "R1_CONVENTIONS",
    "CheckpointError",
    "DDGANGenerator",
    "DDGANTrainer",
    "DivergenceError",
    "HistoryLogger",
    "chance_loss",
    "d_loss",
    "discriminator_state",
    "ddgan_sample",
    "ema_generator_from_checkpoint",
    "g_loss",
    "generator_from_weights",
    "gradient_penalty",
    "generator_posterior_sample",
    "load_generator",
    "make_ddgan_diffusion",
    "make_discriminator",
    "make_generator",
    "probe_logits",
    "q_sample_pairs",
    "r1_penalty",
    "r1_weight",
    "save_generator",
    "stall_fraction",
    "train_ddgan",
    "trained_steps",
    "training_config",
]
