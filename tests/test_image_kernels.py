"""The non-adversarial image kernels of chapter 6 (ddgan_core.image_kernels)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import needs_data

from ddgan_core import image_kernels as ik
from ddgan_core.ddgan import make_ddgan_diffusion

CONFIG = {"image_kernel": "mixture", "image_kernel_components": 3, "ddgan_channels": [8, 16, 16],
          "ddgan_res_blocks": 1, "seed": 0, "ddgan_train_steps": 4, "ddgan_batch_size": 8,
          "ddgan_lr_g": 1e-3, "ddgan_ema_decay": 0.9, "ddgan_timesteps": 4}


class FixedMixture(torch.nn.Module):
    """Returns given (x0 [K, C, H, W], logits [K], log-scales [K]) for every row."""

    def __init__(self, x0, logits, log_scale):
        super().__init__()
        self.x0, self.logits, self.log_scale = x0, logits, log_scale

    def forward(self, x_t, t):
        b = x_t.shape[0]
        return (self.x0.expand(b, *self.x0.shape), self.logits.expand(b, -1),
                self.log_scale.expand(b, -1))


def _gaussian_nll_per_pixel(x, mean, var):
    """-log N(x; mean, var I) / d by the textbook formula, in float64."""
    x, mean = x.double().flatten(1), mean.double().flatten(1)
    d = x.shape[1]
    return (0.5 * ((x - mean) ** 2).sum(1) / var + 0.5 * d * math.log(2 * math.pi * var)) / d


def test_mixture_of_identical_components_is_the_posterior_gaussian():
    diffusion = make_ddgan_diffusion(4)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 28, 28, generator=gen) * 2 - 1
    x_t = torch.randn(5, 1, 28, 28, generator=gen)
    x_prev = torch.randn(5, 1, 28, 28, generator=gen)
    t = torch.tensor([1, 2, 3, 1, 2])
    model = FixedMixture(x0.expand(3, -1, -1, -1), torch.tensor([0.3, -1.0, 2.0]),
                         torch.full((3,), 0.5))
    nll = ik.mixture_nll(model, diffusion, x_prev, x_t, t)
    mean, var, _ = diffusion.q_posterior_mean_variance(x0.expand(5, -1, -1, -1), x_t, t)
    expected = torch.stack([
        _gaussian_nll_per_pixel(x_prev[i:i + 1], mean[i:i + 1], var[i, 0, 0, 0].item()
                                * math.exp(0.5)) for i in range(5)]).mean()
    assert nll.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mixture_nll_weighs_components_by_their_weights():
    """Two components, the data at the first one's mean: the likelihood is the weighted sum."""
    diffusion = make_ddgan_diffusion(2)
    gen = torch.Generator().manual_seed(1)
    a, b = (torch.rand(1, 28, 28, generator=gen) * 2 - 1 for _ in range(2))
    x_t = torch.randn(1, 1, 28, 28, generator=gen)
    t = torch.tensor([1])
    logits = torch.tensor([0.0, math.log(3.0)])  # weights 1/4, 3/4
    model = FixedMixture(torch.stack([a, b]), logits, torch.zeros(2))
    mean_a, var, _ = diffusion.q_posterior_mean_variance(a[None], x_t, t)
    mean_b, _, _ = diffusion.q_posterior_mean_variance(b[None], x_t, t)
    v = var[0, 0, 0, 0].item()
    d = 28 * 28
    log_pa = -_gaussian_nll_per_pixel(mean_a, mean_a, v) * d
    log_pb = -_gaussian_nll_per_pixel(mean_a, mean_b, v) * d
    expected = -torch.logsumexp(torch.stack([log_pa + math.log(0.25), log_pb + math.log(0.75)]),
                                0) / d
    assert ik.mixture_nll(model, diffusion, mean_a, x_t, t).item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_mixture_step_draws_components_by_weight_and_ends_on_their_x0():
    diffusion = make_ddgan_diffusion(4)
    x0 = torch.stack([torch.full((1, 28, 28), -0.5), torch.full((1, 28, 28), 0.5)])
    model = FixedMixture(x0, torch.tensor([0.0, math.log(3.0)]), torch.zeros(2))
    x_t = torch.zeros(4000, 1, 28, 28)
    out = ik.kernel_step(model, "mixture", diffusion, x_t, torch.zeros(4000, dtype=torch.long),
                         torch.Generator().manual_seed(0))
    # at t = 0 the step returns the drawn component's x0 exactly, in proportion 1 : 3
    values = out[:, 0, 0, 0]
    assert set(values.unique().tolist()) == {-0.5, 0.5}
    assert (values > 0).float().mean().item() == pytest.approx(0.75, abs=0.03)


def test_x0_step_is_the_posterior_around_the_prediction():
    diffusion = make_ddgan_diffusion(4)
    torch.manual_seed(0)
    net = ik.make_kernel_network({**CONFIG, "image_kernel": "gaussian-x0"})
    torch.nn.init.normal_(net.net.out.weight, std=0.05)
    x_t = torch.randn(3, 1, 28, 28)
    t = torch.tensor([3, 1, 0])
    out = ik.kernel_step(net, "gaussian-x0", diffusion, x_t, t, torch.Generator().manual_seed(5))
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        x0 = net(x_t, t)
        expected = diffusion.p_sample_from_x0(x0, x_t, t, noise=noise, clip=False)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out[2], x0[2])  # the last step returns the prediction
    assert x0.abs().max() < 1  # tanh-bounded


def test_gaussian_step_is_ddpms_ancestral_step():
    diffusion = make_ddgan_diffusion(4)
    torch.manual_seed(0)
    net = ik.make_kernel_network({**CONFIG, "image_kernel": "gaussian"})
    torch.nn.init.normal_(net.out.weight, std=0.05)
    x_t = torch.randn(3, 1, 28, 28)
    t = torch.tensor([3, 2, 1])
    out = ik.kernel_step(net, "gaussian", diffusion, x_t, t, torch.Generator().manual_seed(5))
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = diffusion.p_sample_from_eps(net(x_t, t), x_t, t, noise=noise, clip=True)
    torch.testing.assert_close(out, expected)


def test_unknown_kernel_is_refused_before_any_work():
    with pytest.raises(ValueError, match="image_kernel='flow' is unknown"):
        ik.make_kernel_network({**CONFIG, "image_kernel": "flow"})


@pytest.mark.parametrize("kernel", ik.IMAGE_KERNELS)
def test_training_resumes_to_the_same_weights(tmp_path, kernel):
    data = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    config = {**CONFIG, "image_kernel": kernel}
    whole, metrics = ik.train_image_kernel(config, tmp_path / "a", "cpu", data, log_every=1)
    ik.train_image_kernel(config, tmp_path / "b", "cpu", data, log_every=1, stop_after=2)
    resumed, again = ik.train_image_kernel(config, tmp_path / "b", "cpu", data, log_every=1)
    assert metrics["train_steps"] == again["train_steps"] == 4
    assert [h["loss"] for h in again["history"]] == pytest.approx(
        [h["loss"] for h in metrics["history"]], rel=1e-5)
    for p, q in zip(whole.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q)
    samples, nfe = ik.kernel_sample(whole, kernel, make_ddgan_diffusion(4), 5, batch_size=3,
                                    device="cpu")
    assert samples.shape == (5, 1, 28, 28) and nfe == 4
    assert samples.abs().max() <= 1.0


# -- the cached experiments of chapter 6's FashionMNIST half ----------------------------------

def test_the_methods_are_every_loss_no_latent_and_both_kernels():
    from ddgan_core import experiments
    from ddgan_core.profiles import get_profile

    profile = get_profile("cpu")
    methods = experiments.kernel_image_points(profile)
    losses = [o["ddgan_loss"] for _, o, name in methods if "ddgan_loss" in o]
    assert losses == profile["kernel_study_losses"]
    wgan = next(o for _, o, _ in methods if o.get("ddgan_loss") == "wgan-gp")
    assert wgan["ddgan_r1_gamma"] == 0.0  # the critic's gradient penalty replaces R1
    assert ("DDGAN, no latent", {"ddgan_nz": 0}, "ddgan_sweep_point") in methods
    assert [o["image_kernel"] for _, o, n in methods if n == "image_kernel_point"] == [
        "gaussian", "gaussian-x0", "mixture"]


def test_the_kernel_key_holds_its_components_only_for_the_mixture():
    from ddgan_core import experiments
    from ddgan_core.profiles import get_profile

    gaussian = experiments._image_kernel_config(get_profile("cpu", image_kernel="gaussian"))
    mixture = experiments._image_kernel_config(get_profile("cpu", image_kernel="mixture"))
    assert "image_kernel_components" not in gaussian
    assert mixture["image_kernel_components"] == 10
    assert gaussian["ddgan_train_steps"] == get_profile("cpu")["sweep_steps"]
    assert gaussian["n"] == mixture["n"] == get_profile("cpu")["sweep_samples"]


@needs_data
def test_a_kernel_point_trains_scores_and_is_read_back(tmp_path):
    from ddgan_core import experiments
    from ddgan_core.cache import ResultCache
    from ddgan_core.profiles import get_profile

    cache = ResultCache(tmp_path / "cache")
    profile = get_profile("smoke", image_kernel="mixture")
    result = experiments.image_kernel_point(profile, cache)
    row = experiments.sweep_point_summary(result)
    assert row["gap_median"] is None  # no discriminator
    assert row["fid_lo"] <= row["fid"] <= row["fid_hi"]
    assert row["generator_parameters"] == result.metrics["train"]["parameters"]
    assert "checkpoint.pt" not in {p.name for p in result.path.iterdir()}
    again = experiments.image_kernel_point(profile, cache)
    assert not again.computed and again.key == result.key


def test_a_bad_kernel_name_fails_in_the_profile():
    from ddgan_core.profiles import get_profile

    with pytest.raises(ValueError, match="allowed values are"):
        get_profile("smoke", image_kernel="flow")
