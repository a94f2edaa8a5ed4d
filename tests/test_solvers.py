"""Fast samplers: the trailing spacing, and DPM-Solver++ / UniPC (diffusers) on an eps-model
that is exact for Gaussian data, where the answer is known: the all-steps solution of the
discrete model's probability-flow ODE, which the solvers must approach faster than DDIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import needs_data
from torch import nn

from ddgan_core import ddpm
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule
from ddgan_core.solvers import SOLVERS, make_scheduler, solver_sample

pytest.importorskip("diffusers")

T = 1000
SCALE = 0.5  # the data: every pixel N(0, 0.5^2)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2


class ExactGaussianEps(nn.Module):
    """E[eps | x_t] for data N(0, s^2 I): sqrt(1 - abar_t) x_t / (abar_t s^2 + 1 - abar_t);
    counts its calls and records the timesteps it was given."""

    def __init__(self, diffusion: GaussianDiffusion, scale: float = SCALE):
        super().__init__()
        abar = torch.as_tensor(np.asarray(diffusion.alphas_cumprod), dtype=torch.float64)
        self.register_buffer("abar", abar)
        self.scale = scale
        self.calls: list[int] = []

    def forward(self, x, t):
        self.calls.append(int(t[0]))
        abar = self.abar[t].float().reshape(-1, *([1] * (x.ndim - 1)))
        return (1 - abar).sqrt() * x / (abar * self.scale ** 2 + 1 - abar)


@pytest.fixture(scope="module")
def diffusion():
    return GaussianDiffusion(make_beta_schedule("linear", T))


def test_trailing_spacing_ends_at_the_last_step_and_skips_zero():
    assert ddpm.sampling_timesteps(T, 2, "trailing") == [499, 999]
    assert ddpm.sampling_timesteps(T, 3, "trailing") == [332, 666, 999]
    assert ddpm.sampling_timesteps(T, 1, "trailing") == [999]
    assert ddpm.sampling_timesteps(T, T, "trailing") == list(range(T))
    assert ddpm.sampling_timesteps(T, 2) == [0, 999]  # the book's spacing keeps both ends
    with pytest.raises(ValueError, match="spacing"):
        ddpm.sampling_timesteps(T, 2, "leading")


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_diffusers_visits_the_same_trailing_steps(diffusion, solver):
    for k in (2, 3, 5, 10):
        visited = sorted(int(t) for t in make_scheduler(solver, diffusion, k).timesteps)
        assert visited == ddpm.sampling_timesteps(T, k, "trailing")


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_a_solver_spends_one_evaluation_per_step(diffusion, solver):
    model = ExactGaussianEps(diffusion)
    images, nfe = solver_sample(model, diffusion, 30, 10, solver, seed=0, batch_size=20,
                                device="cpu", shape=(4,), progress=False)
    assert nfe == 10 and len(model.calls) == 2 * 10  # two batches of ten steps
    assert images.shape == (30, 4) and bool(torch.isfinite(images).all())


@pytest.fixture(scope="module")
def all_steps(diffusion):
    """DDIM with all T steps from seed 3's noise: the reference solution of the discrete
    model's probability-flow ODE."""
    model = ExactGaussianEps(diffusion)
    return ddpm.ddpm_sample(model, diffusion, 200, T, "ddim", seed=3, batch_size=200,
                            device="cpu", clip=False, progress=False)[0]


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_a_solver_converges_to_the_all_steps_solution_faster_than_ddim(diffusion, all_steps,
                                                                        solver):
    """The same noise, the same ODE: at 20 evaluations a second- or third-order solver is
    more than twice as close to the T-step solution as DDIM with 20 steps, and at 50 it is
    within 0.005 per pixel on average."""
    model = ExactGaussianEps(diffusion)

    def gap(images):
        return float((images - all_steps).abs().mean())

    ddim20 = ddpm.ddpm_sample(model, diffusion, 200, 20, "ddim", seed=3, batch_size=200,
                              device="cpu", clip=False, progress=False, spacing="trailing")[0]
    fast20 = solver_sample(model, diffusion, 200, 20, solver, seed=3, batch_size=200,
                           device="cpu", progress=False)[0]
    fast50 = solver_sample(model, diffusion, 200, 50, solver, seed=3, batch_size=200,
                           device="cpu", progress=False)[0]
    assert gap(fast20) < 0.5 * gap(ddim20)
    assert gap(fast50) < 0.005


def test_ddpm_sample_with_trailing_spacing_feeds_those_steps_to_the_model(diffusion):
    model = ExactGaussianEps(diffusion)
    ddpm.ddpm_sample(model, diffusion, 4, 2, "ddim", seed=0, device="cpu", progress=False,
                     spacing="trailing")
    assert model.calls == [999, 499]


def test_bad_solver_arguments_fail_before_any_work(diffusion):
    with pytest.raises(ValueError, match="unipc"):
        make_scheduler("euler", diffusion, 10)
    with pytest.raises(ValueError, match="steps"):
        make_scheduler("unipc", diffusion, 0)
    with pytest.raises(ValueError, match="spacing"):
        solver_sample(ExactGaussianEps(diffusion), diffusion, 4, 2, "unipc", "leading")


@needs_data
def test_the_command_line_samples_a_ddpm_with_a_solver_and_a_spacing(tmp_path, capsys):
    from ddgan_core import cli

    out = tmp_path / "ddpm"
    assert cli.main(["train", "ddpm", "--profile", "smoke", "--out", str(out)]) == 0
    model = out / ddpm.MODEL_FILE
    for extra, nfe in ((["--sampler", "unipc", "--steps", "3"], 3),
                       (["--sampler", "ddim", "--spacing", "trailing", "--steps", "2"], 2)):
        path = tmp_path / f"{extra[1]}.npz"
        assert cli.main(["sample", "--checkpoint", str(model), "--n", "4", "--out", str(path),
                         *extra]) == 0
        saved = np.load(path)
        assert saved["images"].shape == (4, 28, 28) and int(saved["nfe"]) == nfe
        assert str(saved["sampler"]) == extra[1]
    capsys.readouterr()


def test_a_grid_point_refuses_an_unknown_sampler_or_spacing_before_any_work(tmp_path):
    from ddgan_core import experiments
    from ddgan_core.cache import ResultCache
    from ddgan_core.profiles import get_profile

    cache = ResultCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="sampler='heun' is unknown"):
        experiments.ddpm_grid_point(get_profile("smoke"), "heun", 2, cache)
    with pytest.raises(ValueError, match="spacing='leading' is unknown"):
        experiments.ddpm_grid_point(get_profile("smoke"), "ddim", 2, cache, "leading")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_the_solver_grid_visits_every_pair_at_every_k(monkeypatch):
    from ddgan_core import experiments
    from ddgan_core.profiles import get_profile

    calls = []
    monkeypatch.setattr(experiments, "ddpm_grid_point",
                        lambda profile, sampler, k, cache, spacing: calls.append(
                            (sampler, spacing, k)))
    profile = get_profile("cpu")
    experiments.solver_grid(profile)
    pairs = [tuple(p) for p in profile["solver_samplers"]]
    assert len(calls) == len(pairs) * len(profile["solver_steps"])
    assert {(s, sp) for s, sp, _ in calls} == set(pairs)
    assert [k for *_, k in calls] == sorted(k for *_, k in calls)  # cheapest first
