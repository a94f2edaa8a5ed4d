"""The divergences of ``ddgan_loss``: each discriminator loss is minimised at its known optimum,
where it measures its divergence; the generator losses point the right way; WGAN-GP's penalty;
and the trainer runs every loss while ``ns`` stays bit for bit what it was."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import needs_data

from ddgan_core import ddgan, toy
from ddgan_core.ddgan.losses import (
    LOSSES,
    chance_loss,
    check_loss,
    d_loss,
    g_loss,
    gradient_penalty,
)
from ddgan_core.profiles import CHOICES, get_profile

# Two discrete distributions on three atoms, as batches whose atoms repeat in proportion (the
# losses compute in float32, hence tolerances of 1e-6).
P = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
Q = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
REAL = torch.tensor([0, 0, 1, 2])  # P's atoms, 4 draws
FAKE = torch.tensor([0, 1, 2, 2])  # Q's atoms

#: The discriminator logits that minimise each loss, per atom (f-GAN: g(v) = f'(p/q)).
OPTIMUM = {
    "ns": torch.log(P / Q),
    "lsgan": P / (P + Q),
    "kl": 1.0 + torch.log(P / Q),
    "reverse-kl": torch.log(P / Q),
}


def _d_loss_at(v: torch.Tensor, loss: str) -> torch.Tensor:
    return d_loss(v[REAL], v[FAKE], loss)


def test_the_profile_choices_are_the_losses():
    assert tuple(CHOICES["ddgan_loss"]) == LOSSES
    assert get_profile("smoke")["ddgan_loss"] == "ns"
    with pytest.raises(ValueError, match="ddgan_loss"):
        get_profile("smoke", ddgan_loss="wasserstein")
    with pytest.raises(ValueError, match="allowed"):
        check_loss("js")


@pytest.mark.parametrize("loss", sorted(OPTIMUM))
def test_each_discriminator_loss_is_stationary_at_its_optimum(loss):
    v = OPTIMUM[loss].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_d_loss_at(v, loss), v)
    assert grad.abs().max() < 1e-6
    # and it is a minimum: moving any logit raises the loss
    for i in range(3):
        for delta in (-0.1, 0.1):
            w = OPTIMUM[loss].clone()
            w[i] += delta
            assert _d_loss_at(w, loss) > _d_loss_at(OPTIMUM[loss], loss)


def test_at_the_optimum_the_losses_measure_their_divergences():
    kl_pq = float((P * torch.log(P / Q)).sum())
    kl_qp = float((Q * torch.log(Q / P)).sum())
    m = (P + Q) / 2
    js = float(0.5 * (P * torch.log(P / m)).sum() + 0.5 * (Q * torch.log(Q / m)).sum())
    assert -float(_d_loss_at(OPTIMUM["kl"], "kl")) == pytest.approx(kl_pq, abs=1e-6)
    assert -float(_d_loss_at(OPTIMUM["reverse-kl"], "reverse-kl")) == pytest.approx(kl_qp,
                                                                                      abs=1e-6)
    assert float(_d_loss_at(OPTIMUM["ns"], "ns")) == pytest.approx(2 * math.log(2) - 2 * js,
                                                                     abs=1e-6)


def test_the_wasserstein_critic_loss_is_the_difference_of_means():
    v = torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64)
    assert float(_d_loss_at(v, "wgan-gp")) == pytest.approx(
        float(v[FAKE].mean() - v[REAL].mean()))


@pytest.mark.parametrize("loss", LOSSES)
def test_chance_is_the_loss_of_a_discriminator_that_outputs_zero(loss):
    zeros = torch.zeros(8)
    assert float(d_loss(zeros, zeros, loss)) == pytest.approx(chance_loss(loss), abs=1e-7)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_generator_wants_the_discriminator_to_call_its_samples_real(loss):
    values = [float(g_loss(torch.full((4,), v), loss)) for v in (-2.0, -0.5, 0.0, 0.4)]
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_the_exponential_losses_stay_finite_for_huge_logits():
    huge = torch.tensor([1e4, -1e4])
    for loss in ("kl", "reverse-kl"):
        assert torch.isfinite(d_loss(huge, huge, loss)) and torch.isfinite(g_loss(huge, loss))


def test_the_gradient_penalty_of_a_linear_critic_is_its_slope_minus_one_squared():
    w = torch.tensor([[1.2, -1.6]])  # |w| = 2

    def critic(x, x_t, t):
        return (x @ w.T).squeeze(1)

    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    e = torch.rand(5, 1)
    gp = gradient_penalty(critic, real, fake, None, None, e)
    assert float(gp) == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------------------------
# the trainer


@pytest.mark.parametrize("loss", LOSSES)
def test_the_toy_ddgan_trains_under_every_loss(loss):
    run = toy.train_toy_ddgan(T=2, steps=20, seed=0, loss=loss, log_every=5, n_eval=200,
                              progress=False, r1_gamma=0.0 if loss == "wgan-gp" else 0.05)
    assert torch.isfinite(run["samples"]).all()
    assert all(math.isfinite(h["loss_d"]) and math.isfinite(h["loss_g"])
               for h in run["history"])


def test_losses_change_training_and_the_ns_default_is_unchanged():
    a = toy.train_toy_ddgan(T=2, steps=10, seed=3, log_every=5, n_eval=100, progress=False)
    b = toy.train_toy_ddgan(T=2, steps=10, seed=3, log_every=5, n_eval=100, progress=False,
                            loss="ns")
    c = toy.train_toy_ddgan(T=2, steps=10, seed=3, log_every=5, n_eval=100, progress=False,
                            loss="hinge")
    assert torch.equal(a["samples"], b["samples"])
    assert not torch.equal(a["samples"], c["samples"])


def test_the_ns_loss_is_left_out_of_the_key_and_any_other_is_in_it():
    profile = get_profile("smoke")
    assert "ddgan_loss" not in ddgan.training_config(profile)  # old keys stay valid
    hinge = ddgan.training_config({**profile, "ddgan_loss": "hinge"})
    assert hinge["ddgan_loss"] == "hinge"


@needs_data
def test_an_image_ddgan_trains_with_the_wasserstein_critic(tmp_path):
    config = {**ddgan.training_config(get_profile("smoke", ddgan_loss="wgan-gp",
                                                  ddgan_r1_gamma=0.0))}
    metrics = ddgan.train_ddgan(config, tmp_path, device="cpu", progress=False)
    assert metrics["finished"] and math.isfinite(metrics["loss_d"])
    state = ddgan.discriminator_state(metrics["history"], loss="wgan-gp")
    assert state["intervals"] == len(metrics["history"])
