"""Training-free fast samplers for the book's DDPM: DPM-Solver++ and UniPC through diffusers.

Since DDGAN, the usual way to sample a diffusion model in few steps has been a high-order
solver of its probability-flow ODE, with the trained noise predictor left as it is:
DPM-Solver++ (Lu et al. 2022; multistep, order 2 or 3) and UniPC (Zhao et al. 2023; a
predictor-corrector of order 2). This module runs diffusers' implementations of both on the
project's eps-model: the scheduler gets the model's own betas (``trained_betas``), the model is
called with the original timestep index, and each step costs one network evaluation, so
NFE = K. Timesteps are spaced ``trailing`` by default (or ``linspace``, the book's spacing;
:data:`~ddgan_core.ddpm.SPACINGS`). No thresholding or per-step clipping; the result is clamped
to [-1, 1] at the end, as :func:`~ddgan_core.ddpm.ddpm_sample` does.

diffusers is needed only here (``pip install diffusers``, part of the ``test`` extra).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from tqdm import TqdmWarning

from .ddpm import SPACINGS
from .device import pick_device, sampling_network, to_channels_last
from .diffusion import GaussianDiffusion
from .training import progress_bar

#: Solver name -> (diffusers scheduler class name, its settings).
SOLVERS = {
    "dpmsolver++": ("DPMSolverMultistepScheduler",
                    {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmsolver++3m": ("DPMSolverMultistepScheduler",
                      {"algorithm_type": "dpmsolver++", "solver_order": 3}),
    "unipc": ("UniPCMultistepScheduler", {"solver_order": 2}),
}


def make_scheduler(solver: str, diffusion: GaussianDiffusion, steps: int,
                   spacing: str = "trailing"):
    """The diffusers scheduler of ``solver`` for ``diffusion``'s betas, set to ``steps`` steps."""
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is unknown; allowed: {list(SOLVERS)}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing={spacing!r} is unknown; allowed: {list(SPACINGS)}")
    T = diffusion.num_timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps={steps} must be in [1, {T}] (the chain length T)")
    try:
        with warnings.catch_warnings():  # diffusers imports tqdm.auto, which warns in a
            warnings.simplefilter("ignore", TqdmWarning)  # notebook kernel without ipywidgets
            import diffusers
    except ImportError:
        raise ImportError(f"the {solver} sampler needs diffusers: pip install diffusers "
                          "(or install ddgan-core[test])") from None
    name, settings = SOLVERS[solver]
    scheduler = getattr(diffusers, name)(
        num_train_timesteps=T, trained_betas=diffusion.betas.tolist(),
        prediction_type="epsilon", timestep_spacing=spacing, lower_order_final=True,
        **settings)
    scheduler.set_timesteps(steps)
    return scheduler


@torch.no_grad()
def solver_sample(
    model: nn.Module,
    diffusion: GaussianDiffusion,
    n: int,
    steps: int,
    solver: str = "dpmsolver++",
    spacing: str = "trailing",
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    *,
    shape: tuple[int, ...] = (1, 28, 28),
    progress: bool = True,
    precision: str = "auto",
    compile: bool = False,
) -> tuple[torch.Tensor, int]:
    """Draw ``n`` samples with ``solver`` in ``steps`` network evaluations each; returns
    (samples clamped to [-1, 1], NFE). Seeded per batch, and the network run through
    :func:`~ddgan_core.device.sampling_network` (channels-last, ``precision``, ``compile``), as
    :func:`~ddgan_core.ddpm.ddpm_sample` (the same starting noise for the same seed)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"n={n} and batch_size={batch_size} must be >= 1")
    device = pick_device(device)
    make_scheduler(solver, diffusion, steps, spacing)  # checks the arguments before any work
    model = model.to(device).eval()
    out = []
    batches = range(0, n, batch_size)
    bar = progress_bar(total=len(batches) * steps, desc=f"{solver} K={steps}", enabled=progress,
                       unit="step")
    with sampling_network(model, device, precision=precision, compile=compile) as net:
        for first in batches:
            b = min(batch_size, n - first)
            scheduler = make_scheduler(solver, diffusion, steps, spacing)  # fresh multistep state
            generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + first)
            x = to_channels_last(torch.randn((b, *shape), device=device, generator=generator))
            for t in scheduler.timesteps:
                tt = torch.full((b,), int(t), device=device, dtype=torch.long)
                x = scheduler.step(net(x, tt), t, x).prev_sample
                bar.update(1)
            out.append(x.clamp(-1, 1).cpu().contiguous())
    bar.close()
    return torch.cat(out), steps
