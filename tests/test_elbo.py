"""Tests of ddgan_core.elbo: eq. (6) against the exact KL, the mixture posterior against Monte
Carlo, the ELBO below log p with a gap that shrinks with T, and the true reverse kernel on a grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddgan_core import elbo
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule

# --------------------------------------------------------------------------------------------
# eqs. (5)-(6)
# --------------------------------------------------------------------------------------------


def test_exact_kl_equals_weighted_mse_and_the_seed_weight_is_beta_times_smaller():
    check = elbo.kl_identity_check(batch=8, dim=4, steps=6, seed=1)
    assert check["n_rows"] == 8 * 2 * (6 + 6 + 6 + 3)  # 4 schedules x 2 variances; T=4 has 3
    assert check["max_rel_err"] < 1e-9
    np.testing.assert_allclose(check["ratio_seed"], check["beta"], rtol=1e-9)


@pytest.mark.parametrize("name", ["linear", "cosine", "vp"])
def test_weight_formulas(name):
    d = GaussianDiffusion(make_beta_schedule(name, 200))
    lam = elbo.elbo_weights(d)
    assert np.isnan(lam[0])
    k = np.arange(1, 200)
    simplified = d.betas[k] / (2 * d.alphas[k] * (1 - d.alphas_cumprod_prev[k]))
    np.testing.assert_allclose(lam[1:], simplified, rtol=1e-10)
    np.testing.assert_allclose(elbo.seed_weights(d)[1:], d.betas[1:] * lam[1:], rtol=1e-10)
    # sigma^2 = beta_t ("fixed large"): lambda scales with beta~ / beta
    large = elbo.elbo_weights(d, sigma="beta")
    np.testing.assert_allclose(large[1:], lam[1:] * d.posterior_variance[1:] / d.betas[1:],
                               rtol=1e-10)


def test_gaussian_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(5, generator=gen, dtype=torch.float64), torch.zeros(5,
                                                                            dtype=torch.float64)
    v1, v2 = torch.rand(5, generator=gen, dtype=torch.float64) + 0.1, torch.full(
        (5,), 0.7, dtype=torch.float64)
    ours = elbo.gaussian_kl(m1, v1, m2, v2)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, v1.sqrt()),
                                            torch.distributions.Normal(m2, v2.sqrt()))
    torch.testing.assert_close(ours, ref)
    np.testing.assert_allclose(elbo.gaussian_kl(m1.numpy(), v1.numpy(), 0.0, 0.7), ref.numpy())


def test_kl_at_the_first_step_is_refused():
    d = GaussianDiffusion(make_beta_schedule("linear", 50))
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="t must be >= 1"):
        elbo.posterior_kl_exact(d, x, x, x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sigma must be"):
        elbo.elbo_weights(d, sigma="learned")


# --------------------------------------------------------------------------------------------
# Gaussian mixtures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mixture", [elbo.three_gaussians_1d(), elbo.eight_gaussians()],
                         ids=["1d", "ring"])
@pytest.mark.parametrize("abar", [0.9, 0.3, 0.02])
def test_posterior_mean_and_variance_match_monte_carlo(mixture, abar):
    """E[x_0 | x_t] and Var[x_0 | x_t] against self-normalised importance sampling."""
    rng = np.random.default_rng(0)
    x0 = mixture.sample(200_000, rng)
    xts = mixture.noisy(abar).sample(3, rng)
    mean, var = mixture.posterior_x0(xts, abar)
    for xt, m, v in zip(xts, mean, var):
        logw = -0.5 * ((xt - math.sqrt(abar) * x0) ** 2).sum(1) / (1 - abar)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        mc_mean = w @ x0
        mc_var = w @ (x0 - mc_mean) ** 2
        ess = 1.0 / (w**2).sum()
        tol = 6 * np.sqrt(mc_var / ess) + 1e-3
        np.testing.assert_allclose(m, mc_mean, atol=tol.max())
        np.testing.assert_allclose(v, mc_var, rtol=0.1, atol=1e-3)


def test_noisy_marginal_density_matches_monte_carlo():
    mixture, abar = elbo.eight_gaussians(), 0.4
    rng = np.random.default_rng(1)
    x0 = mixture.sample(400_000, rng)
    points = np.array([[0.0, 0.0], [0.5, 0.2], [-0.3, 0.9]])
    for x in points:
        sq = ((x - math.sqrt(abar) * x0) ** 2).sum(1)
        mc = np.mean(np.exp(-0.5 * sq / (1 - abar)) / (2 * math.pi * (1 - abar)))
        exact = np.exp(mixture.noisy(abar).log_prob(x[None]))[0]
        assert abs(mc - exact) < 0.01 * exact


def test_mixture_rejects_inconsistent_parameters():
    with pytest.raises(ValueError, match="must agree"):
        elbo.GaussianMixture(np.array([0.5, 0.5]), np.zeros((3, 1)), np.ones(2))
    with pytest.raises(ValueError, match="sum to 1"):
        elbo.GaussianMixture(np.array([0.5, 0.6]), np.zeros((2, 1)), np.ones(2))


# --------------------------------------------------------------------------------------------
# eq. (4) on the 1-D toy
# --------------------------------------------------------------------------------------------


def test_elbo_is_below_log_p_and_the_gap_shrinks_with_T():
    mixture = elbo.three_gaussians_1d()
    res = elbo.elbo_gap_sweep(mixture, [2, 16, 64, 256], n=2_000, seed=0)
    gap, gap_se = res["gap"], res["gap_se"]
    # positive beyond Monte Carlo error, except at T = 256 where it is within error of 0
    assert np.all(gap[:3] > 3 * gap_se[:3]) and gap[3] > -3 * gap_se[3], (gap, gap_se)
    diffs = -np.diff(gap)
    assert np.all(diffs > 3 * np.hypot(gap_se[1:], gap_se[:-1])), (gap, gap_se)
    assert gap[-1] < 0.02 < 0.5 < gap[0]
    assert res["factorisation_err"] < 1e-8
    assert np.all(res["L_T"] < 1e-4)
    # E[ELBO] <= E[log q(x_0)] (by quadrature), resolved where the gap exceeds the ELBO's own
    # Monte Carlo error
    assert np.all(res["elbo"][:2] + 3 * res["elbo_se"][:2] < elbo.expected_log_prob_1d(mixture))


def test_one_step_gap_is_the_kl_from_the_data_to_its_gaussian_fit():
    """With T = 1 the model is a single Gaussian decoder from (almost) pure noise."""
    mixture = elbo.three_gaussians_1d()
    res = elbo.elbo_gap_sweep(mixture, [1], n=4_000, seed=3)
    mean = mixture.weights @ mixture.means[:, 0]
    var = mixture.weights @ (mixture.stds**2 + mixture.means[:, 0] ** 2) - mean**2
    gauss_cross = -0.5 * (1 + math.log(2 * math.pi * var))  # E_q[log N(x; mean, var)]
    kl = elbo.expected_log_prob_1d(mixture) - gauss_cross
    assert abs(res["gap"][0] - kl) < 4 * res["gap_se"][0] + 2e-3


def test_matched_variance_beats_the_fixed_one():
    mixture = elbo.three_gaussians_1d()
    fixed = elbo.elbo_gap_sweep(mixture, [64], n=1_000, seed=0, variance="posterior")
    best = elbo.elbo_gap_sweep(mixture, [64], n=1_000, seed=0, variance="matched")
    assert fixed["gap"][0] > best["gap"][0] + 0.2
    # the same trajectories: the per-step excess of the fixed variance is largest at the start
    excess = fixed["L_steps"][0] - best["L_steps"][0]
    assert excess[0] > 0.1 and excess[:5].sum() > 0.5 * excess.sum()
    with pytest.raises(ValueError, match="variance must be"):
        elbo.elbo_gap_sweep(mixture, [4], n=10, variance="learned")


# --------------------------------------------------------------------------------------------
# sec. 2.2: the reverse kernel on a grid
# --------------------------------------------------------------------------------------------


def test_vp_step_levels_share_the_noise_level():
    levels = [elbo.vp_step_levels(T) for T in (4, 16, 1024)]
    assert [t for t, _, _ in levels] == [1, 4, 256]
    np.testing.assert_allclose([a for _, a, _ in levels], levels[0][1], rtol=1e-12)
    assert levels[0][2] == 1.0  # T = 4: the step back to the data
    with pytest.raises(ValueError, match="integer step"):
        elbo.vp_step_levels(6)


def test_kernel_of_a_single_gaussian_is_the_exact_gaussian():
    mixture = elbo.GaussianMixture(np.array([1.0]), np.array([[0.3, -0.2]]), np.array([0.2]))
    abar_t, abar_prev = 0.5, 0.8
    x_t = np.array([0.4, 0.1])
    grid = elbo.reverse_kernel_grid(mixture, x_t, abar_t, abar_prev, n_grid=61)
    s = elbo.kernel_summary(grid)
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    v_prev = abar_prev * 0.04 + 1 - abar_prev
    precision = alpha / beta + 1 / v_prev
    mean = (math.sqrt(alpha) * x_t / beta + math.sqrt(abar_prev) * mixture.means[0] / v_prev)
    np.testing.assert_allclose(s["mean"], mean / precision, atol=1e-9)
    np.testing.assert_allclose(s["cov"], np.eye(2) / precision, atol=1e-9)
    assert abs(s["mass"] - 1) < 1e-8 and s["kl_gauss"] < 1e-8 and s["modes"] == 1


def test_ring_kernel_integrates_to_one_and_is_multimodal_only_for_large_steps():
    ring = elbo.eight_gaussians()
    rng = np.random.default_rng(0)
    _, abar_t, _ = elbo.vp_step_levels(4)
    points = np.vstack([[0.0, 0.0], ring.noisy(abar_t).sample(2, rng)])
    summaries = {}
    for T in (4, 1024):
        _, a_t, a_prev = elbo.vp_step_levels(T)
        summaries[T] = [elbo.kernel_summary(elbo.reverse_kernel_grid(ring, x, a_t, a_prev, 41))
                        for x in points]
    for s in summaries[4] + summaries[1024]:
        assert abs(s["mass"] - 1) < 1e-6
    assert all(s["modes"] >= 4 for s in summaries[4])
    assert summaries[4][0]["modes"] == 8  # from the centre all eight modes are in reach
    assert all(s["kl_gauss"] > 0.5 for s in summaries[4])
    assert all(s["modes"] == 1 and s["kl_gauss"] < 1e-6 for s in summaries[1024])


def test_kernel_sweep_is_deterministic_and_monotone():
    ring = elbo.eight_gaussians()
    a = elbo.kernel_sweep(ring, [4, 16, 64], n_xt=3, n_grid=41, seed=2)
    b = elbo.kernel_sweep(ring, [4, 16, 64], n_xt=3, n_grid=41, seed=2)
    np.testing.assert_array_equal(a["kl_mean"], b["kl_mean"])
    assert np.all(np.diff(a["kl_mean"]) < 0) and np.all(np.diff(a["beta"]) < 0)
    assert a["multimodal"][0] == 1.0 and a["multimodal"][-1] == 0.0


def test_bad_arguments_are_named():
    ring = elbo.eight_gaussians()
    with pytest.raises(ValueError, match="abar_t < abar_prev"):
        elbo.reverse_kernel_grid(ring, [0, 0], 0.5, 0.4)
    with pytest.raises(ValueError, match="2-D mixture"):
        elbo.reverse_kernel_grid(elbo.three_gaussians_1d(), [0, 0], 0.4, 0.5)

def test_the_chapters_sizes_are_profile_keys():
    """Chapter 2's Monte Carlo and grid sizes live in the profiles like every other setting."""
    from ddgan_core.profiles import get_profile

    with pytest.raises(ValueError, match="unknown parameter name.*'elbo_nope'"):
        get_profile("smoke", elbo_nope=3)
    with pytest.raises(ValueError, match="elbo_samples=0.5.*expected int"):
        get_profile("smoke", elbo_samples=0.5)
    with pytest.raises(ValueError, match="elbo_samples=0: must be >= 1"):
        get_profile("smoke", elbo_samples=0)
    assert get_profile("cpu", elbo_samples=None) == get_profile("cpu")
    assert get_profile("full")["elbo_samples"] > get_profile("cpu")["elbo_samples"]
