"""DDPM overheads, measured in one run (a benchmark that prints ratios, not a timed test).

1. Training: images/s of ``train_ddpm`` (data slicing, noising, EMA, clipping, logging) against
   the bare forward+backward+optimizer step of the same network on the same batch size.
   Target: at least 90%.
2. Sampling: images/s per network evaluation of ``ddpm_sample`` against the bare forward pass
   at the same batch size. Target: at least 90%.

    python benchmarks/bench_ddpm.py --profile cpu [--device cuda] [--steps 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from ddgan_core import ddpm
from ddgan_core.profiles import get_profile
from ddgan_core.training import autocast_context, pick_device, synchronize


def bare_train_rate(cfg: dict, device: torch.device, steps: int) -> float:
    model = ddpm.make_model(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b = cfg["ddpm_batch_size"]
    x = torch.randn(b, 1, 28, 28, device=device)
    t = torch.randint(0, cfg["ddpm_timesteps"], (b,), device=device)
    noise = torch.randn_like(x)

    def step() -> None:
        with autocast_context(device):
            out = model(x, t)
        loss = (out.float() - noise).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * b / (time.perf_counter() - start)


def full_train_rate(cfg: dict, device: torch.device, steps: int) -> float:
    cfg = dict(cfg, ddpm_train_steps=steps + 3, ddpm_checkpoint_every=0, ddpm_warmup_steps=0)
    data = torch.rand(4096, 1, 28, 28) * 2 - 1
    with tempfile.TemporaryDirectory() as tmp:
        metrics = ddpm.train_ddpm(cfg, tmp, device=device, progress=False, data=data)
    # the trainer's own clock excludes set-up; its first log interval includes warm-up steps
    history = metrics["history"]
    late = [h["images_per_s"] for h in history[len(history) // 2:]]
    return sorted(late)[len(late) // 2]


@torch.no_grad()
def bare_forward_rate(model, cfg: dict, device: torch.device, batch: int, calls: int) -> float:
    x = torch.randn(batch, 1, 28, 28, device=device)
    t = torch.full((batch,), 500, device=device, dtype=torch.long)
    for _ in range(2):
        with autocast_context(device):
            model(x, t)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        with autocast_context(device):
            model(x, t)
    synchronize(device)
    return calls * batch / (time.perf_counter() - start)


def sampling_rate(model, diffusion, device: torch.device, batch: int, k: int) -> float:
    ddpm.ddpm_sample(model, diffusion, batch, 2, "ancestral", batch_size=batch, device=device)
    synchronize(device)
    start = time.perf_counter()
    ddpm.ddpm_sample(model, diffusion, batch, k, "ancestral", batch_size=batch, device=device)
    synchronize(device)
    return k * batch / (time.perf_counter() - start)  # image-evaluations per second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--device")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    device = pick_device(args.device)
    cfg = ddpm.training_config(get_profile(args.profile))
    cfg["ddpm_checkpoint_every"] = 0
    print(f"device {device}, threads {torch.get_num_threads()}, profile {args.profile}, "
          f"channels {cfg['ddpm_channels']}, batch {cfg['ddpm_batch_size']}")
    bare = bare_train_rate(cfg, device, args.steps)
    full = full_train_rate(cfg, device, args.steps)
    print(f"training: bare fwd+bwd+step {bare:8.1f} img/s | train_ddpm {full:8.1f} img/s | "
          f"ratio {full / bare:.3f} (target >= 0.90)")
    model = ddpm.make_model(cfg).to(device).eval()
    diffusion = ddpm.make_diffusion(cfg)
    k = 20
    forward = bare_forward_rate(model, cfg, device, args.batch, k)
    sampled = sampling_rate(model, diffusion, device, args.batch, k)
    print(f"sampling (batch {args.batch}, K={k}): bare forward {forward:8.1f} img/s | "
          f"ddpm_sample {sampled:8.1f} img-NFE/s | ratio {sampled / forward:.3f} (target >= 0.90)")


if __name__ == "__main__":
    main()
