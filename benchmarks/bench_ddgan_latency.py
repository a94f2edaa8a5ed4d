"""Benchmark: DDGAN sampling latency at batch 1 and throughput at a large batch, in every
network set-up of ``ddgan_sample`` (a benchmark that prints ratios measured in one run).

The generator is the profile's (``ddgan.make_generator``; freshly initialised: time does not
depend on the weights), sampled with ``ddgan_sample`` over its ``ddgan_timesteps`` steps. For
each batch of ``--batches`` (default 1 and 1,000) and each set-up:

- ``fp32`` / ``bf16``: the ``precision`` of :func:`ddgan_core.device.sampling_network`;
- ``eager`` / ``compiled``: its ``compile`` (``torch.compile``, static shapes);
- on CUDA also ``bf16 + CUDA graphs``: the generator compiled with
  ``mode="reduce-overhead"``, which replays the recorded kernels of a step as one CUDA graph
  (the launch overhead that dominates batch 1 on a GPU).

it prints the median seconds of one sampling call (``--repeats`` timed calls after
``--warmup`` untimed ones, the first of which compiles), milliseconds per image, images/s, and
the ratio against fp32 eager at the same batch. The first call's seconds are printed too: with
compilation, they include it.

    python benchmarks/bench_ddgan_latency.py [--profile cpu|full|smoke] [--device cpu|cuda]
        [--threads N] [--batches 1 1000] [--repeats 5] [--warmup 2] [--no-compile]

On this project's 2-core CPU the default run takes about 8 minutes (2 threads, --repeats 3).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from common import add_run_arguments

from ddgan_core.ddgan import ddgan_sample, make_ddgan_diffusion, make_generator
from ddgan_core.device import device_description, quiet_compiler
from ddgan_core.metrics.speed import measure_speed
from ddgan_core.profiles import get_profile
from ddgan_core.training import pick_device, synchronize


def setups(device: torch.device, compile: bool) -> list[tuple[str, str, bool | str]]:
    """(name, precision, compile) of every set-up timed on ``device``."""
    out: list[tuple[str, str, bool | str]] = [("fp32 eager", "fp32", False),
                                              ("bf16 eager", "bf16", False)]
    if compile:
        out += [("fp32 compiled", "fp32", True), ("bf16 compiled", "bf16", True)]
        if device.type == "cuda":
            out.append(("bf16 + CUDA graphs", "bf16", "reduce-overhead"))
    return out


def sampler(generator: torch.nn.Module, profile: dict, device: torch.device, precision: str,
            compile: bool | str) -> Callable[[int], torch.Tensor]:
    """``sample(b) -> images`` of the generator in one set-up; a CUDA-graph set-up passes the
    generator compiled with ``mode="reduce-overhead"`` as the network (no second compile)."""
    chain = make_ddgan_diffusion(int(profile["ddgan_timesteps"]))
    nz = int(profile["ddgan_nz"])
    net = generator
    if isinstance(compile, str):
        net, compile = torch.compile(generator, mode=compile, dynamic=False), False

    def sample(b: int) -> torch.Tensor:
        return ddgan_sample(net, chain, b, nz, batch_size=b, device=device, progress=False,
                            precision=precision, compile=compile)[0]

    return sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--no-compile", action="store_true",
                        help="time the eager set-ups only")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 1 or min(args.batches) < 1:
        parser.error("--repeats, --warmup and every --batches value must be >= 1")
    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    torch.manual_seed(0)
    generator = make_generator(profile).to(device).eval()
    T = int(profile["ddgan_timesteps"])
    print(f"profile {args.profile}, device {device_description(device)}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; DDGAN generator "
          f"{list(profile['ddgan_channels'])}, T = {T} steps; median of {args.repeats} calls "
          f"after {args.warmup} warm-up")
    print(f"{'batch':>6s}  {'set-up':20s} {'first call s':>12s} {'call ms':>10s} "
          f"{'ms/image':>9s} {'images/s':>10s} {'vs fp32 eager':>14s}")
    for batch in args.batches:
        base = None
        for name, precision, compile in setups(device, not args.no_compile):
            sample = sampler(generator, profile, device, precision, compile)
            with quiet_compiler(bool(compile)):
                synchronize(device)
                start = time.perf_counter()
                sample(batch)
                synchronize(device)
                first = time.perf_counter() - start
                speed = measure_speed(sample, batch, batch, T, device, warmup=args.warmup - 1,
                                      repeats=args.repeats, progress=False)
            call = speed["seconds_total"]
            base = base or call
            print(f"{batch:6d}  {name:20s} {first:12.2f} {1e3 * call:10.2f} "
                  f"{1e3 * call / batch:9.3f} {batch / call:10.1f} {base / call:13.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
