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

from .diffusion import GaussianDiffusion, make_beta_schedule, respace, space_timesteps
from .nets.unet import UNet, count_parameters
from .training import (
    EMA,
    CheckpointError,
    autocast_context,
    check_finite,
    half_state_dict,
    load_checkpoint,
    pick_device,
    save_checkpoint,
    warmup_cosine,
)

SAMPLERS = ("ancestral", "ddim")
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
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train eps_theta per ``config`` (keys of :data:`TRAIN_KEYS`); resumable from ``workdir``.

    ``stop_after``: save the training state and raise :class:`TrainingPaused` once that many
    steps are done (a time-boxed session); calling again continues from the checkpoint.

    Writes ``workdir/checkpoint.pt`` every ``ddpm_checkpoint_every`` steps (atomically) and at the
    end ``workdir/model_ema.pt`` (fp16 EMA weights with the model configuration). Returns the
    metrics: steps, images seen, wall time, throughput, parameter count and the loss history.
    """
    from tqdm.auto import tqdm

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = pick_device(device)
    steps, batch_size = int(config["ddpm_train_steps"]), int(config["ddpm_batch_size"])
    if steps < 1 or batch_size < 1:
        raise ValueError(f"ddpm_train_steps={steps} and ddpm_batch_size={batch_size} must be >= 1")
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
    if checkpoint.exists():
        saved = load_checkpoint(checkpoint, device)
        try:
            model.load_state_dict(saved["model"])
            ema.load_state_dict(saved["ema"])
        except RuntimeError as err:
            raise CheckpointError(
                f"{checkpoint} does not fit this model configuration ({err}); delete it to retrain"
            ) from err
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["rng"].cpu())
        state = {k: saved[k] for k in state}
    bar = tqdm(total=steps, initial=state["step"], disable=not progress, desc="DDPM", leave=False)
    log_every = max(1, steps // 100)
    running, count, start = 0.0, 0, time.perf_counter()
    model.train()
    while state["step"] < steps:
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
        with autocast_context(device):
            prediction = model(x_t, t)
        per_image = (prediction.float() - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (weights[t] * per_image).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config["ddpm_grad_clip"])
        optimizer.step()
        ema.update(model)
        state["step"] = step + 1
        running += loss.item()
        count += 1
        if state["step"] % log_every == 0 or state["step"] == steps:
            check_finite(state["step"], {"loss": running / count})
            elapsed = time.perf_counter() - start
            state["history"].append({
                "step": state["step"], "loss": running / count,
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": count * batch_size / max(elapsed, 1e-9),
            })
            state["train_seconds"] += elapsed
            running, count, start = 0.0, 0, time.perf_counter()
            bar.set_postfix(loss=f"{state['history'][-1]['loss']:.4f}")
        bar.update(1)
        every = int(config.get("ddpm_checkpoint_every", 0) or 0)
        if every and state["step"] % every == 0 and state["step"] < steps:
            _save_training_state(checkpoint, model, ema, optimizer, generator, state)
        if stop_after is not None and state["step"] >= stop_after and state["step"] < steps:
            _save_training_state(checkpoint, model, ema, optimizer, generator, state)
            bar.close()
            raise TrainingPaused(f"paused at step {state['step']}; {checkpoint} resumes it")
    bar.close()
    _save_training_state(checkpoint, model, ema, optimizer, generator, state)
    save_checkpoint(workdir / "model_ema.pt", {
        "model": half_state_dict(ema.model),
        "config": {k: config[k] for k in MODEL_KEYS + DIFFUSION_KEYS},
    })
    checkpoint.unlink()  # the EMA weights are the product; the training state is not kept
    history = state["history"]
    return {
        "train_steps": steps,
        "images_seen": steps * batch_size,
        "epochs": steps * batch_size / data.shape[0],
        "train_seconds": round(state["train_seconds"], 2),
        "images_per_s": steps * batch_size / max(state["train_seconds"], 1e-9),
        "parameters": count_parameters(model),
        "final_loss": history[-1]["loss"],
        "history": history,
        "device": str(device),
    }


class TrainingPaused(RuntimeError):
    """Training stopped on request with its state saved; calling again resumes it."""


def _save_training_state(path, model, ema, optimizer, generator, state) -> None:
    save_checkpoint(path, {
        "model": model.state_dict(), "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(), "rng": generator.get_state(), **state,
    })


def load_model(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[nn.Module, GaussianDiffusion]:
    """Rebuild the EMA network and its diffusion from ``model_ema.pt`` (fp16 -> fp32)."""
    device = pick_device(device)
    saved = load_checkpoint(path, device)
    if not isinstance(saved, dict) or "model" not in saved or "config" not in saved:
        raise CheckpointError(f"{path} is not a DDPM checkpoint (expected keys 'model', 'config')")
    model = make_model(saved["config"])
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in saved["model"].items()})
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: weights do not fit the stored configuration ({err})"
        ) from err
    return model.to(device).eval(), make_diffusion(saved["config"])


def sampling_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """The K of T timesteps the samplers visit: evenly spaced, always including 0 and T-1.

    improved-diffusion's ``space_timesteps(T, [K])`` for K >= 2. For K = 1 it would keep t=0
    only, which starts a clean-image step from pure noise; we keep t=T-1 instead, so the one step
    maps noise to the network's x0 prediction.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps={steps} must be in [1, {num_timesteps}] (the chain length T)")
    if steps == 1:
        return [num_timesteps - 1]
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
) -> tuple[torch.Tensor, int]:
    """Draw ``n`` images with ``steps`` network evaluations each; returns (images in [-1, 1], NFE).

    ``sampler="ancestral"`` runs the respaced chain with the posterior variance (Ho et al.
    Algorithm 2 on the kept steps); ``"ddim"`` the DDIM update with ``eta`` (0: deterministic).
    Seeded per batch, so a given seed gives the same images on the same device.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is unknown; allowed: {list(SAMPLERS)}")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n={n} and batch_size={batch_size} must be >= 1")
    device = pick_device(device)
    kept = sampling_timesteps(diffusion.num_timesteps, steps)
    spaced, timestep_map = respace(diffusion, kept)
    timestep_map = torch.as_tensor(timestep_map, device=device)
    model = model.to(device).eval()
    out = []
    for first in range(0, n, batch_size):
        b = min(batch_size, n - first)
        generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + first)
        x = torch.randn((b, 1, 28, 28), device=device, generator=generator)
        for i in reversed(range(len(kept))):
            t = torch.full((b,), i, device=device, dtype=torch.long)
            with autocast_context(device):
                eps = model(x, timestep_map[t]).float()
            noise = torch.randn(x.shape, device=device, generator=generator)
            if sampler == "ancestral":
                x = spaced.p_sample_from_eps(eps, x, t, noise=noise, clip=clip)
            else:
                x = spaced.ddim_step(eps, x, t, t - 1, eta=eta, noise=noise, clip=clip)
        out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out), len(kept)
