"""The toy study of other reverse kernels: the mixture kernel's likelihood, the sliced
Wasserstein distance, the evaluation's floors and references, and one run end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddgan_core import experiments, toy_kernels
from ddgan_core.cache import ResultCache
from ddgan_core.nets.toy import ToyGenerator
from ddgan_core.profiles import get_profile
from ddgan_core.toy import sample_mixture


def test_the_mixture_kernel_likelihood_is_a_normalised_density():
    torch.manual_seed(0)
    net = toy_kernels.MixtureKernelNet(components=3, hidden=16)
    x_t, t = torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)
    with torch.no_grad():  # exp(-NLL) summed over a fine grid around the means: about 1
        _, means, log_scale = net(x_t, t)
        span = float(means.abs().max() + 12 * log_scale.exp().max())
        axis = torch.linspace(-span, span, 801)
        xx, yy = torch.meshgrid(axis, axis, indexing="ij")
        points = torch.stack([xx.flatten(), yy.flatten()], dim=1)
        density = torch.cat([torch.exp(-net_nll_rows(net, chunk, x_t, t))
                             for chunk in points.split(20_000)])
        # the module's batch NLL is the mean of these rows
        assert float(net.nll(points[:50], x_t.expand(50, 2), t.expand(50))) == pytest.approx(
            float(net_nll_rows(net, points[:50], x_t, t).mean()), rel=1e-5)
    cell = float((axis[1] - axis[0]) ** 2)
    assert float(density.sum()) * cell == pytest.approx(1.0, abs=0.02)


def net_nll_rows(net, x_prev, x_t, t):
    """Per-row NLL (the module's nll averages over the batch)."""
    logits, means, log_scale = net(x_t.expand(x_prev.shape[0], 2), t.expand(x_prev.shape[0]))
    sq = (x_prev.unsqueeze(1) - means).pow(2).sum(-1)
    log_normal = -0.5 * sq * torch.exp(-2 * log_scale) - 2 * log_scale - math.log(2 * math.pi)
    return -torch.logsumexp(torch.log_softmax(logits, 1) + log_normal, dim=1)


def test_the_mixture_kernel_samples_its_one_component():
    torch.manual_seed(0)
    net = toy_kernels.MixtureKernelNet(components=1, hidden=16)
    x_t = torch.zeros(4000, 2)
    t = torch.zeros(4000, dtype=torch.long)
    draws = net.sample(x_t, t, torch.Generator().manual_seed(1))
    _, means, log_scale = net(x_t[:1], t[:1])
    assert torch.allclose(draws.mean(0), means[0, 0], atol=0.05 * float(log_scale.exp()) + 1e-3)
    assert float(draws.std(0).mean()) == pytest.approx(float(log_scale.exp()), rel=0.05)


def test_sliced_wasserstein_of_a_shift_is_the_shift_projected():
    a = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([3.0, 0.0])
    # E over unit directions u of (u . shift)^2 = |shift|^2 / 2 in two dimensions
    distance = toy_kernels.sliced_wasserstein(a + shift, a, 4096,
                                              torch.Generator().manual_seed(1))
    assert distance == pytest.approx(3.0 / math.sqrt(2), rel=0.03)
    assert toy_kernels.sliced_wasserstein(a, a, 64) == 0.0
    with pytest.raises(ValueError):
        toy_kernels.sliced_wasserstein(a, a[:10])


def test_the_true_kernel_scores_at_its_floor_and_a_point_mass_does_not(monkeypatch):
    name, T = "8gaussians", 2

    def true_kernel(x_t, t, gen):
        from ddgan_core.ddgan import make_ddgan_diffusion
        from ddgan_core.toy import true_reverse_samples
        d = make_ddgan_diffusion(T)
        return torch.cat([true_reverse_samples(name, d, x, t, 1, gen) for x in x_t])

    def collapsed(x_t, t, gen):
        return torch.zeros_like(x_t)

    for key, value in {"n_eval": 400, "kernel_points": 2, "kernel_draws": 200,
                       "projections": 64}.items():
        monkeypatch.setitem(toy_kernels.TOY_SETTINGS, key, value)
    good = toy_kernels.evaluate_kernel(true_kernel, name, T, seed=0)
    bad = toy_kernels.evaluate_kernel(collapsed, name, T, seed=0)
    assert good["modes"] == 8 and bad["modes"] == 0
    assert good["sw_data_floor"] == bad["sw_data_floor"]  # the same references for every method
    assert good["kernel_error_floor"] == bad["kernel_error_floor"]
    assert good["sw_data"] < 2 * good["sw_data_floor"] < bad["sw_data"]
    assert (good["kernel_error_mean"] < 2 * good["kernel_error_floor_mean"]
            < bad["kernel_error_mean"])


def test_a_toy_generator_without_latent_has_no_mapping():
    G = ToyGenerator(dim=2, z_dim=0, hidden=16)
    assert G.mapping is None
    x = torch.randn(3, 2)
    t = torch.zeros(3, dtype=torch.long)
    assert torch.equal(G(x, t, torch.randn(3, 0)), G(x, t, torch.zeros(3, 0)))


def test_an_unknown_method_or_mixture_is_refused():
    with pytest.raises(ValueError, match="gaussian"):
        toy_kernels.train_toy_kernel("diffusion", "8gaussians", 4, 1, 0)
    with pytest.raises(ValueError, match="25gaussians"):
        experiments.toy_kernel_run(get_profile("smoke"), "ns", "moons", 0)


@pytest.mark.parametrize("method", ["mixture", "gaussian", "no-latent"])
def test_a_toy_run_is_cached_with_its_draws(tmp_path, method):
    cache = ResultCache(tmp_path)
    result = experiments.toy_kernel_run(get_profile("smoke"), method, "8gaussians", 0, cache)
    assert result.computed and result.metrics["finite"]
    assert len(result.metrics["kernel_error"]) == get_profile("smoke")["toy_study_T"]
    with np.load(result.file("draws.npz")) as draws:
        assert draws["chain"].shape == (toy_kernels.TOY_SETTINGS["n_eval"], 2)
        assert draws["kernel"].shape == (1000, 2)
    again = experiments.toy_kernel_run(get_profile("smoke"), method, "8gaussians", 0, cache)
    assert not again.computed


def test_the_data_of_the_study_is_the_mixture():
    x = sample_mixture("25gaussians", 500, torch.Generator().manual_seed(0))
    assert x.shape == (500, 2)
