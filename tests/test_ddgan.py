"""Denoising Diffusion GAN: networks, real pairs, losses, R1, sampler, trainer, toy model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ddgan_core import ddgan, toy
from ddgan_core.checkpoint import read_model_file, save_checkpoint
from ddgan_core.ddgan import (
    LN4,
    CheckpointError,
    DivergenceError,
    d_loss,
    ddgan_sample,
    g_loss,
    generator_posterior_sample,
    load_generator,
    make_ddgan_diffusion,
    make_discriminator,
    make_generator,
    q_sample_pairs,
    r1_penalty,
    r1_weight,
    stall_fraction,
    train_ddgan,
)
from ddgan_core.nets.discriminator import Discriminator, minibatch_stddev
from ddgan_core.profiles import get_profile

TINY = {
    "seed": 0,
    "ddgan_timesteps": 2,
    "ddgan_nz": 4,
    "ddgan_channels": [4, 8, 8],
    "ddgan_res_blocks": 1,
    "ddgan_d_channels": [4, 8, 8],
    "ddgan_d_head": "flatten",
    "ddgan_train_steps": 4,
    "ddgan_batch_size": 4,
    "ddgan_lr_g": 1e-3,
    "ddgan_lr_d": 1e-3,
    "ddgan_r1_gamma": 0.1,
    "ddgan_lazy_r1": 2,
    "ddgan_d_steps": 2,
    "ddgan_ema_decay": 0.9,
    "ddgan_checkpoint_every": 2,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small networks run fastest on one intra-op thread (two oversubscribe a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_data():
    return torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(5)) * 2 - 1


def _train(workdir, data, **kwargs):
    return train_ddgan(TINY, workdir, device="cpu", progress=False, data=data, **kwargs)


class FixedX0(nn.Module):
    """A 'generator' that ignores its inputs and predicts a fixed x_0."""

    def __init__(self, x0: torch.Tensor):
        super().__init__()
        self.register_buffer("x0", x0)

    def forward(self, x_t, t, z):
        return self.x0.expand_as(x_t)


# -- networks -------------------------------------------------------------------------------


def test_generator_and_discriminator_shapes():
    config = get_profile("smoke")
    G, D = make_generator(config), make_discriminator(config)
    x = torch.randn(6, 1, 28, 28)
    t = torch.tensor([0, 1, 2, 3, 0, 1])
    z = torch.randn(6, config["ddgan_nz"])
    x0 = G(x, t, z)
    assert x0.shape == x.shape and x0.abs().max() <= 1
    logits = D(x, x, t)
    assert logits.shape == (6,) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="z_dim"):
        G.net(x, t)


def test_minibatch_stddev_groups():
    x = torch.randn(8, 3, 5, 5)
    y = minibatch_stddev(x, 4)
    assert y.shape == (8, 4, 5, 5)
    # images 0, 2, 4, 6 form one group (i mod 2), 1, 3, 5, 7 the other
    std0 = x[0::2].std(dim=0, unbiased=False).mean()
    assert torch.allclose(y[0, 3], std0.expand(5, 5), atol=1e-5)
    assert torch.allclose(y[6, 3], y[0, 3]) and not torch.allclose(y[1, 3], y[0, 3])
    assert minibatch_stddev(torch.randn(6, 2, 3, 3), 4).shape == (6, 3, 3, 3)  # group of 3


# -- forward pairs and posterior ------------------------------------------------------------


def test_real_pairs_have_the_forward_process_joint_statistics():
    diffusion = make_ddgan_diffusion(4)
    n = 40_000
    x0_value = torch.tensor([0.8, -0.5, 0.0])
    gen = torch.Generator().manual_seed(0)
    for step in range(4):
        t = torch.full((n,), step, dtype=torch.long)
        x_prev, x_t = q_sample_pairs(diffusion, x0_value.expand(n, 3), t, gen)
        abar = diffusion.alphas_cumprod[step]
        abar_prev = diffusion.alphas_cumprod_prev[step]
        beta = diffusion.betas[step]
        tol = 4.0 / math.sqrt(n)
        assert torch.allclose(x_prev.mean(0), math.sqrt(abar_prev) * x0_value, atol=tol)
        assert torch.allclose(x_t.mean(0), math.sqrt(abar) * x0_value, atol=tol)
        var_prev = x_prev.var(0)
        assert torch.allclose(var_prev, torch.full((3,), 1 - abar_prev), atol=3 * tol)
        assert torch.allclose(x_t.var(0), torch.full((3,), 1 - abar), atol=3 * tol)
        cov = ((x_prev - x_prev.mean(0)) * (x_t - x_t.mean(0))).mean(0)
        expected = math.sqrt(1 - beta) * (1 - abar_prev)
        assert torch.allclose(cov, torch.full((3,), expected), atol=3 * tol)
        if step == 0:
            assert torch.equal(x_prev, x0_value.expand(n, 3))


def test_posterior_at_t0_is_the_x0_prediction():
    for T in (1, 2, 4, 8):
        diffusion = make_ddgan_diffusion(T)
        assert diffusion.posterior_mean_coef2[0] == 0.0
        assert abs(diffusion.posterior_mean_coef1[0] - 1.0) < 1e-12
        assert diffusion.posterior_variance[0] == 0.0
    x0 = torch.randn(5, 2)
    out, _ = generator_posterior_sample(FixedX0(x0), diffusion, torch.randn(5, 2),
                                        torch.zeros(5, dtype=torch.long), torch.randn(5, 1),
                                        noise=torch.randn(5, 2))
    assert torch.allclose(out, x0, atol=1e-6)


def test_sampler_steps_follow_the_posterior_given_a_fixed_x0():
    diffusion = make_ddgan_diffusion(2)
    x0 = torch.tensor([0.5, -0.25])
    n = 40_000
    samples, nfe, chain = ddgan_sample(FixedX0(x0), diffusion, n, nz=3, seed=1, batch_size=n,
                                       device="cpu", shape=(2,), return_chain=True,
                                       clamp=False)
    assert nfe == 2 and chain.shape == (3, n, 2)
    x_T, x_mid = chain[0], chain[1]
    # x_{t-1} = coef1 x0 + coef2 x_t + sqrt(beta~) eps at t = 1
    resid = x_mid - diffusion.posterior_mean_coef2[1] * x_T
    tol = 4.0 / math.sqrt(n)
    assert torch.allclose(resid.mean(0), diffusion.posterior_mean_coef1[1] * x0, atol=tol)
    var = torch.full((2,), diffusion.posterior_variance[1], dtype=torch.float32)
    assert torch.allclose(resid.var(0), var, atol=3 * tol)
    assert torch.allclose(samples, x0.expand(n, 2), atol=1e-6)  # t = 0: no noise, x0 itself
    assert torch.allclose(chain[-1], samples)


def test_sampler_nfe_shape_range_and_determinism():
    config = dict(TINY, ddgan_timesteps=4)
    G = make_generator(config)
    with torch.no_grad():  # make the output depend on its inputs
        G.net.out.weight.normal_(0, 0.5)
    diffusion = make_ddgan_diffusion(config["ddgan_timesteps"])
    nz = config["ddgan_nz"]
    a, nfe = ddgan_sample(G, diffusion, 6, nz, seed=3, batch_size=3, device="cpu")
    b, _ = ddgan_sample(G, diffusion, 6, nz, seed=3, batch_size=3, device="cpu")
    c, _, chain = ddgan_sample(G, diffusion, 6, nz, seed=4, batch_size=3, device="cpu",
                               return_chain=True)
    assert nfe == 4 and a.shape == (6, 1, 28, 28) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert chain.shape == (5, 6, 1, 28, 28) and torch.allclose(chain[-1].clamp(-1, 1), c)
    assert G.training  # the sampler restores the module's mode


# -- losses and R1 ---------------------------------------------------------------------------


def test_loss_signs():
    zeros = torch.zeros(8)
    assert d_loss(zeros, zeros).item() == pytest.approx(LN4)
    assert d_loss(zeros + 1, zeros) < d_loss(zeros, zeros)
    assert d_loss(zeros, zeros - 1) < d_loss(zeros, zeros)
    assert d_loss(zeros - 1, zeros + 1) > d_loss(zeros, zeros)
    assert g_loss(zeros + 1) < g_loss(zeros) < g_loss(zeros - 1)
    # gradients point the right way
    real, fake = zeros.clone().requires_grad_(), zeros.clone().requires_grad_()
    d_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    fake2 = zeros.clone().requires_grad_()
    g_loss(fake2).backward()
    assert (fake2.grad < 0).all()


@pytest.mark.parametrize("head", ["flatten", "mean"])
def test_discriminator_heads_give_one_logit_per_pair(head):
    D = Discriminator(channels=(4, 8, 8), stddev_group=4, head=head)
    x = torch.randn(8, 1, 28, 28)
    out = D(x, x, torch.arange(8) % 4)
    assert out.shape == (8,) and torch.isfinite(out).all()


def test_discriminator_flatten_head_sees_position_the_mean_head_cannot():
    # the same pixels shifted by whole pooling cells: a mean head is blind to the shift only
    # up to border effects, the flatten head's output changes at once
    torch.manual_seed(0)
    x = torch.zeros(1, 1, 28, 28)
    x[..., 4:12, 4:12] = 1.0
    shifted = torch.roll(x, shifts=(12, 12), dims=(2, 3))
    t = torch.zeros(1, dtype=torch.long)
    flat = Discriminator(channels=(4, 8, 8), stddev_group=0, head="flatten")
    mean = Discriminator(channels=(4, 8, 8), stddev_group=0, head="mean")
    with torch.no_grad():
        d_flat = (flat(x, x, t) - flat(shifted, shifted, t)).abs().item()
        d_mean = (mean(x, x, t) - mean(shifted, shifted, t)).abs().item()
    assert d_flat > 10 * d_mean


def test_discriminator_rejects_an_unknown_head():
    with pytest.raises(ValueError, match="head='max' must be one of"):
        Discriminator(channels=(4, 8), head="max")


def test_r1_matches_a_per_image_autograd_reference():
    torch.manual_seed(0)
    D = Discriminator(channels=(4, 8), stddev_group=0, image_size=8)
    x_prev = torch.randn(5, 1, 8, 8, requires_grad=True)
    x_t, t = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 1])
    penalty = r1_penalty(D(x_prev, x_t, t), x_prev)
    grads = torch.autograd.grad(penalty, list(D.parameters()), allow_unused=True)

    reference = 0.0
    for i in range(5):
        xi = x_prev[i: i + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(xi, x_t[i: i + 1], t[i: i + 1]).sum(), xi,
                                   create_graph=True)
        reference = reference + g.pow(2).sum() / 5
    ref_grads = torch.autograd.grad(reference, list(D.parameters()), allow_unused=True)
    assert penalty.item() == pytest.approx(reference.item(), rel=1e-5)
    assert sum(g is not None for g in grads) > 10  # the penalty trains most of D
    for a, b in zip(grads, ref_grads):
        assert (a is None) == (b is None)
        assert a is None or torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))

        def forward(self, x_prev, x_t, t):
            return x_prev @ self.w + x_t.sum(1)

    D = Linear()
    x = torch.randn(4, 3, requires_grad=True)
    penalty = r1_penalty(D(x, torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), x)
    assert penalty.item() == pytest.approx(14.0)
    penalty.backward()
    assert torch.allclose(D.w.grad, 2 * D.w.detach())  # d/dw ||w||^2


def test_lazy_r1_weight():
    assert r1_weight(0.02, 1, 7) == pytest.approx(0.01)
    assert r1_weight(0.02, 15, 0, "stylegan2") == pytest.approx(0.15)
    assert r1_weight(0.02, 15, 1, "stylegan2") == 0.0
    assert r1_weight(0.02, 15, 30, "stylegan2") == pytest.approx(0.15)
    assert r1_weight(0.0, 1, 0) == 0.0


def test_lazy_r1_conventions_differ_by_the_factor_k():
    # the DDGAN code: gamma / 2 on every k-th update; StyleGAN2: k times that
    for k in (2, 15):
        ddgan_w = [r1_weight(0.02, k, i, "ddgan") for i in range(3 * k)]
        style_w = [r1_weight(0.02, k, i, "stylegan2") for i in range(3 * k)]
        assert sum(w > 0 for w in ddgan_w) == 3 and ddgan_w[0] == pytest.approx(0.01)
        assert sum(style_w) == pytest.approx(k * sum(ddgan_w))
    assert r1_weight(0.02, 1, 0, "ddgan") == r1_weight(0.02, 1, 0, "stylegan2")
    with pytest.raises(ValueError, match="ddgan_r1_convention"):
        r1_weight(0.02, 15, 0, "karras")


# -- trainer: resume, corrupt files, divergence ----------------------------------------------


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, tiny_data):
    full = _train(tmp_path / "a", tiny_data)
    first = _train(tmp_path / "b", tiny_data, stop_after=3)
    assert not first["finished"] and first["train_steps"] == 3
    assert not (tmp_path / "b" / ddgan.GENERATOR_FILE).exists()
    # stop_after is the run's step count (as in DDPM): asking again does no step
    again = _train(tmp_path / "b", tiny_data, stop_after=3)
    assert not again["finished"] and again["train_steps"] == 3
    assert ddgan.trained_steps(tmp_path / "b") == 3 and ddgan.trained_steps(tmp_path / "c") == 0
    partial = ddgan.ema_generator_from_checkpoint(tmp_path / "b", "cpu")
    assert partial.arch == ddgan._arch(TINY) and not partial.training
    resumed = _train(tmp_path / "b", tiny_data)
    assert full["finished"] and resumed["finished"] and resumed["train_steps"] == 4
    assert resumed["images_seen"] == full["images_seen"] == 4 * 4 * 2
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["trainer"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["trainer"]
    for part in ("G", "D", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert torch.equal(a["rng"], b["rng"]) and a["d_updates"] == b["d_updates"] == 8
    keys = ("step", "loss_d", "loss_g", "d_real", "d_fake", "gap")
    assert [[h[k] for k in keys] for h in full["history"]] == [
        [h[k] for k in keys] for h in resumed["history"]]
    # the saved EMA generator rebuilds and matches the trained one (fp16 on disk)
    G = load_generator(tmp_path / "a" / ddgan.GENERATOR_FILE, "cpu")
    ema = make_generator(TINY)
    ema.load_state_dict(a["ema"])
    x, t, z = torch.randn(2, 1, 28, 28), torch.tensor([0, 1]), torch.randn(2, 4)
    assert torch.allclose(G(x, t, z), ema(x, t, z), atol=5e-3)
    # the torch file of before (weights under "state_dict") loads to the same generator
    tensors, info = read_model_file(tmp_path / "a" / ddgan.GENERATOR_FILE)
    assert info["format"] == ddgan.GENERATOR_FORMAT and info["train_steps"] == 4
    save_checkpoint(tmp_path / "generator_ema.pt", {**info, "state_dict": tensors})
    old = load_generator(tmp_path / "generator_ema.pt", "cpu")
    assert old.arch == G.arch and all(
        torch.equal(v, G.state_dict()[k]) for k, v in old.state_dict().items())


def test_corrupt_or_mismatched_files_give_clear_errors(tmp_path, tiny_data):
    work = tmp_path / "w"
    work.mkdir()
    (work / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        _train(work, tiny_data)
    bad = tmp_path / "g.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_generator(bad, "cpu")
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "missing.pt", "cpu")

    good = tmp_path / "ok"
    _train(good, tiny_data, stop_after=1)
    other = dict(TINY, ddgan_channels=[8, 8, 8])
    with pytest.raises(CheckpointError, match="networks"):
        train_ddgan(other, good, device="cpu", progress=False, data=tiny_data)
    G = make_generator(TINY)
    save_checkpoint(bad, {"format": ddgan.GENERATOR_FORMAT, "state_dict": G.state_dict(),
                          "config": ddgan._arch(other)})
    with pytest.raises(CheckpointError, match="loadable"):
        load_generator(bad, "cpu")
    save_checkpoint(bad, {"weights": 1})
    with pytest.raises(CheckpointError, match="not a DDGAN generator"):
        load_generator(bad, "cpu")


def test_divergence_raises_and_keeps_the_last_checkpoint(tmp_path, tiny_data):
    _train(tmp_path, tiny_data, stop_after=2)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(DivergenceError, match="diverged at step 3"):
        _train(tmp_path, torch.full_like(tiny_data, float("nan")))
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["trainer"]["step"] == 2
    assert not (tmp_path / ddgan.GENERATOR_FILE).exists()


# -- stall watch and the 2-D toy -------------------------------------------------------------


def assert_not_stalled(history, min_gap=0.05):
    """In the first half of training (before a converged GAN may approach parity) the
    D(real) - D(fake) gap must be clearly positive and parity rare."""
    early = history[: max(1, len(history) // 2)]
    mean_gap = sum(h["gap"] for h in early) / len(early)
    assert stall_fraction(early) < 0.25, f"stalled at parity: {stall_fraction(early):.0%}"
    assert mean_gap > min_gap, f"D(real) - D(fake) averaged only {mean_gap:.3f}: a stall"


def test_stall_watch_flags_a_discriminator_that_cannot_separate(monkeypatch):
    history = [{"gap": 0.001, "loss_d": LN4 + 0.002}] * 3 + [{"gap": 0.5, "loss_d": 1.0}]
    assert stall_fraction(history) == 0.75

    class Frozen(toy.ToyDiscriminator):  # output layer at zero and never trained: D = 0
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    monkeypatch.setattr(toy, "ToyDiscriminator", Frozen)
    result = toy.train_toy_ddgan(steps=30, lr_d=0.0, log_every=5, n_eval=100)
    assert result["stall_fraction"] == 1.0
    with pytest.raises(AssertionError, match="stalled"):
        assert_not_stalled(result["history"])


def test_mode_coverage_counts():
    centers, std = toy.mixture("8gaussians")
    assert centers.shape == (8, 2) and std == pytest.approx(0.04)
    assert torch.allclose(centers.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    exact = centers.repeat(50, 1)
    assert toy.mode_coverage(exact, centers, std) == (8, 1.0)
    three = torch.cat([centers[:3].repeat(100, 1), torch.zeros(100, 2, dtype=torch.float64)])
    assert toy.mode_coverage(three, centers, std) == (3, 0.75)
    data = toy.sample_mixture("25gaussians", 5000, torch.Generator().manual_seed(0))
    modes, hq = toy.mode_coverage(data, *toy.mixture("25gaussians"))
    assert modes == 25 and hq == pytest.approx(1 - math.exp(-4.5), abs=0.005)  # P(r < 3 std)


def test_true_reverse_kernel_reproduces_the_forward_marginal():
    diffusion = make_ddgan_diffusion(2)
    gen = torch.Generator().manual_seed(0)
    x0 = toy.sample_mixture("8gaussians", 400, gen)
    _, x_t = q_sample_pairs(diffusion, x0, torch.ones(400, dtype=torch.long), gen)
    back = torch.cat([toy.true_reverse_samples("8gaussians", diffusion, x, 1, 20, gen)
                      for x in x_t])
    # pushing q(x_t) through q(x_{t-1} | x_t) gives q(x_{t-1}): var 1 - abar_0 + abar_0 * 4
    abar0 = diffusion.alphas_cumprod[0]
    expected = 1 - abar0 + abar0 * (4 / 2 + 0.04**2)  # per coordinate
    assert back.var(0).tolist() == pytest.approx([expected] * 2, rel=0.1)
    assert back.mean(0).abs().max() < 0.1


def test_toy_ddgan_covers_all_eight_modes():
    result = toy.train_toy_ddgan(T=2, seed=0)
    assert_not_stalled(result["history"])
    assert result["modes"] == 8, result["modes"]
    assert result["hq_fraction"] >= 0.8, result["hq_fraction"]
    # at t = 0 both kernels put their mass on the modes
    gen = torch.Generator().manual_seed(0)
    x_t = torch.tensor([0.5, 0.5])
    true = toy.true_reverse_samples("8gaussians", result["diffusion"], x_t, 0, 200, gen)
    model = toy.model_reverse_samples(result["G"], result["diffusion"], x_t, 0, 200,
                                      result["nz"], gen)
    assert true.shape == model.shape == (200, 2)
    centers, std = result["centers"], result["std"]
    assert toy.mode_coverage(true, centers, std, min_count=1)[1] > 0.95
    assert toy.mode_coverage(model, centers, std, min_count=1)[1] > 0.6


def test_discriminator_state_reports_gap_and_distance_from_chance():
    from ddgan_core.ddgan import LN4, discriminator_state

    at_chance = [{"gap": 0.0, "loss_d": LN4 + 0.01}] * 4
    ahead = [{"gap": 1.5, "loss_d": LN4 - 0.4}] * 4
    state = discriminator_state(at_chance + ahead)
    assert state["near_parity_share"] == pytest.approx(0.5)
    assert state["gap_late_mean"] == pytest.approx(1.5)
    assert state["gap_median"] == pytest.approx(0.75)
    assert state["loss_d_distance_median"] == pytest.approx(0.205)
    assert discriminator_state([]) == {}
