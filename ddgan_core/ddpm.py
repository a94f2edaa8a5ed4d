"""DDPM on FashionMNIST: the noise-prediction network, its trainer, and two samplers.

- Training (Ho et al. 2020, Algorithm 1): x0 from the data, t uniform, eps ~ N(0, I),
  x_t = q_sample(x0, t, eps) (eq. 2), loss ||eps - eps_theta(x_t, t)||^2. With ``ddpm_loss =
  "elbo"`` each t is weighted by the corrected eq. (6) weight
  beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) (normalised to mean 1), else by 1 ("simple").
- Sampling with K of the T steps: the ancestral sampler of the respaced chain (posterior
  variance) and DDIM (Song et al. 2021, eq. 12) with ``eta``; NFE = K.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import (
    DDPM_CHECKPOINT,
    DDPM_MODEL,
    MODEL_FILES,
    CheckpointError,
    half_state_dict,
    read_model_file,
    save_checkpoint,
    save_model_file,
)
from .device import pick_device, sampling_network, to_channels_last
from .diffusion import GaussianDiffusion, make_beta_schedule, respace, space_timesteps
from .distributed import current_world
from .nets.unet import UNet, count_parameters
from .training import (
    EMA,
    TrainingPaused,
    autocast_context,
    check_finite,
    check_weights_finite,
    checkpoint_cadence,
    global_rng_state,
    prepare_workdir,
    progress_bar,
    restoring,
    resume_state,
    run_training_loop,
    set_global_rng_state,
    warmup_cosine,
)

__all__ = [
    "CHECKPOINT_FORMAT", "MODEL_FILE", "MODEL_FORMAT", "SAMPLERS", "SPACINGS", "TrainingPaused",
    "ddpm_sample", "load_model", "loss_weights", "make_diffusion", "make_model", "probe_loss",
    "sampling_timesteps", "train_ddpm", "training_config",
]

#: Format tags: the resumable training state and the EMA weights that :func:`load_model` reads.
CHECKPOINT_FORMAT = DDPM_CHECKPOINT
MODEL_FORMAT = DDPM_MODEL
#: The model file training writes when it finishes (safetensors; ``model_ema.pt`` before).
MODEL_FILE = MODEL_FILES["ddpm"]

SAMPLERS = ("ancestral", "ddim")
#: How the K sampled timesteps sit among the T: ``linspace`` keeps both ends (0 and T-1, the
#: book's spacing), ``trailing`` ends at T-1 and steps back by T/K, so it never spends a step
#: at t = 0 (diffusers' "trailing"; Lin et al. 2024 argue for it at small K).
SPACINGS = ("linspace", "trailing")
MODEL_KEYS = ("ddpm_channels", "ddpm_res_blocks", "ddpm_attention", "ddpm_dropout")
DIFFUSION_KEYS = ("ddpm_schedule", "ddpm_timesteps")
TRAIN_KEYS = MODEL_KEYS + DIFFUSION_KEYS + (
    "ddpm_loss", "ddpm_train_steps", "ddpm_batch_size", "ddpm_lr", "ddpm_warmup_steps",
    "ddpm_grad_clip", "ddpm_ema_decay", "seed",
)


def training_config(profile: dict[str, Any]) -> dict[str, Any]:
    """The keys of a resolved profile that determine a trained DDPM (its cache configuration)."""
    return {key: profile[key] for key in TRAIN_KEYS}


def make_model(config: dict[str, Any]) -> UNet:
    return UNet(
        channels=config["ddpm_channels"],
        num_res_blocks=config["ddpm_res_blocks"],
        attention_resolutions=config["ddpm_attention"],
        dropout=config["ddpm_dropout"],
    )


def make_diffusion(config: dict[str, Any]) -> GaussianDiffusion:
    return GaussianDiffusion(make_beta_schedule(config["ddpm_schedule"], config["ddpm_timesteps"]))


def loss_weights(diffusion: GaussianDiffusion, kind: str) -> np.ndarray:
    """Per-timestep loss weights: ones ("simple") or the corrected eq. (6) ("elbo").

    For "elbo" the reverse variance sigma_t^2 is the clipped posterior variance (t=0 borrows
    t=1's, as the posterior variance at t=0 is zero), and the weights are scaled to mean 1.
    """
    if kind == "simple":
        return np.ones(diffusion.num_timesteps)
    if kind == "elbo":
        sigma2 = np.exp(diffusion.posterior_log_variance_clipped)
        weights = diffusion.betas**2 / (
            2 * sigma2 * diffusion.alphas * (1 - diffusion.alphas_cumprod)
        )
        return weights / weights.mean()
    raise ValueError(f"ddpm_loss={kind!r} is unknown; allowed: ['simple', 'elbo']")


def train_ddpm(
    config: dict[str, Any],
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
    """Train eps_theta per ``config`` (keys of :data:`TRAIN_KEYS`); resumable from ``workdir``.

    Writes ``workdir/checkpoint.pt`` every ``checkpoint_every`` steps (default: the config's
    ``ddpm_checkpoint_every``, 0 for none; the cadence is not part of a run's identity, so it is
    an argument) and, when all ``ddpm_train_steps`` are done, ``workdir/model_ema.safetensors``
    (fp16 EMA weights with the model configuration, :func:`load_model`), after which the
    training state is deleted. ``stop_after`` (the run's step count, steps before a resume
    included) and ``max_seconds`` (wall time of this call) stop early with a checkpoint and
    ``finished = False``; calling again continues. A history entry (mean loss, learning rate,
    throughput) is logged every ``log_every`` steps (default ``ddpm_train_steps // 100``).

    A checkpoint holds the weights, the optimiser, the data/noise generator and the global RNG
    that dropout draws from, so a resumed run equals an uninterrupted one bit for bit on the
    same device; it is written atomically, and only after the new weights pass
    :func:`~ddgan_core.training.check_weights_finite` on a fixed probe batch, so after a
    divergence (:class:`~ddgan_core.training.DivergenceError`) the checkpoint on disk is the
    last good one. Returns the metrics: steps, ``finished``, images seen, wall time,
    throughput, parameter count and the loss history.
    """
    workdir = prepare_workdir(workdir)
    world, device = current_world(pick_device(device))
    every = checkpoint_cadence(checkpoint_every, config, "ddpm_checkpoint_every")
    steps, batch_size = int(config["ddpm_train_steps"]), int(config["ddpm_batch_size"])
    if steps < 1 or batch_size < 1:
        raise ValueError(f"ddpm_train_steps={steps} and ddpm_batch_size={batch_size} must be >= 1")
    world.check_batch(batch_size, "ddpm_batch_size")
    weights_np = loss_weights(make_diffusion(config), config["ddpm_loss"])
    if data is None:
        from .data import load_fashion_mnist

        data, _ = load_fashion_mnist("train")
    torch.manual_seed(config["seed"])
    model = make_model(config).to(device)
    diffusion = make_diffusion(config)
    ema = EMA(model, config["ddpm_ema_decay"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["ddpm_lr"], weight_decay=0.0)
    weights = torch.tensor(weights_np, dtype=torch.float32, device=device)
    data = data.to(device)
    generator = torch.Generator(device=device).manual_seed(config["seed"])
    state = {"step": 0, "history": [], "train_seconds": 0.0}
    checkpoint = workdir / "checkpoint.pt"
    probe = _probe_batch(data, diffusion, device)
    saved = resume_state(checkpoint, CHECKPOINT_FORMAT, "a DDPM training checkpoint", device)
    if saved is not None:
        with restoring(checkpoint, "this model configuration"):
            model.load_state_dict(saved["model"])
            ema.load_state_dict(saved["ema"])
            optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["rng"].cpu())
        set_global_rng_state(saved.get("global_rng"), device)
        state = {k: saved[k] for k in state}
    interval = {"loss": 0.0, "count": 0, "since": time.perf_counter()}
    model.train()

    def train_step() -> int:
        step = state["step"]
        for group in optimizer.param_groups:
            group["lr"] = config["ddpm_lr"] * warmup_cosine(
                step, steps, config["ddpm_warmup_steps"], floor=0.1
            )
        index = torch.randint(0, data.shape[0], (batch_size,), device=device, generator=generator)
        x0 = data[index]
        t = torch.randint(0, diffusion.num_timesteps, (batch_size,), device=device,
                          generator=generator)
        noise = torch.randn(x0.shape, device=device, generator=generator)
        x_t = diffusion.q_sample(x0, t, noise)
        # under torchrun: this process's slice of the global batch (world.shard), gradients
        # averaged over the processes (ddgan_core.distributed); alone, both do nothing
        x_t, t, noise = world.shard(x_t), world.shard(t), world.shard(noise)
        with autocast_context(device):
            prediction = model(x_t, t)
        per_image = (prediction.float() - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (weights[t] * per_image).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        world.average_gradients(model.parameters())
        torch.nn.utils.clip_grad_norm_(model.parameters(), config["ddpm_grad_clip"])
        optimizer.step()
        ema.update(model)
        state["step"] = step + 1
        interval["loss"] += world.mean(loss.detach()).item()
        interval["count"] += 1
        return state["step"]

    def log(step: int) -> dict[str, str]:
        mean = interval["loss"] / interval["count"]
        check_finite(step, {"loss": mean})
        elapsed = time.perf_counter() - interval["since"]
        state["history"].append({
            "step": step, "loss": mean, "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": interval["count"] * batch_size / max(elapsed, 1e-9),
        })
        state["train_seconds"] += elapsed
        interval.update(loss=0.0, count=0, since=time.perf_counter())
        return {"loss": f"{mean:.4f}"}

    def save(step: int, seconds: float) -> None:
        if world.is_main:  # the processes hold the same weights; one writes them
            _save_training_state(checkpoint, model, ema, optimizer, generator, state, probe)
        world.barrier()

    end = run_training_loop(
        train_step, save, log, start=state["step"], total=steps, desc="DDPM",
        progress=progress and world.is_main,
        log_every=int(log_every or max(1, steps // 100)), checkpoint_every=every,
        stop_after=stop_after, max_seconds=max_seconds,
    )
    if end.finished and world.is_main:
        save_model_file(workdir / MODEL_FILE, half_state_dict(ema.model), {
            "format": MODEL_FORMAT,
            "config": {k: config[k] for k in MODEL_KEYS + DIFFUSION_KEYS},
        })
        checkpoint.unlink(missing_ok=True)  # the EMA weights are the product, not the state
    world.barrier()
    done, history = state["step"], state["history"]
    return {
        "train_steps": done,
        "finished": end.finished,
        "images_seen": done * batch_size,
        "epochs": done * batch_size / data.shape[0],
        "train_seconds": round(state["train_seconds"], 2),
        "images_per_s": done * batch_size / max(state["train_seconds"], 1e-9),
        "parameters": count_parameters(model),
        "final_loss": history[-1]["loss"] if history else float("nan"),
        "history": history,
        "device": str(device),
        "processes": world.size,
    }


def _probe_batch(data: torch.Tensor, diffusion: GaussianDiffusion, device: torch.device):
    """A fixed batch (diffusion, x0, t, noise) for checking new weights; drawn from its own
    generator, so it changes none of the training RNGs."""
    gen = torch.Generator().manual_seed(20_221)
    x0 = data[:16].to(device)
    t = torch.linspace(0, diffusion.num_timesteps - 1, x0.shape[0]).round().long().to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    return diffusion, x0, t, noise


@torch.no_grad()
def probe_loss(model: nn.Module, diffusion: GaussianDiffusion, x0: torch.Tensor,
               t: torch.Tensor, noise: torch.Tensor) -> float:
    """The unweighted noise-prediction loss of ``model`` on a fixed probe batch, in eval mode
    (no dropout, so the global RNG is not consumed)."""
    was_training = model.training
    model.eval()
    try:
        with autocast_context(x0.device):
            prediction = model(diffusion.q_sample(x0, t, noise), t).float()
    finally:
        model.train(was_training)
    return float((prediction - noise).pow(2).mean())


def _save_training_state(path, model, ema, optimizer, generator, state, probe) -> None:
    """Check the new weights on the probe batch, then write the resumable state atomically."""
    probes = {"probe_loss": probe_loss(model, *probe)}
    check_weights_finite(state["step"], {"model": model, "ema": ema.model}, probes)
    device = next(model.parameters()).device
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(), "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(), "rng": generator.get_state(),
        "global_rng": global_rng_state(device), **state,
    })


def load_model(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[nn.Module, GaussianDiffusion]:
    """Rebuild the EMA network and its diffusion from a DDPM model file (fp16 -> fp32).

    Reads ``model_ema.safetensors`` and the torch ``model_ema.pt`` of before (tagged
    :data:`MODEL_FORMAT`, or untagged as first written); raises
    :class:`~ddgan_core.checkpoint.CheckpointError` (one line) for anything else.
    """
    device = pick_device(device)
    tensors, info = read_model_file(path)
    fmt = info.get("format")
    if fmt == CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a DDPM training state; sample from the {MODEL_FILE} "
                              "that training writes when it finishes")
    if fmt not in (None, MODEL_FORMAT) or not tensors or "config" not in info:
        raise CheckpointError(f"{path} is not a DDPM model file (format {fmt!r}; expected "
                              f"{MODEL_FORMAT!r} with weights and a configuration)")
    with restoring(path, "its stored configuration"):
        model = make_model(info["config"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in tensors.items()})
        diffusion = make_diffusion(info["config"])
    return model.to(device).eval(), diffusion


def sampling_timesteps(num_timesteps: int, steps: int, spacing: str = "linspace") -> list[int]:
    """The K of T timesteps the samplers visit, ascending (see :data:`SPACINGS`).

    ``linspace``: evenly spaced, always including 0 and T-1: improved-diffusion's
    ``space_timesteps(T, [K])`` for K >= 2. For K = 1 it would keep t=0 only, which starts a
    clean-image step from pure noise; we keep t=T-1 instead, so the one step maps noise to the
    network's x0 prediction. ``trailing``: ``round(T - j T / K) - 1`` for j = 0..K-1, e.g.
    999 and 499 for K = 2 of T = 1000; the last step then goes from t = round(T/K) - 1 straight to
    the network's x0 prediction.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"spacing={spacing!r} is unknown; allowed: {list(SPACINGS)}")
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps={steps} must be in [1, {num_timesteps}] (the chain length T)")
    if steps == 1:
        return [num_timesteps - 1]
    if spacing == "trailing":
        return sorted({int(round(num_timesteps - j * num_timesteps / steps)) - 1
                       for j in range(steps)})
    return sorted(space_timesteps(num_timesteps, [steps]))


@torch.no_grad()
def ddpm_sample(
    model: nn.Module,
    diffusion: GaussianDiffusion,
    n: int,
    steps: int,
    sampler: str = "ancestral",
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    clip: bool = True,
    *,
    progress: bool = True,
    spacing: str = "linspace",
    precision: str = "auto",
    compile: bool = False,
) -> tuple[torch.Tensor, int]:
    """Draw ``n`` images with ``steps`` network evaluations each; returns (images in [-1, 1], NFE).

    ``sampler="ancestral"`` runs the respaced chain with the posterior variance (Ho et al.
    Algorithm 2 on the kept steps); ``"ddim"`` the DDIM update with ``eta`` (0: deterministic).
    ``spacing`` chooses the kept steps (:func:`sampling_timesteps`).
    Seeded per batch, so a given seed gives the same images on the same device. The network runs
    as :func:`~ddgan_core.device.sampling_network` sets it up: channels-last, in ``precision``
    (``auto``: bf16 on CUDA, float32 on the CPU), compiled when ``compile``. A progress bar over
    batches and steps shows on a terminal unless ``progress`` is false.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is unknown; allowed: {list(SAMPLERS)}")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n={n} and batch_size={batch_size} must be >= 1")
    device = pick_device(device)
    kept = sampling_timesteps(diffusion.num_timesteps, steps, spacing)
    spaced, timestep_map = respace(diffusion, kept)
    timestep_map = torch.as_tensor(timestep_map, device=device)
    model = model.to(device).eval()
    out = []
    batches = range(0, n, batch_size)
    bar = progress_bar(total=len(batches) * len(kept), desc=f"DDPM {sampler} K={len(kept)}",
                       enabled=progress, unit="step")
    with sampling_network(model, device, precision=precision, compile=compile) as net:
        for first in batches:
            b = min(batch_size, n - first)
            generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + first)
            x = to_channels_last(torch.randn((b, 1, 28, 28), device=device, generator=generator))
            for i in reversed(range(len(kept))):
                t = torch.full((b,), i, device=device, dtype=torch.long)
                eps = net(x, timestep_map[t])
                noise = torch.randn(x.shape, device=device, generator=generator)
                if sampler == "ancestral":
                    x = spaced.p_sample_from_eps(eps, x, t, noise=noise, clip=clip)
                else:
                    x = spaced.ddim_step(eps, x, t, t - 1, eta=eta, noise=noise, clip=clip)
                bar.update(1)
            out.append(x.clamp(-1, 1).cpu().contiguous())
    bar.close()
    return torch.cat(out), len(kept)
