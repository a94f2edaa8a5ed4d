"""Benchmark: DDGAN sampling speed against DDPM, and the DDGAN trainer's overhead.

(a) Seconds per image for DDGAN (T = ``ddgan_timesteps``, 4 by default) and for DDPM's ancestral
    sampler with 1000 steps, both with a UNet of the profile's DDPM size (``ddpm_channels``,
    ``ddpm_res_blocks``, ``ddpm_attention``); DDGAN's adds the latent mapping network and
    adaptive group norm. DDPM is timed over ``--ddpm-timed`` steps and scaled to 1000 (printed
    as such). Target: DDGAN at least 200x faster per image.
(b) A full DDGAN training step (``DDGANTrainer.train_step``: pair sampling, posterior sampling,
    losses, lazy R1, two Adam steps, EMA, learning-rate schedule) against the bare network work
    of the same step on the same batch: per D update G forward + D forward on real and fake +
    backward, then G forward + D forward + backward (no D weight gradients). Timed over
    ``--train-steps`` steps, full and bare interleaved (default: one lazy-R1 period of D
    updates, so R1 is amortised as in training). Target: overhead below 15%.

    python benchmarks/bench_ddgan.py [--profile cpu|full|smoke] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from ddgan_core.ddgan import (
    DDGANGenerator,
    DDGANTrainer,
    ddgan_sample,
    make_ddgan_diffusion,
    make_discriminator,
    make_generator,
)
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule
from ddgan_core.nets.unet import UNet, count_parameters
from ddgan_core.profiles import get_profile
from ddgan_core.training import autocast_context, pick_device, synchronize

SPEEDUP_TARGET = 200.0
OVERHEAD_TARGET = 0.15


def _timed(fn, device: torch.device, repeats: int = 1) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def bench_sampling(config: dict, device: torch.device, n: int, ddpm_timed: int) -> None:
    channels, blocks = list(config["ddpm_channels"]), int(config["ddpm_res_blocks"])
    attention = tuple(config["ddpm_attention"])
    nz, T = int(config["ddgan_nz"]), int(config["ddgan_timesteps"])
    G = DDGANGenerator(UNet(channels, blocks, attention, z_dim=nz)).to(device).eval()
    eps_model = UNet(channels, blocks, attention).to(device).eval()
    gan_diffusion = make_ddgan_diffusion(T)
    ddpm_T = int(config["ddpm_timesteps"])
    ddpm_diffusion = GaussianDiffusion(make_beta_schedule(config["ddpm_schedule"], ddpm_T))

    def ddgan():
        ddgan_sample(G, gan_diffusion, n, nz, seed=0, batch_size=n, device=device)

    @torch.no_grad()
    def ddpm(steps: int):
        x = torch.randn(n, 1, 28, 28, device=device)
        for i in range(ddpm_T - 1, ddpm_T - 1 - steps, -1):
            t = torch.full((n,), i, device=device, dtype=torch.long)
            with autocast_context(device):
                eps = eps_model(x, t).float()
            x = ddpm_diffusion.p_sample_from_eps(eps, x, t)

    ddgan()  # warm-up (kernel selection, oneDNN primitives)
    ddpm(2)
    t_gan = _timed(ddgan, device) / n
    t_ddpm_part = _timed(lambda: ddpm(ddpm_timed), device)
    t_ddpm = t_ddpm_part * ddpm_T / ddpm_timed / n
    ratio = t_ddpm / t_gan
    print(f"(a) sampling, batch {n}, UNet channels {channels} x {blocks} blocks "
          f"(G {count_parameters(G) / 1e6:.2f} M params, eps-model "
          f"{count_parameters(eps_model) / 1e6:.2f} M)")
    print(f"    DDGAN T={T}: NFE {T}, {t_gan * 1e3:.3f} ms/image")
    print(f"    DDPM {ddpm_T} steps: NFE {ddpm_T}, {t_ddpm * 1e3:.3f} ms/image "
          f"(SCALED from {ddpm_timed} timed steps x {ddpm_T / ddpm_timed:g})")
    print(f"    speed-up {ratio:.0f}x  (target >= {SPEEDUP_TARGET:.0f}x: "
          f"{'MET' if ratio >= SPEEDUP_TARGET else 'NOT MET'})")


def bench_overhead(config: dict, device: torch.device, steps: int, batch: int | None) -> None:
    batch = batch or int(config["ddgan_batch_size"])
    torch.manual_seed(0)
    G, D = make_generator(config), make_discriminator(config)
    diffusion = make_ddgan_diffusion(int(config["ddgan_timesteps"]))
    nz, d_steps = int(config["ddgan_nz"]), int(config["ddgan_d_steps"])
    lazy = int(config["ddgan_lazy_r1"])
    trainer = DDGANTrainer(
        G, D, diffusion, nz=nz, lr_g=config["ddgan_lr_g"], lr_d=config["ddgan_lr_d"],
        total_steps=10 * steps, r1_gamma=config["ddgan_r1_gamma"], lazy_r1=lazy,
        d_steps=d_steps, ema_decay=config["ddgan_ema_decay"], device=device,
    )
    x0 = torch.rand(batch, 1, 28, 28, device=device) * 2 - 1
    t = torch.randint(0, diffusion.num_timesteps, (batch,), device=device)
    z = torch.randn(batch, nz, device=device)

    def full():
        trainer.train_step(lambda: x0)

    def bare():
        for _ in range(d_steps):
            with autocast_context(device):
                with torch.no_grad():
                    fake = G(x0, t, z)
                loss = D(x0, x0, t).float().mean() - D(fake, x0, t).float().mean()
            loss.backward()
        D.requires_grad_(False)  # G's update needs no D weight gradients
        with autocast_context(device):
            loss = D(G(x0, t, z), x0, t).float().mean()
        loss.backward()
        D.requires_grad_(True)
        for p in (*G.parameters(), *D.parameters()):
            p.grad = None

    for _ in range(2):  # warm-up, including one R1 step
        full()
        bare()
    t_full = t_bare = 0.0
    for _ in range(steps):  # interleaved, so that a change in background load hits both
        t_full += _timed(full, device) / steps
        t_bare += _timed(bare, device) / steps
    overhead = t_full / t_bare - 1.0
    print(f"(b) training step, batch {batch}, d_steps {d_steps}, lazy R1 every {lazy} D "
          f"updates, mean of {steps} steps")
    print(f"    bare G+D forward/backward {t_bare * 1e3:.1f} ms/step, full train step "
          f"{t_full * 1e3:.1f} ms/step ({batch * d_steps / t_full:.0f} images/s)")
    print(f"    overhead {overhead:+.1%}  (target < {OVERHEAD_TARGET:.0%}: "
          f"{'MET' if overhead < OVERHEAD_TARGET else 'NOT MET'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["cpu", "full", "smoke"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (CPU runs; two oversubscribe a busy 2-core machine)")
    parser.add_argument("--n", type=int, default=64, help="images per sampling batch")
    parser.add_argument("--ddpm-timed", type=int, default=20,
                        help="DDPM steps actually timed (scaled to 1000)")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="timed training steps (default: one lazy-R1 period)")
    parser.add_argument("--batch", type=int, default=None,
                        help="training batch (default: the profile's ddgan_batch_size)")
    parser.add_argument("--skip", choices=["sampling", "training"], default=None)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    config = get_profile(args.profile)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"profile {args.profile}, device {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    if args.skip != "sampling":
        bench_sampling(config, device, args.n, args.ddpm_timed)
    if args.skip != "training":
        period = -(-max(1, int(config["ddgan_lazy_r1"])) // int(config["ddgan_d_steps"]))
        steps = args.train_steps or period
        bench_overhead(config, device, steps, args.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
