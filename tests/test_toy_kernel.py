"""The reverse kernel of the toy DDGAN's chapter figure: which step, how multimodal.

In a T = 2 chain the last reverse step (0-based t = 0, x_1 -> x_0 in the book's notation) has a
multimodal exact kernel q(x_0 | x_1) near the ring's centre, its moment-matched Gaussian puts
its mass between the modes, and the first reverse step (t = 1) has a one-blob kernel. The exact
and the model samplers must count steps alike: a "generator" that returns E[x_0 | x_t] gives
model draws whose mean is the exact kernel's mean at the same t.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddgan_core import toy
from ddgan_core.ddgan import make_ddgan_diffusion

N = 2000
LAST, FIRST = 0, 1  # 0-based steps of a T = 2 chain: x_1 -> x_0 (to the data), x_2 -> x_1
NEAR_CENTRE = [(0.0, 0.0), (0.3, -0.2), (-0.4, 0.25)]


@pytest.fixture(scope="module")
def diffusion():
    return make_ddgan_diffusion(2)


def _true(diffusion, x, t, seed=0, n=N):
    gen = torch.Generator().manual_seed(seed)
    return toy.true_reverse_samples("8gaussians", diffusion, torch.tensor(x), t, n, gen)


def _central_share(samples: torch.Tensor) -> float:
    """Share of draws within one (per-coordinate, averaged) sd of their mean: 1 - e^{-1/2}
    = 0.39 for an isotropic Gaussian, about 0 for draws spread over a ring of modes."""
    x = samples.double()
    radius = x.var(0).mean().sqrt()
    return float(((x - x.mean(0)).norm(dim=1) < radius).double().mean())


# --------------------------------------------------------------------------------------------
# kernel_modes
# --------------------------------------------------------------------------------------------


def test_kernel_modes_counts_shares_and_hits():
    centers, std = toy.mixture("8gaussians")
    samples = torch.cat([
        centers[0].repeat(900, 1),
        centers[1].repeat(20, 1),                       # 2%: hit
        centers[2].repeat(5, 1) + torch.tensor([0.0, 2.9 * std], dtype=torch.float64),  # 0.5%
        centers[3].repeat(10, 1) + torch.tensor([3.1 * std, 0.0], dtype=torch.float64),  # far
        torch.zeros(65, 2, dtype=torch.float64),        # the centre of the ring
    ])
    stats = toy.kernel_modes(samples, "8gaussians")
    # modes 0 and 1 are hit, mode 2 gets 0.5% near it (within 3 sd): near, not hit
    assert stats["n_modes"] == 8 and stats["modes"] == 2
    assert stats["near"] == pytest.approx(0.925)
    assert stats["shares"] == pytest.approx([0.9, 0.02, 0.005, 0, 0, 0, 0, 0])
    assert toy.kernel_modes(samples, "8gaussians", min_share=0.005)["modes"] == 3
    assert toy.kernel_modes(samples, "8gaussians", min_share=0.05)["modes"] == 1
    # a GaussianMixture is accepted as well as a name
    assert toy.kernel_modes(samples, toy.mixture_of("8gaussians")) == stats
    grid = toy.kernel_modes(toy.sample_mixture("25gaussians", 2500, torch.Generator()
                                               .manual_seed(0)), "25gaussians")
    assert grid["n_modes"] == 25 and grid["modes"] == 25 and grid["near"] > 0.97


def test_moment_matched_gaussian_has_the_mean_and_full_covariance():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 2, generator=gen, dtype=torch.float64)
    skewed = a @ torch.tensor([[1.0, 0.0], [0.8, 0.5]], dtype=torch.float64).T + 3.0
    fit = toy.moment_matched_gaussian(skewed, 20000, gen)
    assert fit.shape == (20000, 2) and fit.dtype == torch.float32
    fit = fit.double()
    assert torch.allclose(fit.mean(0), skewed.mean(0), atol=0.03)
    assert torch.allclose(torch.cov(fit.T), torch.cov(skewed.T), atol=0.04)  # off-diagonal too
    assert torch.cov(fit.T)[0, 1] > 0.6
    flat = toy.moment_matched_gaussian(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), 5, gen)
    assert torch.equal(flat[:, 1], torch.ones(5))  # a singular covariance is fine


# --------------------------------------------------------------------------------------------
# which step is multimodal
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x", NEAR_CENTRE)
def test_last_step_true_kernel_is_multimodal_near_the_centre(diffusion, x):
    stats = toy.kernel_modes(_true(diffusion, x, LAST))
    assert stats["modes"] == 8, stats
    assert stats["near"] > 0.95, stats
    assert max(stats["shares"]) < 0.3, stats  # spread over the modes, not on one
    assert _central_share(_true(diffusion, x, LAST)) < 0.05  # a hole where a Gaussian peaks


@pytest.mark.parametrize("x", NEAR_CENTRE)
def test_moment_matched_gaussian_of_the_last_step_misses_the_modes(diffusion, x):
    true = _true(diffusion, x, LAST)
    gauss = toy.moment_matched_gaussian(true, N, torch.Generator().manual_seed(1))
    stats = toy.kernel_modes(gauss)
    assert stats["near"] < 0.03 and stats["modes"] == 0, stats
    inside = (gauss.norm(dim=1) < 2.0 - 3 * 0.04).double().mean()  # inside the ring of modes
    assert inside > 0.5


@pytest.mark.parametrize("x", NEAR_CENTRE)
def test_first_step_kernel_of_a_two_step_chain_is_one_blob(diffusion, x):
    true = _true(diffusion, x, FIRST)
    stats = toy.kernel_modes(true)
    assert stats["near"] < 0.03 and stats["modes"] == 0, stats
    gauss = toy.moment_matched_gaussian(true, N, torch.Generator().manual_seed(1))
    # as concentrated around its mean as its Gaussian fit is (0.39), unlike the last step's
    assert _central_share(true) == pytest.approx(_central_share(gauss), abs=0.05)
    assert _central_share(true) == pytest.approx(0.39, abs=0.05)


# --------------------------------------------------------------------------------------------
# the two samplers count steps alike
# --------------------------------------------------------------------------------------------


class PosteriorMeanGenerator(nn.Module):
    """G(x_t, t, z) = E[x_0 | x_t] of the 8-Gaussian data at noise level abar_t, whatever z:
    then q(x_{t-1} | x_t, x_0 = G) has mean E[x_{t-1} | x_t], the exact kernel's mean."""

    def __init__(self, diffusion):
        super().__init__()
        self.abar = diffusion.alphas_cumprod
        self.mix = toy.mixture_of("8gaussians")
        self.seen: list[int] = []

    def forward(self, x_t, t, z):
        assert torch.all(t == t[0])
        self.seen.append(int(t[0]))
        mean, _ = self.mix.posterior_x0(x_t.double().numpy(), float(self.abar[int(t[0])]))
        return torch.from_numpy(mean).to(x_t.dtype)


@pytest.mark.parametrize("t", [LAST, FIRST])
@pytest.mark.parametrize("x", [(1.5, 0.0), (-0.6, 1.1)])
def test_true_and_model_kernels_use_the_same_step(diffusion, t, x):
    G = PosteriorMeanGenerator(diffusion)
    gen = torch.Generator().manual_seed(2)
    model = toy.model_reverse_samples(G, diffusion, torch.tensor(x), t, 4000, 4, gen)
    assert G.seen == [t]
    true = _true(diffusion, x, t, n=4000)
    assert torch.allclose(model.mean(0), true.mean(0), atol=0.08), (model.mean(0), true.mean(0))
    other = _true(diffusion, x, 1 - t, n=4000)  # the test can tell the two steps apart
    assert (other.mean(0) - true.mean(0)).norm() > 0.4
    if t == LAST:  # no noise on the last step: every draw is G's x_0, E[x_0 | x_1]
        assert torch.allclose(model, model[:1].expand_as(model))


def test_a_multimodal_generator_shows_its_modes_at_the_last_step_only(diffusion):
    """A G that returns a random data mode: its x_0 predictions are p_theta's draws at t = 0;
    at t = 1 the posterior around them (x_1 at abar_0 = 0.08) is one blob."""
    centers, _ = toy.mixture("8gaussians")

    class RandomMode(nn.Module):
        def forward(self, x_t, t, z):
            return centers.float()[(z[:, 0] * 1000).long() % 8]

    x = torch.zeros(2)
    gen = torch.Generator().manual_seed(3)
    last = toy.kernel_modes(toy.model_reverse_samples(RandomMode(), diffusion, x, LAST, N, 4, gen))
    first = toy.kernel_modes(toy.model_reverse_samples(RandomMode(), diffusion, x, FIRST, N, 4,
                                                       gen))
    assert last["near"] == 1.0 and last["modes"] == 8
    assert first["near"] < 0.03 and first["modes"] == 0


@pytest.mark.parametrize("t", [-1, 2, True, 0.0])
def test_reverse_samplers_reject_steps_outside_the_chain(diffusion, t):
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="t="):
        toy.true_reverse_samples("8gaussians", diffusion, x, t, 10)
    G = PosteriorMeanGenerator(diffusion)
    with pytest.raises(ValueError, match="t="):
        toy.model_reverse_samples(G, diffusion, x, t, 10, 4)
    assert G.seen == []  # rejected before G is called
