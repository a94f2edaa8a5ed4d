"""Progressive distillation of a DDPM into a few-step sampler (Salimans and Ho, ICLR 2022).

A teacher that samples with DDIM in 2N steps is distilled into a student that takes N: one
student step is trained to land where two teacher steps land. The student then becomes the
teacher of the next round, so rounds of N = S, S/2, ..., 1 steps give samplers of every power of
two down to one network evaluation. Each round is a regression with a fixed target (no
adversary, no extra network), and every round's student is a point of the speed-quality
frontier (chapter 7).

Notation (the paper's, on the discrete chain of the teacher's T steps): alpha_t =
sqrt(abar_t), sigma_t = sqrt(1 - abar_t), z_t = alpha_t x + sigma_t eps. The N-step grid is
t_i = round(i T / N) - 1 for i = 1..N, with t_0 the clean image (alpha = 1, sigma = 0); grids of
N and 2N nest (t_i of N is t_{2i} of 2N). The DDIM step from t to s (eq. 2 of the paper) is

    z_s = alpha_s x_hat(z_t) + sigma_s eps_hat(z_t).

The target of the student at t = t_i is the x that makes one DDIM step from t_i reach the point
z'' that two teacher steps (t_i -> t_{2i-1} -> t_{i-1} on the 2N grid) reach (Algorithm 2):

    x~ = (z'' - (sigma'' / sigma_t) z_t) / (alpha'' - (sigma'' / sigma_t) alpha_t),

which is z'' itself when t_{i-1} is the clean end. The loss is the "truncated SNR" weighting
max(alpha_t^2 / sigma_t^2, 1) ||x~ - x_hat||^2 of the paper's section 4.

Parameterisation. The book's DDPM predicts the noise; its x_hat = (z_t - sigma_t eps_hat) /
alpha_t multiplies the network's error by sigma_t / alpha_t (about 160 at t = T - 1), which the
paper shows makes one- and two-step students fail. The student therefore predicts
v = alpha_t eps - sigma_t x (the paper's section 4): x_hat = alpha_t z_t - sigma_t v and
eps_hat = sigma_t z_t + alpha_t v, both well conditioned at every t. It starts from the
teacher's weights (the same UNet); the first round also moves it from noise to v prediction.
The teacher's x_hat is clipped to [-1, 1] (its eps_hat recomputed from the clipped x_hat), as
the book's DDIM sampler does.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import (
    DISTILLED_STUDENT,
    CheckpointError,
    half_state_dict,
    read_model_file,
    save_checkpoint,
    save_model_file,
)
from .device import pick_device, sampling_network, to_channels_last
from .diffusion import GaussianDiffusion
from .nets.unet import count_parameters
from .training import (
    check_finite,
    check_weights_finite,
    prepare_workdir,
    progress_bar,
    restoring,
    resume_state,
    run_training_loop,
)

__all__ = ["CHECKPOINT_FORMAT", "STUDENT_FORMAT", "distill_loss", "distill_rounds",
           "distill_sample", "distill_target", "grid_timestep", "load_student", "student_file",
           "train_distillation"]

CHECKPOINT_FORMAT = "ddgan_core.distillation_checkpoint/1"
#: The model file of a round's student (fp16 weights, the UNet's and the chain's configuration,
#: its step count and parameterisation).
STUDENT_FORMAT = DISTILLED_STUDENT


def distill_rounds(start_steps: int) -> list[int]:
    """The students' step counts: ``start_steps`` (a power of two), halved down to 1."""
    start = int(start_steps)
    if start < 1 or start & (start - 1):
        raise ValueError(f"distill_start_steps={start_steps} must be a power of two >= 1")
    return [start >> r for r in range(start.bit_length())]


def student_file(steps: int) -> str:
    """The file name of the student with ``steps`` steps, in the run's folder."""
    return f"student_k{int(steps)}.safetensors"


def grid_timestep(i: int | torch.Tensor, steps: int, num_timesteps: int) -> Any:
    """t_i = round(i T / N) - 1 (halves up, exact in integers, so the grids of N and 2N nest);
    -1 for i = 0, the clean end."""
    return (2 * i * num_timesteps + steps) // (2 * steps) - 1


def _alpha_sigma(diffusion: GaussianDiffusion, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """alpha_t, sigma_t as (B, 1, 1, 1) tensors; t = -1 is the clean end (1, 0)."""
    abar = torch.as_tensor(diffusion.alphas_cumprod, dtype=torch.float32, device=t.device)
    a = torch.where(t >= 0, abar[t.clamp(min=0)], torch.ones((), device=t.device))
    return a.sqrt().view(-1, 1, 1, 1), (1.0 - a).clamp(min=0).sqrt().view(-1, 1, 1, 1)


def predict_x_eps(net: Callable[..., torch.Tensor], kind: str, z: torch.Tensor, t: torch.Tensor,
                  diffusion: GaussianDiffusion, clip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_hat, eps_hat) of a network predicting ``kind`` = "eps" or "v" at z_t (module text);
    with ``clip``, x_hat is clipped to [-1, 1] and eps_hat recomputed from it."""
    alpha, sigma = _alpha_sigma(diffusion, t)
    out = net(z, t).float()
    if kind == "eps":
        x = (z - sigma * out) / alpha
        eps = out
    elif kind == "v":
        x = alpha * z - sigma * out
        eps = sigma * z + alpha * out
    else:
        raise ValueError(f"parameterisation {kind!r} is unknown; allowed: ['eps', 'v']")
    if clip:
        x = x.clamp(-1, 1)
        eps = (z - alpha * x) / sigma
    return x, eps


def _ddim_move(x: torch.Tensor, eps: torch.Tensor, s: torch.Tensor,
               diffusion: GaussianDiffusion) -> torch.Tensor:
    """z_s = alpha_s x + sigma_s eps (eq. 2 of the paper; x at the clean end)."""
    alpha, sigma = _alpha_sigma(diffusion, s)
    return alpha * x + sigma * eps


def distill_loss(student: nn.Module, teacher: nn.Module, teacher_kind: str, x0: torch.Tensor,
                 steps: int, diffusion: GaussianDiffusion, generator: torch.Generator
                 ) -> torch.Tensor:
    """The round's loss for a student of ``steps`` steps and a teacher of 2 ``steps``
    (Algorithm 2 of the paper, module text): a uniform grid index, the forward sample, two
    teacher DDIM steps, the target x~, the truncated-SNR-weighted squared error."""
    T, b, device = diffusion.num_timesteps, x0.shape[0], x0.device
    i = torch.randint(1, steps + 1, (b,), device=device, generator=generator)
    t = grid_timestep(i, steps, T)
    t_mid, t_end = grid_timestep(2 * i - 1, 2 * steps, T), grid_timestep(i - 1, steps, T)
    eps = torch.randn(x0.shape, device=device, generator=generator)
    alpha, sigma = _alpha_sigma(diffusion, t)
    z = alpha * x0 + sigma * eps
    with torch.no_grad():
        target = distill_target(teacher, teacher_kind, z, t, t_mid, t_end, diffusion)
        weight = (alpha**2 / sigma**2).clamp(min=1.0).view(-1)
    x_hat, _ = predict_x_eps(student, "v", z, t, diffusion, clip=False)
    return (weight * (target - x_hat).pow(2).mean(dim=(1, 2, 3))).mean()


def distill_target(teacher: nn.Module, teacher_kind: str, z: torch.Tensor, t: torch.Tensor,
                   t_mid: torch.Tensor, t_end: torch.Tensor, diffusion: GaussianDiffusion
                   ) -> torch.Tensor:
    """x~: the x whose DDIM step from (z, t) lands where two teacher steps t -> t_mid -> t_end
    land (Algorithm 2 of the paper; module text)."""
    alpha, sigma = _alpha_sigma(diffusion, t)
    x_mid, e_mid = predict_x_eps(teacher, teacher_kind, z, t, diffusion, clip=True)
    z_mid = _ddim_move(x_mid, e_mid, t_mid, diffusion)
    x_end, e_end = predict_x_eps(teacher, teacher_kind, z_mid, t_mid, diffusion, clip=True)
    z_end = _ddim_move(x_end, e_end, t_end, diffusion)
    a_end, s_end = _alpha_sigma(diffusion, t_end)
    ratio = s_end / sigma
    return (z_end - ratio * z) / (a_end - ratio * alpha)


@torch.no_grad()
def distill_sample(student: nn.Module, diffusion: GaussianDiffusion, n: int, steps: int,
                   seed: int = 0, batch_size: int = 1000, device: str | torch.device | None = None,
                   *, progress: bool = False, precision: str = "fp32", compile: bool = False
                   ) -> tuple[torch.Tensor, int]:
    """``n`` images from a v-predicting student with its ``steps`` DDIM steps on the grid t_i,
    from z ~ N(0, I) at t_N = T - 1; returns (images in [-1, 1], NFE = ``steps``). Seeded per
    batch, and run through :func:`~ddgan_core.device.sampling_network` (channels-last,
    ``precision``, ``compile``) as :func:`~ddgan_core.ddpm.ddpm_sample`; ``precision`` defaults
    to float32 on every device, as the students were distilled."""
    device = pick_device(device)
    student = student.to(device).eval()
    T, out = diffusion.num_timesteps, []
    batches = range(0, n, batch_size)
    bar = progress_bar(total=len(batches) * steps, desc=f"student K={steps}", enabled=progress,
                       unit="step")
    with sampling_network(student, device, precision=precision, compile=compile) as net:
        for first in batches:
            b = min(batch_size, n - first)
            gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + first)
            z = to_channels_last(torch.randn((b, 1, 28, 28), device=device, generator=gen))
            for i in range(steps, 0, -1):
                t = torch.full((b,), grid_timestep(i, steps, T), device=device, dtype=torch.long)
                s = torch.full((b,), grid_timestep(i - 1, steps, T), device=device,
                               dtype=torch.long)
                x, eps = predict_x_eps(net, "v", z, t, diffusion, clip=True)
                z = _ddim_move(x, eps, s, diffusion)
                bar.update(1)
            out.append(z.clamp(-1, 1).cpu().contiguous())
    bar.close()
    return torch.cat(out), steps


def load_student(path: str | Path, device: str | torch.device | None = None
                 ) -> tuple[nn.Module, GaussianDiffusion, int]:
    """(v-predicting UNet, its diffusion, its step count) from a student model file."""
    from . import ddpm

    tensors, info = read_model_file(path)
    if info.get("format") != STUDENT_FORMAT or "config" not in info:
        raise CheckpointError(f"{path} is not a distilled-student model file (format "
                              f"{info.get('format')!r}; expected {STUDENT_FORMAT!r})")
    with restoring(Path(path), "its stored configuration"):
        model = ddpm.make_model(info["config"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in tensors.items()})
    return (model.to(pick_device(device)).eval(), ddpm.make_diffusion(info["config"]),
            int(info["steps"]))


def train_distillation(
    config: Mapping[str, Any],
    teacher_path: str | Path,
    workdir: str | Path,
    device: str | torch.device | None = None,
    data: torch.Tensor | None = None,
    *,
    checkpoint_every: int = 0,
    log_every: int = 0,
    stop_after: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Distil the DDPM of ``teacher_path`` (its EMA model file) in rounds of
    :func:`distill_rounds` (``distill_start_steps``), ``distill_train_steps`` steps in all,
    split evenly over the rounds (the first rounds take the remainder).

    Each round starts a fresh Adam at ``distill_lr``, decayed linearly to 0 over the round (the
    paper's schedule), batch ``distill_batch_size``; the student starts from the teacher's
    weights. At the end of a round its student is written to ``workdir/student_k{N}.safetensors``
    (fp16) and becomes the next teacher (in fp32). ``workdir/checkpoint.pt`` (every
    ``checkpoint_every`` steps and at ``stop_after``, as
    :func:`~ddgan_core.training.run_training_loop`) holds the student, its optimiser, the
    round's teacher and the generators, so a resumed run equals an uninterrupted one. Returns
    the metrics: steps, ``finished``, per-round steps and losses, parameters, wall time.
    """
    from . import ddpm

    device = pick_device(device)
    workdir = prepare_workdir(workdir)
    rounds = distill_rounds(int(config["distill_start_steps"]))
    total, batch = int(config["distill_train_steps"]), int(config["distill_batch_size"])
    if total < len(rounds) or batch < 1:
        raise ValueError(f"distill_train_steps={total} must be >= the {len(rounds)} rounds and "
                         f"distill_batch_size={batch} >= 1")
    per_round = [total // len(rounds) + (r < total % len(rounds)) for r in range(len(rounds))]
    ends = [sum(per_round[:r + 1]) for r in range(len(rounds))]
    lr = float(config["distill_lr"])
    original, diffusion = ddpm.load_model(teacher_path, device)
    seed = int(config["seed"])
    if data is None:
        from .data import load_fashion_mnist

        data = load_fashion_mnist("train")[0]
    data = data.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    data_gen = torch.Generator().manual_seed(seed + 1)
    state: dict[str, Any] = {"step": 0, "wall": 0.0, "history": [], "sum": 0.0, "count": 0,
                             "since": 0.0}
    run = {"round": 0, "student": copy.deepcopy(original).train(), "teacher": original,
           "teacher_kind": "eps"}
    run["opt"] = torch.optim.Adam(run["student"].parameters(), lr=lr)
    path = workdir / "checkpoint.pt"
    saved = resume_state(path, CHECKPOINT_FORMAT, "a distillation checkpoint", device)
    if saved is not None:
        with restoring(path, "the teacher's network"):
            r = int(saved["round"])
            run["round"] = r
            if r > 0:
                run["teacher"] = copy.deepcopy(original)
                run["teacher"].load_state_dict(saved["teacher"])
                run["teacher_kind"] = "v"
            run["student"].load_state_dict(saved["student"])
            run["opt"] = torch.optim.Adam(run["student"].parameters(), lr=lr)
            run["opt"].load_state_dict(saved["opt"])
        gen.set_state(saved["rng"].cpu())
        data_gen.set_state(saved["data_rng"])
        state.update(step=saved["step"], wall=saved["wall_time_s"], history=saved["history"])
    run["teacher"].eval()
    for param in run["teacher"].parameters():
        param.requires_grad_(False)

    def finish_round() -> None:
        """Write the round's student; it becomes the next round's teacher (and start)."""
        steps_r = rounds[run["round"]]
        student = run["student"]
        save_model_file(workdir / student_file(steps_r), half_state_dict(student), {
            "format": STUDENT_FORMAT, "steps": steps_r, "parameterization": "v",
            "config": {k: original_config[k] for k in ddpm.MODEL_KEYS + ddpm.DIFFUSION_KEYS}})
        if run["round"] + 1 < len(rounds):
            teacher = copy.deepcopy(student).eval()
            for param in teacher.parameters():
                param.requires_grad_(False)
            run.update(round=run["round"] + 1, teacher=teacher, teacher_kind="v")
            run["opt"] = torch.optim.Adam(student.parameters(), lr=lr)

    _, info = read_model_file(teacher_path)
    original_config = info["config"]

    def train_step() -> int:
        r = run["round"]
        begin = ends[r] - per_round[r]
        for group in run["opt"].param_groups:  # linear decay to 0 over the round
            group["lr"] = lr * (1.0 - (state["step"] - begin) / per_round[r])
        x0 = data[torch.randint(0, data.shape[0], (batch,), generator=data_gen).to(device)]
        loss = distill_loss(run["student"], run["teacher"], run["teacher_kind"], x0.float(),
                            rounds[r], diffusion, gen)
        run["opt"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run["student"].parameters(), 1.0)
        run["opt"].step()
        value = loss.item()
        check_finite(state["step"] + 1, {"loss": value})
        state["sum"] += value
        state["count"] += 1
        state["step"] += 1
        if state["step"] == ends[r]:
            finish_round()
        return state["step"]

    state["since"] = time.perf_counter()

    def log(step: int) -> dict[str, str]:
        elapsed = time.perf_counter() - state["since"]
        entry = {"step": step, "loss": state["sum"] / max(1, state["count"]),
                 "student_steps": rounds[min(run["round"], len(rounds) - 1)],
                 "images_per_s": state["count"] * batch / max(elapsed, 1e-9)}
        state["history"].append(entry)
        state["sum"], state["count"], state["since"] = 0.0, 0, time.perf_counter()
        return {"loss": f"{entry['loss']:.4f}", "K": str(entry["student_steps"])}

    def save(step: int, seconds: float) -> None:
        check_weights_finite(step, {"student": run["student"]})
        save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT, "round": run["round"],
            "student": run["student"].state_dict(), "opt": run["opt"].state_dict(),
            "teacher": run["teacher"].state_dict() if run["round"] > 0 else None,
            "rng": gen.get_state(), "data_rng": data_gen.get_state(), "step": step,
            "wall_time_s": state["wall"] + seconds, "history": state["history"]})

    end = run_training_loop(train_step, save, log, start=state["step"], total=total,
                            desc="distillation", progress=progress,
                            log_every=int(log_every or max(1, total // 100)),
                            checkpoint_every=checkpoint_every, stop_after=stop_after)
    if end.finished:
        path.unlink(missing_ok=True)
    return {"train_steps": state["step"], "finished": end.finished, "rounds": rounds,
            "round_steps": per_round, "wall_time_s": state["wall"] + end.seconds,
            "parameters": count_parameters(run["student"]), "history": state["history"],
            "device": str(device),
            "images_seen": state["step"] * batch, "final_loss": (
                state["history"][-1]["loss"] if state["history"] else math.nan)}
