"""Run profiles: one place that says how big every experiment is.

``smoke``: seconds per notebook, for tests and CI only; its numbers mean nothing.
``cpu``: the reference run on a laptop-class 2-core CPU (each model within about an hour).
``full``: paper scale on one GPU.

A profile is a flat mapping of parameter names to values. Notebooks and the command line take a
profile name plus overrides; unknown names are errors that list the valid ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

_BASE: dict[str, Any] = {
    # every run
    "seed": 0,
    # chapter 1: data and the forward process
    "forward_timesteps": 1000,      # T of the linear and cosine schedules shown
    "forward_vp_timesteps": 4,      # T of DDGAN's discrete VP schedule shown
    "forward_examples": 8,          # images shown per row of the noising figure
    "forward_snr_points": 200,      # points of the SNR curve
    # chapter 2: the ELBO, checked on toys (Monte Carlo and grid sizes)
    "elbo_kl_batch": 64,            # rows per (schedule, t) of the KL == weighted-MSE check
    "elbo_kl_dim": 16,              # dimension of those rows
    "elbo_kl_steps": 25,            # timesteps checked per schedule
    "elbo_T_values": [2, 4, 8, 16, 32, 64, 128, 256],  # chain lengths of the ELBO-gap sweep
    "elbo_samples": 20_000,         # data points x_0 per T
    "elbo_kernel_T_values": [4, 8, 16, 32, 64, 128, 256, 1024],  # T of the kernel sweep
    "elbo_kernel_xt": 64,           # points x_t the reverse kernel is averaged over
    "elbo_kernel_grid": 61,         # grid points per axis of the kernel sweep
    "elbo_panel_grid": 201,         # grid points per axis of the figure's kernels
    # evaluation
    "fid_samples": 10_000,          # generated images per FID/KID/PR evaluation
    "classifier_epochs": 12,        # feature-extractor training (metrics)
    "eval_batch_size": 1000,        # images per sampler call during evaluation
    # chapter 3: the DDPM baseline
    "ddpm_schedule": "linear",
    "ddpm_timesteps": 1000,
    "ddpm_channels": [64, 128, 128],
    "ddpm_res_blocks": 2,
    "ddpm_attention": [7],
    "ddpm_dropout": 0.1,
    "ddpm_loss": "simple",          # "simple" (Ho et al.) or "elbo" (the weights of eq. (6))
    "ddpm_train_steps": 20_000,
    "ddpm_batch_size": 256,
    "ddpm_lr": 2e-4,
    "ddpm_warmup_steps": 500,
    "ddpm_grad_clip": 1.0,
    "ddpm_ema_decay": 0.9995,
    "ddpm_checkpoint_every": 1000,
    "ddpm_step_grid": [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    "ddpm_grid_samples": 10_000,    # images per (sampler, K) point of Fig. 1
    # the fast samplers on the same DDPM (chapter 3): (sampler, spacing) pairs and their K
    "solver_samplers": [["ancestral", "linspace"], ["ddim", "linspace"],
                        ["ancestral", "trailing"], ["ddim", "trailing"],
                        ["dpmsolver++", "trailing"], ["dpmsolver++3m", "trailing"],
                        ["unipc", "trailing"]],
    "solver_steps": [1, 2, 3, 4, 5, 8, 10, 20, 50],
    # chapters 4-5: Denoising Diffusion GAN
    "ddgan_timesteps": 4,
    "ddgan_nz": 100,
    "ddgan_channels": [64, 128, 128],
    "ddgan_res_blocks": 2,
    "ddgan_d_channels": [64, 128, 256],
    "ddgan_d_head": "flatten",
    "ddgan_train_steps": 20_000,
    "ddgan_batch_size": 256,
    "ddgan_lr_g": 1.6e-4,
    "ddgan_lr_d": 1.25e-4,
    "ddgan_r1_gamma": 0.02,
    "ddgan_lazy_r1": 15,
    "ddgan_r1_convention": "ddgan", # lazy R1 weight: "ddgan" gamma/2, "stylegan2" gamma/2 * k
    "ddgan_loss": "ns",             # divergence per step: ns, hinge, lsgan, wgan-gp, kl, reverse-kl
    "ddgan_d_steps": 1,
    "ddgan_ema_decay": 0.9995,
    "ddgan_checkpoint_every": 1000,
    "ddgan_log_every": 0,           # steps per history entry; 0: min(50, steps // 50)
    "toy_ddgan_steps": 1_200,       # training steps of the 2-D toy DDGAN (chapter 4)
    # equal-compute comparison (chapter 4): DDPM and DDGAN trained for the same wall time
    "budget_minutes": 0.0,          # minutes per model; 0: train for the *_train_steps instead
    "budget_threads": 0,            # CPU threads per run (two runs side by side); 0: all
    "budget_ema_decay": 0.0,        # EMA decay of both budgeted models; 0: each model's own
    "bootstrap_replicates": 200,    # resamples of the generated set per uncertainty interval
    "comparison_ddpm": [["ddim", 10], ["ddim", 20], ["ancestral", 100], ["ancestral", 1000]],
    "comparison_reference": [["ddim", 10], ["ancestral", 100]],  # chapter 3's DDPM, labelled
    "r1_study_steps": 300,          # generator steps per run of the R1-convention comparison
    # hyper-parameter study (chapter 5): one factor at a time around the profile's DDGAN recipe
    "sweep_steps": 2_000,           # generator steps of one sweep run (ddgan_sweep_point)
    "sweep_samples": 5_000,         # samples per sweep run's evaluation
    "hp_seeds": [0, 1],             # seeds of every point
    "hp_timesteps": [1, 2, 4, 8],   # T; 1: a conditional GAN on pure noise
    "hp_nz": [0, 4, 16, 64],        # latent size; 0: a deterministic, unimodal kernel
    "hp_r1_gamma": [0.0, 0.002, 0.02, 0.2],  # R1 weight, in ddgan_r1_convention
    "hp_d_steps": [1, 2, 3],        # D updates per G update
    "hp_channels": [[32, 64, 64], [64, 128, 128], [128, 256, 256]],  # half, equal, double
    # other kernels and divergences on the 2-D toys (chapter 6)
    "toy_study_steps": 2_000,       # training updates of every toy method
    "toy_study_T": 4,               # steps of every toy chain (DDGAN's T)
    "toy_study_seeds": [0, 1],
    "toy_study_mixtures": ["8gaussians", "25gaussians"],
    # other kernels and divergences on FashionMNIST (chapter 6), at the sweep budget, hp_seeds
    "kernel_study_losses": ["ns", "hinge", "lsgan", "wgan-gp", "kl", "reverse-kl"],
    "image_kernel": "gaussian",        # a kernel without adversary: gaussian (DDPM's: noise
                                       # prediction), gaussian-x0 (x_0 prediction) or mixture
    "image_kernel_components": 10,     # K of the mixture kernel
    # the speed-quality frontier (chapter 7): the equal-compute pair's DDPM with these samplers
    # ([sampler, spacing, K], up to the full chain of T = 1000 ancestral steps), its distilled
    # students and its DDGAN, n = sweep_samples
    "frontier_ddpm": [[s, "trailing", k] for s in ("ddim", "dpmsolver++3m")
                      for k in (1, 2, 4, 8, 10, 20, 50)] + [["ancestral", "linspace", k]
                                                            for k in (100, 1000)],
    # the frontier's samplers drawn again in bf16 through torch.compile (chapter 7): the DDGAN
    # and these [sampler, spacing, K] of the DDPM, n = sweep_samples
    "fast_sampling_ddpm": [["ddim", "trailing", 10], ["ancestral", "linspace", 100]],
    # progressive distillation of that DDPM (ddgan_core.distillation), budget_minutes if set
    "distill_start_steps": 16,      # steps of the first student (a power of two), halved to 1
    "distill_train_steps": 8_000,   # steps over all rounds when budget_minutes = 0
    "distill_batch_size": 128,
    "distill_lr": 1e-4,             # Adam, decayed linearly to 0 in each round
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_BASE,
        "forward_timesteps": 50,
        "forward_examples": 4,
        "forward_snr_points": 20,
        "elbo_kl_batch": 16,
        "elbo_kl_dim": 8,
        "elbo_kl_steps": 6,
        "elbo_T_values": [2, 4, 8, 16, 32],
        "elbo_samples": 1_000,
        "elbo_kernel_T_values": [4, 16, 1024],
        "elbo_kernel_xt": 4,
        "elbo_kernel_grid": 41,
        "elbo_panel_grid": 81,
        "fid_samples": 256,
        "classifier_epochs": 1,
        "eval_batch_size": 128,
        "ddpm_channels": [8, 16, 16],
        "ddpm_res_blocks": 1,
        "ddpm_dropout": 0.0,
        "ddpm_train_steps": 6,
        "ddpm_batch_size": 16,
        "ddpm_warmup_steps": 2,
        "ddpm_checkpoint_every": 3,
        "ddpm_step_grid": [1, 2, 5],
        "ddpm_grid_samples": 256,
        "solver_samplers": [["ddim", "trailing"], ["dpmsolver++", "trailing"]],
        "solver_steps": [1, 2],
        "ddgan_nz": 8,
        "ddgan_channels": [8, 16, 16],
        "ddgan_res_blocks": 1,
        "ddgan_d_channels": [8, 16, 32],
        "ddgan_train_steps": 6,
        "ddgan_batch_size": 16,
        "ddgan_lazy_r1": 2,
        "ddgan_checkpoint_every": 3,
        "toy_ddgan_steps": 150,
        "bootstrap_replicates": 20,
        "comparison_ddpm": [["ddim", 2], ["ancestral", 5]],
        "comparison_reference": [["ddim", 2]],
        "r1_study_steps": 4,
        "sweep_steps": 3,
        "sweep_samples": 160,
        "hp_seeds": [0],
        "hp_timesteps": [1, 2],
        "hp_nz": [0, 8],
        "hp_r1_gamma": [0.0, 0.02],
        "hp_d_steps": [1],
        "hp_channels": [[8, 16, 16]],
        "toy_study_steps": 10,
        "toy_study_seeds": [0],
        "toy_study_mixtures": ["8gaussians"],
        "kernel_study_losses": ["ns", "wgan-gp"],
        "image_kernel_components": 3,
        "frontier_ddpm": [["ddim", "trailing", 1], ["dpmsolver++", "trailing", 2]],
        "fast_sampling_ddpm": [["ddim", "trailing", 1]],
        "distill_start_steps": 2,
        "distill_train_steps": 4,
        "distill_batch_size": 4,
    },
    "cpu": {
        **_BASE,
        "fid_samples": 2_000,
        "ddpm_channels": [32, 64, 64],
        "ddpm_res_blocks": 1,
        "ddpm_dropout": 0.0,
        "ddpm_train_steps": 2_500,
        "ddpm_batch_size": 128,
        "ddpm_lr": 5e-4,
        "ddpm_warmup_steps": 100,
        "ddpm_ema_decay": 0.998,
        "ddpm_checkpoint_every": 250,
        "ddpm_grid_samples": 500,
        "ddgan_nz": 16,
        "ddgan_channels": [32, 64, 64],  # the DDPM UNet's width
        "ddgan_res_blocks": 1,
        "ddgan_d_channels": [16, 32, 64],
        "ddgan_train_steps": 4_500,
        "ddgan_batch_size": 64,
        "ddgan_lr_g": 2e-4,
        "ddgan_lr_d": 4e-4,
        "ddgan_d_steps": 2,
        "ddgan_ema_decay": 0.998,
        "ddgan_checkpoint_every": 100,
        "budget_minutes": 45.0,         # DDPM and DDGAN side by side, one thread each
        "budget_threads": 1,
        "budget_ema_decay": 0.99,       # ~1,000 steps each: an EMA half-life of 69 steps
        "comparison_ddpm": [["ddim", 10], ["ddim", 20], ["ancestral", 100]],
        "comparison_reference": [],     # chapter 3's DDPM stays in chapter 3 (n = 500 grid)
        "r1_study_steps": 150,
        "sweep_steps": 150,             # 28 runs (14 points, 2 seeds) in under 2 h on 2 cores
        "sweep_samples": 1_000,
        # half, equal and double the DDPM UNet's width (double: about 16 min per run)
        "hp_channels": [[16, 32, 32], [32, 64, 64], [64, 128, 128]],
        "toy_study_steps": 1_000,
        "distill_start_steps": 8,       # 4 rounds (8, 4, 2, 1 steps) in the 45-minute budget
        "distill_batch_size": 32,       # about 1,900 steps: ~475 per round
        "distill_lr": 2e-4,
    },
    "full": {
        **_BASE,
        "elbo_samples": 100_000,
        "elbo_kernel_xt": 256,
        "elbo_kernel_grid": 101,
        "fid_samples": 10_000,
        "ddpm_train_steps": 6_000,
        "ddpm_grid_samples": 5_000,
        "ddgan_train_steps": 6_000,
        "ddgan_batch_size": 128,
        "ddgan_lr_g": 2e-4,             # the cpu profile's measured balance: D twice as fast,
        "ddgan_lr_d": 4e-4,             # two D updates per G update (the paper's 1.6e-4 /
        "ddgan_d_steps": 2,             # 1.25e-4 with one D step stalled at parity here)
    },
}

DESCRIPTIONS = {
    "smoke": "seconds per notebook; tests and CI only, numbers meaningless",
    "cpu": "reference run on a 2-core CPU; small networks, FID on a few thousand samples",
    "full": "paper scale on one GPU (about ten minutes on an H200)",
}


#: Integer settings that may be 0 (a seed, "no latent", "never"/"automatic" cadences); every other
#: integer setting counts something and must be >= 1.
MAY_BE_ZERO = {"seed", "ddgan_nz", "hp_seeds", "hp_nz", "toy_study_seeds", "ddpm_checkpoint_every",
               "ddgan_checkpoint_every", "ddgan_log_every", "ddpm_warmup_steps", "budget_threads"}


#: String settings with a fixed set of values, checked when a profile is resolved.
CHOICES = {
    "ddgan_r1_convention": ("ddgan", "stylegan2"),
    "ddgan_d_head": ("mean", "flatten"),
    "ddgan_loss": ("ns", "hinge", "lsgan", "wgan-gp", "kl", "reverse-kl"),  # ddgan.LOSSES
    "image_kernel": ("gaussian", "gaussian-x0", "mixture"),  # image_kernels.IMAGE_KERNELS
}


def keys() -> list[str]:
    """Every parameter name (the same in every profile), sorted."""
    return sorted(_BASE)


def overrides_from(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The profile keys among ``namespace``'s names whose value is not ``None``.

    A chapter calls ``get_profile(profile, **overrides_from(globals()))`` after its parameters
    cell, so every profile key passed by papermill (``-p ddpm_train_steps 500``), the book runner
    or ``sweep`` reaches the chapter's profile, declared in its parameters cell or not: one
    namespace for every chapter.
    """
    return {k: namespace[k] for k in _BASE if k in namespace and namespace[k] is not None}


def get_profile(name: str, **overrides: Any) -> dict[str, Any]:
    """Return a copy of profile ``name`` with ``overrides`` applied.

    ``None`` overrides are ignored (a notebook parameter left at ``None`` means "from the
    profile"). An unknown profile or parameter name raises ``ValueError`` listing the valid ones;
    an override of the wrong type (e.g. a string for an integer) is converted or rejected.
    """
    if name not in PROFILES:
        raise ValueError(f"profile={name!r} is unknown; valid profiles: {sorted(PROFILES)}")
    config = copy.deepcopy(PROFILES[name])
    apply_overrides(config, {k: v for k, v in overrides.items() if v is not None})
    config["profile"] = name
    return config


def apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``overrides`` in place, checking names and coercing to the default's type."""
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(
            f"unknown parameter name(s) {unknown}; valid names: {sorted(config)}"
        )
    for key, value in overrides.items():
        config[key] = _coerce(key, value, config[key])
        _check_value(key, config[key])
    return config


def _check_value(key: str, value: Any) -> None:
    """Counts >= 1 (>= 0 for :data:`MAY_BE_ZERO`), non-negative rates and weights, and the
    values of :data:`CHOICES`."""
    if key in CHOICES and value not in CHOICES[key]:
        raise ValueError(f"parameter {key}={value!r}: allowed values are {list(CHOICES[key])}")
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool):
            continue
        low = 0 if key in MAY_BE_ZERO else 1
        if isinstance(item, int) and item < low:
            raise ValueError(f"parameter {key}={value!r}: must be >= {low}")
        if isinstance(item, float) and not item >= 0:
            raise ValueError(f"parameter {key}={value!r}: must be a number >= 0")


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` from the command line (values parsed as JSON when possible)."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` to the type of ``default`` (papermill and ``--set`` pass strings)."""
    kind = type(default)
    try:
        if default is None or (type(value) is kind):
            return value
        if kind is bool and str(value).lower() in {"true", "false", "1", "0"}:
            return str(value).lower() in {"true", "1"}
        if kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind in (list, tuple) and isinstance(value, (list, tuple)):
            return kind(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    raise ValueError(
        f"parameter {key}={value!r} has the wrong type; expected {kind.__name__} "
        f"like the default {default!r}"
    )


def describe() -> str:
    """A table of every profile's parameters (``python -m ddgan_core profiles``)."""
    names = sorted(PROFILES)
    keys = sorted(_BASE)
    width = max(len(k) for k in keys)
    lines = [f"{'parameter':<{width}}  " + "  ".join(f"{n:>10}" for n in names)]
    for key in keys:
        lines.append(
            f"{key:<{width}}  " + "  ".join(f"{PROFILES[n][key]!s:>10}" for n in names)
        )
    lines.append("")
    lines += [f"{n}: {DESCRIPTIONS[n]}" for n in names]
    return "\n".join(lines)
