"""Progressive distillation (ddgan_core.distillation) and the frontier's entry checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ddgan_core import distillation as dist
from ddgan_core import experiments
from ddgan_core.budget import images_per_step
from ddgan_core.checkpoint import CheckpointError, half_state_dict, save_model_file
from ddgan_core.data import model_to_uint8
from ddgan_core.ddpm import DIFFUSION_KEYS, MODEL_FORMAT, MODEL_KEYS, make_model
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule
from ddgan_core.profiles import get_profile

T = 1000
DIFFUSION = GaussianDiffusion(make_beta_schedule("linear", T))
TARGET = torch.linspace(-0.8, 0.8, 28 * 28).view(1, 1, 28, 28)


class PointMassNetwork(nn.Module):
    """The exact denoiser of data that is one image (TARGET): eps = (z - alpha x) / sigma,
    returned as ``kind`` = eps or v. Every DDIM step of it lands on the forward process of
    TARGET, so the distillation target must be TARGET itself."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, z, t):
        alpha, sigma = dist._alpha_sigma(DIFFUSION, t)
        eps = (z - alpha * TARGET) / sigma
        return eps if self.kind == "eps" else alpha * eps - sigma * TARGET


def test_grids_nest_and_end_at_the_chain_ends():
    for steps in (1, 2, 4, 8, 16):
        assert dist.grid_timestep(0, steps, T) == -1
        assert dist.grid_timestep(steps, steps, T) == T - 1
        assert all(dist.grid_timestep(i, steps, T) == dist.grid_timestep(2 * i, 2 * steps, T)
                   for i in range(steps + 1))
    assert [dist.grid_timestep(i, 4, T) for i in range(5)] == [-1, 249, 499, 749, 999]


def test_rounds_halve_to_one_and_refuse_other_counts():
    assert dist.distill_rounds(8) == [8, 4, 2, 1]
    assert dist.distill_rounds(1) == [1]
    for bad in (0, 6, -4):
        with pytest.raises(ValueError, match="power of two"):
            dist.distill_rounds(bad)


@pytest.mark.parametrize("kind", ["eps", "v"])
@pytest.mark.parametrize("steps", [1, 2, 8])
def test_target_of_an_exact_teacher_is_the_data(kind, steps):
    gen = torch.Generator().manual_seed(steps)
    i = torch.randint(1, steps + 1, (6,), generator=gen)
    t = dist.grid_timestep(i, steps, T)
    alpha, sigma = dist._alpha_sigma(DIFFUSION, t)
    z = alpha * TARGET + sigma * torch.randn((6, 1, 28, 28), generator=gen)
    target = dist.distill_target(PointMassNetwork(kind), kind, z, t,
                                 dist.grid_timestep(2 * i - 1, 2 * steps, T),
                                 dist.grid_timestep(i - 1, steps, T), DIFFUSION)
    assert torch.allclose(target, TARGET.expand_as(target), atol=1e-4)


def test_loss_is_zero_for_an_exact_student_and_positive_otherwise():
    x0 = TARGET.repeat(4, 1, 1, 1)
    exact = dist.distill_loss(PointMassNetwork("v"), PointMassNetwork("eps"), "eps", x0, 4,
                              DIFFUSION, torch.Generator().manual_seed(0))
    wrong = dist.distill_loss(PointMassNetwork("eps"), PointMassNetwork("eps"), "eps", x0, 4,
                              DIFFUSION, torch.Generator().manual_seed(0))
    assert exact.item() < 1e-8 and wrong.item() > 1e-2


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_sampler_of_an_exact_student_returns_the_data(steps):
    images, nfe = dist.distill_sample(PointMassNetwork("v"), DIFFUSION, 3, steps, seed=1,
                                      batch_size=2, device="cpu")
    assert nfe == steps and images.shape == (3, 1, 28, 28)
    assert torch.allclose(images, TARGET.expand_as(images), atol=1e-5)


def _teacher_file(tmp_path):
    config = {"ddpm_channels": [8, 8], "ddpm_res_blocks": 1, "ddpm_attention": [],
              "ddpm_dropout": 0.0, "ddpm_schedule": "linear", "ddpm_timesteps": 50}
    torch.manual_seed(0)
    path = tmp_path / "teacher.safetensors"
    save_model_file(path, half_state_dict(make_model(config)),
                    {"format": MODEL_FORMAT,
                     "config": {k: config[k] for k in MODEL_KEYS + DIFFUSION_KEYS}})
    return path


DISTILL = {"distill_start_steps": 2, "distill_train_steps": 4, "distill_batch_size": 4,
           "distill_lr": 1e-3, "seed": 3}


def test_resumed_distillation_equals_a_straight_run(tmp_path):
    teacher = _teacher_file(tmp_path)
    data = torch.rand(32, 1, 28, 28) * 2 - 1
    straight = dist.train_distillation(DISTILL, teacher, tmp_path / "a", "cpu", data)
    assert straight["finished"] and straight["rounds"] == [2, 1]
    assert straight["round_steps"] == [2, 2] and not (tmp_path / "a/checkpoint.pt").exists()
    for stop in (1, 2, 3):  # mid first round, at the round's end, mid second round
        dist.train_distillation(DISTILL, teacher, tmp_path / "b", "cpu", data, stop_after=stop)
    resumed = dist.train_distillation(DISTILL, teacher, tmp_path / "b", "cpu", data)
    assert resumed["finished"] and resumed["train_steps"] == 4
    for steps in (2, 1):
        name = dist.student_file(steps)
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    student, diffusion, steps = dist.load_student(tmp_path / "a" / dist.student_file(1), "cpu")
    assert steps == 1 and diffusion.num_timesteps == 50
    images, _ = dist.distill_sample(student, diffusion, 2, 1, device="cpu")
    assert images.shape == (2, 1, 28, 28) and images.abs().max() <= 1


def test_sample_command_draws_from_a_student_file_and_checks_its_steps(tmp_path, capsys):
    from ddgan_core import cli

    dist.train_distillation(DISTILL, _teacher_file(tmp_path), tmp_path / "d", "cpu",
                            torch.rand(32, 1, 28, 28) * 2 - 1)
    student = tmp_path / "d" / dist.student_file(2)
    out = tmp_path / "s.npz"
    assert cli.main(["sample", "--checkpoint", str(student), "--n", "3", "--seed", "1",
                     "--device", "cpu", "--out", str(out)]) == 0
    assert "3 images, NFE 2" in capsys.readouterr().out
    saved = np.load(out)
    assert saved["images"].shape == (3, 28, 28) and saved["images"].dtype == np.uint8
    assert str(saved["model"]) == "student" and int(saved["steps"]) == int(saved["nfe"]) == 2
    model, diffusion, _ = dist.load_student(student, "cpu")
    expected, _ = dist.distill_sample(model, diffusion, 3, 2, seed=1, device="cpu")
    assert np.array_equal(saved["images"], model_to_uint8(expected).numpy())
    for argv, words in ((["--steps", "4"], "distilled for exactly 2 steps"),
                        (["--sampler", "ddim"], "a distilled student samples its own")):
        assert cli.main(["sample", "--checkpoint", str(student), "--n", "1", "--out",
                         str(tmp_path / "x.npz"), *argv]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_load_student_refuses_a_ddpm_model_file(tmp_path):
    with pytest.raises(CheckpointError, match="not a distilled-student model file"):
        dist.load_student(_teacher_file(tmp_path))


def test_budget_counts_a_distillation_batch_per_step():
    assert images_per_step({"distill_batch_size": 32, "ddpm_batch_size": 128},
                           "distill_train_steps") == 32


def test_frontier_points_refuse_bad_input_before_any_work(tmp_path):
    profile = get_profile("smoke")
    cache = experiments.ResultCache(tmp_path)
    with pytest.raises(ValueError, match="method='dpm'"):
        experiments.frontier_point(profile, "dpm", cache=cache)
    with pytest.raises(ValueError, match="sampler='heun'"):
        experiments.frontier_point(profile, "ddpm", "heun", 4, cache=cache)
    with pytest.raises(ValueError, match=r"students have \[2, 1\] steps"):
        experiments.frontier_point(profile, "student", steps=4, cache=cache)
    assert not any(tmp_path.iterdir())  # nothing was trained or written


def test_pareto_front_keeps_exactly_the_undominated_points():
    from ddgan_core.frontier import pareto_front

    points = [(1, 60.0), (2, 40.0), (2, 45.0), (4, 40.0), (4, 20.0), (8, 25.0), (10, 5.0),
              (10, 5.0), (0.5, 70.0)]
    assert pareto_front(points) == [8, 0, 1, 4, 6]
    dominated = set(range(len(points))) - set(pareto_front(points))
    for i in dominated:  # each dropped point is beaten or equalled on both axes by a kept one
        assert any(points[j][0] <= points[i][0] and points[j][1] <= points[i][1]
                   for j in pareto_front(points))
    assert pareto_front([]) == []


def test_best_within_an_nfe_budget():
    from ddgan_core.frontier import best_within

    rows = [{"label": "a", "nfe": 1, "fid": 60.0, "ms_per_image": 5.0},
            {"label": "b", "nfe": 4, "fid": 30.0, "ms_per_image": 40.0},
            {"label": "c", "nfe": 4, "fid": 30.0, "ms_per_image": 20.0},
            {"label": "d", "nfe": 10, "fid": 10.0, "ms_per_image": 90.0}]
    assert best_within(rows, 1)["label"] == "a"
    assert best_within(rows, 5)["label"] == "c"  # tie on FID: the faster
    assert best_within(rows, 100)["label"] == "d"
    assert best_within(rows, 0) is None
