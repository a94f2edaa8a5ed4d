"""The project's UNet against diffusers' ``UNet2DModel``, and its roofline, measured in one run
(a benchmark that prints ratios, not a timed test).

1. The DDPM UNet of the profile (``ddpm.make_model``: ``ddpm_channels``, ``ddpm_res_blocks``,
   ``ddpm_attention``, ``ddpm_dropout``) against a diffusers ``UNet2DModel`` for 1x28x28 images
   with the same resolutions, blocks per level, attention resolutions (4 heads where the widths
   allow) and dropout, whose ``block_out_channels`` are picked automatically: the candidate
   widths (the profile's scaled, rounded to multiples of the norm group count) whose parameter
   count is closest to the project's; the run refuses if none is within 10%.
   (a) Sampling: images/s per network evaluation (forward only, ``torch.inference_mode``, batch
       ``--batch``) of both networks in the default (contiguous) and the channels-last layout.
       The project's samplers run in channels-last, so the headline ratio is the project in
       channels-last against the better of diffusers' two layouts. Target: >= 1.2x.
   (b) Training: images/s of forward + MSE loss against the noise + backward + AdamW step, same
       batch, default layout for both (channels-last for both as extra rows). Target: >= 1.0x.
   (c) Sampling set-ups: both networks through ``device.sampling_network`` (channels-last) in
       each precision (fp32, bf16 autocast) with and without ``torch.compile``: the project's
       compiled network against diffusers' eager one (what ``--compile`` of the samplers gives a
       user over a plain ``UNet2DModel``), and like for like (both compiled). Compiling costs
       20-30 s per network and set-up on a 2-core CPU; ``--no-compile`` skips those rows.
2. Roofline: achieved FLOP/s of the project's DDPM UNet and of the DDGAN generator (a
   ``DDGANGenerator`` around the UNet of the profile's DDPM size with ``z_dim = ddgan_nz``, as in
   ``bench_ddgan.py``), forward (channels-last, as sampled) and forward + backward (default
   layout, as trained), as a fraction of the device's matmul peak measured in the same run (a
   square fp32 matmul, 2048 on CPU and 8192 on CUDA, 2 n^3 FLOPs; and the bf16 peak, which the
   networks use under bf16 autocast: on CUDA always, on a CPU with the samplers'
   ``precision="bf16"``). FLOPs come from ``FlopCounterMode`` (matmuls, convolutions,
   attention), counted once per network at the benchmark's batch.

Times are medians over ``--repeats`` single calls after ``--warmup`` untimed calls; networks
run under ``autocast_context`` (bf16 on CUDA, fp32 on CPU).

    python benchmarks/bench_unet.py [--profile cpu|full|smoke] [--device cpu|cuda] [--threads N]
        [--batch 64] [--repeats 5] [--warmup 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from common import add_run_arguments
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ddgan_core import ddpm
from ddgan_core.ddgan import DDGANGenerator
from ddgan_core.device import (
    channels_last,
    device_description,
    sampling_network,
    to_channels_last,
)
from ddgan_core.nets.unet import UNet, count_parameters
from ddgan_core.profiles import get_profile
from ddgan_core.training import autocast_context, pick_device, synchronize

SAMPLING_TARGET = 1.2
TRAINING_TARGET = 1.0
PARAM_TOLERANCE = 0.10
IMAGE_SIZE = 28


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                            out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA attention kernels but not the CPU one the UNets dispatch to
_CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}


def _verdict(ratio: float, target: float) -> str:
    return "MET" if ratio >= target else "NOT MET"


@dataclass
class Net:
    """A network and how to call it on (x_t, t): the project's return a tensor, diffusers' an
    output object whose ``.sample`` is the tensor."""

    name: str
    model: nn.Module
    call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def median_time(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time in seconds of one call of ``fn`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def layout(model: nn.Module, last: bool) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """``model`` in channels-last inside the block when ``last``; yields the input converter."""
    if not last:
        yield lambda x: x
        return
    with channels_last(model):
        yield to_channels_last


# ---------------------------------------------------------------- the diffusers counterpart


def diffusers_config(cfg: dict, channels: tuple[int, ...], groups: int) -> dict[str, Any]:
    """A ``UNet2DModel`` config mirroring the project's UNet of ``cfg`` at widths ``channels``."""
    sizes = [IMAGE_SIZE // 2**i for i in range(len(channels))]
    attention = set(cfg["ddpm_attention"])
    down = tuple("AttnDownBlock2D" if s in attention else "DownBlock2D" for s in sizes)
    up = tuple("AttnUpBlock2D" if s in attention else "UpBlock2D" for s in reversed(sizes))
    # the project's attention has 4 heads; diffusers' takes the head width (mid block included)
    widths = [c for c, s in zip(channels, sizes) if s in attention] + [channels[-1]]
    common = math.gcd(*widths)
    return dict(
        sample_size=IMAGE_SIZE, in_channels=1, out_channels=1,
        layers_per_block=int(cfg["ddpm_res_blocks"]), block_out_channels=channels,
        down_block_types=down, up_block_types=up, norm_num_groups=groups,
        attention_head_dim=common // 4 if common % 4 == 0 else common,
        dropout=float(cfg["ddpm_dropout"]),
    )


def pick_diffusers_config(cfg: dict, target: int) -> tuple[dict[str, Any], int]:
    """The config whose parameter count is closest to ``target``: the profile's widths scaled by
    2^(k/16), k in [-32, 32], rounded to multiples of the norm group count (models built on the
    meta device, so the search allocates nothing). Exits if none is within 10%."""
    from diffusers import UNet2DModel

    base = [int(c) for c in cfg["ddpm_channels"]]
    groups = math.gcd(32, *base)
    candidates = {
        tuple(max(groups, round(c * 2 ** (k / 16) / groups) * groups) for c in base)
        for k in range(-32, 33)
    }
    best: tuple[dict[str, Any], int] | None = None
    for channels in sorted(candidates):
        config = diffusers_config(cfg, channels, groups)
        with torch.device("meta"):
            n = count_parameters(UNet2DModel(**config))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (config, n)
    assert best is not None
    if abs(best[1] / target - 1) > PARAM_TOLERANCE:
        raise SystemExit(
            f"no diffusers UNet2DModel width within {PARAM_TOLERANCE:.0%} of the project's "
            f"{target:,} parameters (closest: {best[0]['block_out_channels']}, {best[1]:,})"
        )
    return best


# ---------------------------------------------------------------- 1. project against diffusers


def sampling_time(net: Net, device: torch.device, batch: int, last: bool, repeats: int,
                  warmup: int) -> float:
    """Seconds per forward pass of ``batch`` images under inference mode."""
    net.model.eval()
    x = torch.randn(batch, 1, IMAGE_SIZE, IMAGE_SIZE, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    with layout(net.model, last) as convert, torch.inference_mode():
        x = convert(x)

        def forward() -> None:
            with autocast_context(device):
                net.call(x, t)

        return median_time(forward, device, repeats, warmup)


def training_time(net: Net, device: torch.device, batch: int, last: bool, repeats: int,
                  warmup: int) -> float:
    """Seconds per training step (forward, MSE against the noise, backward, AdamW step)."""
    net.model.train()
    x = torch.randn(batch, 1, IMAGE_SIZE, IMAGE_SIZE, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    noise = torch.randn_like(x)
    with layout(net.model, last) as convert:
        x, noise = convert(x), convert(noise)
        optimizer = torch.optim.AdamW(net.model.parameters(), lr=1e-4)

        def step() -> None:
            with autocast_context(device):
                out = net.call(x, t)
            loss = (out.float() - noise).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        seconds = median_time(step, device, repeats, warmup)
    net.model.eval()
    return seconds


def bench_against_diffusers(cfg: dict, device: torch.device, args: argparse.Namespace
                            ) -> dict[str, float]:
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    ours = ddpm.make_model(cfg).to(device)
    n_ours = count_parameters(ours)
    config, n_theirs = pick_diffusers_config(cfg, n_ours)
    theirs = UNet2DModel(**config).to(device)
    assert count_parameters(theirs) == n_theirs
    print(f"1. project UNet (channels {list(cfg['ddpm_channels'])}, "
          f"{cfg['ddpm_res_blocks']} blocks/level, attention at {list(cfg['ddpm_attention'])}) "
          f"against diffusers UNet2DModel")
    print("   diffusers config: " + ", ".join(f"{k}={v!r}" for k, v in config.items()))
    print(f"   parameters: project {n_ours:,} | diffusers {n_theirs:,} | "
          f"ratio {n_theirs / n_ours:.3f}")
    nets = [Net("project", ours, lambda x, t: ours(x, t)),
            Net("diffusers", theirs, lambda x, t: theirs(x, t).sample)]
    b, reps, warm = args.batch, args.repeats, args.warmup

    rate: dict[tuple[str, str, bool], float] = {}
    for net in nets:
        for last in (False, True):
            rate["sample", net.name, last] = b / sampling_time(net, device, b, last, reps, warm)
    for net in nets:
        for last in (False, True):
            rate["train", net.name, last] = b / training_time(net, device, b, last, reps, warm)

    def name(last: bool) -> str:
        return "channels-last" if last else "contiguous   "

    print(f"   (a) sampling, batch {b}: images/s per network evaluation (forward only)")
    for net in nets:
        for last in (False, True):
            print(f"       {net.name:9s} {name(last)} {rate['sample', net.name, last]:10.1f}")
    for last in (False, True):
        print(f"       project/diffusers, both {name(last).strip()}: "
              f"{rate['sample', 'project', last] / rate['sample', 'diffusers', last]:.3f}")
    best_last = rate["sample", "diffusers", True] > rate["sample", "diffusers", False]
    sampling = rate["sample", "project", True] / rate["sample", "diffusers", best_last]
    print(f"       headline: project channels-last / diffusers {name(best_last).strip()} "
          f"(its better layout) {sampling:.3f}  (target >= {SAMPLING_TARGET:.1f}x: "
          f"{_verdict(sampling, SAMPLING_TARGET)})")
    print(f"   (b) training, batch {b}: images/s of forward + MSE + backward + AdamW step")
    for net in nets:
        for last in (False, True):
            print(f"       {net.name:9s} {name(last)} {rate['train', net.name, last]:10.1f}")
    training = rate["train", "project", False] / rate["train", "diffusers", False]
    training_last = rate["train", "project", True] / rate["train", "diffusers", True]
    print(f"       project/diffusers, both channels-last: {training_last:.3f}")
    print(f"       headline: project/diffusers, both contiguous {training:.3f}  "
          f"(target >= {TRAINING_TARGET:.1f}x: {_verdict(training, TRAINING_TARGET)})")
    setups = bench_setups(nets, device, args, max(rate["sample", "diffusers", False],
                                                  rate["sample", "diffusers", True]))
    return {"params": n_theirs / n_ours, "sampling": sampling, "training": training,
            "training_last": training_last, **setups}


class _SampleTensor(nn.Module):
    """A diffusers model whose forward returns its output's ``.sample`` tensor."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner(x, t).sample


def setup_time(model: nn.Module, device: torch.device, batch: int, precision: str,
               compile: bool, repeats: int, warmup: int) -> float:
    """Seconds per forward pass of ``batch`` images through ``sampling_network`` (the first
    call, which compiles, is among the warm-up calls)."""
    model.eval()
    x = to_channels_last(torch.randn(batch, 1, IMAGE_SIZE, IMAGE_SIZE, device=device))
    t = torch.randint(0, 1000, (batch,), device=device)
    with torch.inference_mode(), sampling_network(model, device, precision=precision,
                                                  compile=compile) as net:
        return median_time(lambda: net(x, t), device, repeats, max(warmup, 1))


def bench_setups(nets: list[Net], device: torch.device, args: argparse.Namespace,
                 diffusers_eager: float) -> dict[str, float]:
    """(c): images/s per evaluation of both networks in every (precision, compile) set-up; the
    headline divides by diffusers' best fp32 eager rate of the run (``diffusers_eager`` from
    (a), or the fp32 row here, whichever is higher)."""
    models = {"project": nets[0].model, "diffusers": _SampleTensor(nets[1].model)}
    compiles = (False,) if args.no_compile else (False, True)
    b = args.batch
    rate = {(name, precision, compile): b / setup_time(model, device, b, precision, compile,
                                                       args.repeats, args.warmup)
            for precision in ("fp32", "bf16") for compile in compiles
            for name, model in models.items()}
    print(f"   (c) sampling set-ups, batch {b}, channels-last: images/s per network evaluation")
    print("       precision compile     project  diffusers  project/diffusers")
    for precision in ("fp32", "bf16"):
        for compile in compiles:
            ours = rate["project", precision, compile]
            theirs = rate["diffusers", precision, compile]
            print(f"       {precision:9s} {'yes' if compile else 'no':7s} {ours:11.1f} "
                  f"{theirs:10.1f} {ours / theirs:18.3f}")
    out: dict[str, float] = {}
    if not args.no_compile:
        best = {"fp32": max(diffusers_eager, rate["diffusers", "fp32", False]),
                "bf16": rate["diffusers", "bf16", False]}
        for precision in ("fp32", "bf16"):
            ratio = rate["project", precision, True] / best[precision]
            out[f"compiled_{precision}"] = ratio
            print(f"       project compiled / diffusers eager (its best {precision} rate of the "
                  f"run), both {precision}: {ratio:.3f}  (target >= {SAMPLING_TARGET:.1f}x: "
                  f"{_verdict(ratio, SAMPLING_TARGET)})")
        fastest = rate["project", "bf16", True] / rate["project", "fp32", False]
        out["bf16_compiled_over_fp32"] = fastest
        print(f"       project bf16 compiled / project fp32 eager (the samplers' default): "
              f"{fastest:.3f}")
    return out


# ---------------------------------------------------------------- 2. roofline


def matmul_peak(device: torch.device, n: int, dtype: torch.dtype, repeats: int,
                warmup: int) -> float:
    """FLOP/s of one square ``n`` x ``n`` matmul in ``dtype`` (median time, 2 n^3 FLOPs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / median_time(lambda: a @ b, device, repeats, max(1, warmup))


def network_flops(model: nn.Module, run: Callable[[], None]) -> int:
    """FLOPs of one ``run()`` (matmuls, convolutions, attention, backward included)."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS) as counter:
        run()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def roofline(name: str, model: nn.Module, call: Callable[..., torch.Tensor],
             device: torch.device, args: argparse.Namespace, peaks: dict[str, float]
             ) -> dict[str, float]:
    """Achieved FLOP/s of ``model`` forward (channels-last) and forward + backward (default)."""
    b = args.batch
    x = torch.randn(b, 1, IMAGE_SIZE, IMAGE_SIZE, device=device)
    t = torch.randint(0, 1000, (b,), device=device)

    fractions = {}
    model.eval()
    with layout(model, True) as convert:
        x_last = convert(x)

        def forward() -> None:
            with torch.inference_mode(), autocast_context(device):
                call(x_last, t)

        flops = network_flops(model, forward)
        seconds = median_time(forward, device, args.repeats, args.warmup)
    fractions["forward"] = _print_roofline(name, "forward (channels-last)", flops, b, seconds,
                                           peaks)

    def forward_backward() -> None:
        with autocast_context(device):
            out = call(x, t)
        out.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    model.train()
    flops = network_flops(model, forward_backward)
    seconds = median_time(forward_backward, device, args.repeats, args.warmup)
    fractions["forward+backward"] = _print_roofline(name, "forward+backward", flops, b, seconds,
                                                    peaks)
    model.eval()
    return fractions


def _print_roofline(name: str, what: str, flops: int, batch: int, seconds: float,
                    peaks: dict[str, float]) -> float:
    achieved = flops / seconds
    shares = " | ".join(f"{achieved / peak:6.1%} of {kind} peak" for kind, peak in peaks.items())
    print(f"   {name:9s} {what:24s} {flops / batch / 1e9:8.4f} GFLOP/image  "
          f"{achieved / 1e9:9.1f} GFLOP/s  {shares}")
    return achieved / peaks["fp32"]


def bench_roofline(cfg: dict, profile: dict, device: torch.device, args: argparse.Namespace
                   ) -> dict[str, float]:
    n = args.matmul_n or (8192 if device.type == "cuda" else 2048)
    # both: the networks run under bf16 autocast on CUDA, and bf16 is the samplers' option
    peaks = {kind: matmul_peak(device, n, dtype, args.repeats, args.warmup)
             for kind, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"2. roofline, batch {args.batch}: matmul peak ({n}x{n}) "
          + ", ".join(f"{kind} {peak / 1e9:.1f} GFLOP/s" for kind, peak in peaks.items()))
    torch.manual_seed(0)
    eps_model = ddpm.make_model(cfg).to(device)
    channels, blocks = list(cfg["ddpm_channels"]), int(cfg["ddpm_res_blocks"])
    attention, nz = tuple(cfg["ddpm_attention"]), int(profile["ddgan_nz"])
    G = DDGANGenerator(UNet(channels, blocks, attention, z_dim=nz)).to(device)
    z = torch.randn(args.batch, nz, device=device)
    out = {}
    for key, value in roofline("project", eps_model, eps_model, device, args, peaks).items():
        out[f"UNet {key}"] = value
    for key, value in roofline("DDGAN G", G, lambda x, t: G(x, t, z), device, args,
                               peaks).items():
        out[f"G {key}"] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile rows of (c) (about 2 min on a 2-core CPU)")
    parser.add_argument("--matmul-n", type=int, default=None,
                        help="size of the peak matmul (default: 2048 on CPU, 8192 on CUDA)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1 or args.warmup < 0:
        parser.error("--repeats and --batch must be >= 1, --warmup >= 0")
    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    cfg = ddpm.training_config(profile)
    print(f"profile {args.profile}, device {device_description(device)}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"median of {args.repeats} after {args.warmup} warm-up")
    ratios = bench_against_diffusers(cfg, device, args)
    fractions = bench_roofline(cfg, profile, device, args)
    print("summary")
    print(f"   parameters diffusers/project      {ratios['params']:.3f}")
    print(f"   sampling   project/diffusers      {ratios['sampling']:.3f}  "
          f"(target >= {SAMPLING_TARGET:.1f})")
    print(f"   training   project/diffusers      {ratios['training']:.3f}  "
          f"(target >= {TRAINING_TARGET:.1f}; channels-last {ratios['training_last']:.3f})")
    for precision in ("fp32", "bf16"):
        if f"compiled_{precision}" in ratios:
            print(f"   sampling   compiled/eager {precision}    "
                  f"{ratios[f'compiled_{precision}']:.3f}  (project compiled against diffusers "
                  "eager; like for like in (c))")
    for key, value in fractions.items():
        print(f"   roofline   {key:22s} {value:6.1%} of fp32 matmul peak")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
