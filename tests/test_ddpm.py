from __future__ import annotations

import pytest
import torch

from ddgan_core import ddpm
from ddgan_core.checkpoint import CheckpointError, read_model_file, save_checkpoint
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule, respace
from ddgan_core.profiles import get_profile
from ddgan_core.training import DivergenceError


class ConstantEps(torch.nn.Module):
    """A stand-in network: eps_theta(x, t) = 0.5 x (cheap, deterministic, records calls)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.calls: list[torch.Tensor] = []

    def forward(self, x, t):
        self.calls.append(t.clone())
        return self.scale * x


def tiny_config(**overrides):
    cfg = ddpm.training_config(get_profile("smoke"))
    cfg.update(ddpm_channels=[8, 8], ddpm_timesteps=50, ddpm_train_steps=6, ddpm_batch_size=4,
               ddpm_checkpoint_every=2, ddpm_attention=[])
    cfg.update(overrides)
    return cfg


def test_sampling_timesteps_keep_both_ends():
    assert ddpm.sampling_timesteps(1000, 1) == [999]
    assert ddpm.sampling_timesteps(1000, 2) == [0, 999]
    assert ddpm.sampling_timesteps(1000, 1000) == list(range(1000))
    assert len(ddpm.sampling_timesteps(1000, 10)) == 10
    with pytest.raises(ValueError, match=r"steps=0 must be in \[1, 1000\]"):
        ddpm.sampling_timesteps(1000, 0)


@pytest.mark.parametrize("sampler", ddpm.SAMPLERS)
def test_sampler_matches_a_hand_written_chain(sampler):
    diffusion = GaussianDiffusion(make_beta_schedule("linear", 100))
    model = ConstantEps()
    images, nfe = ddpm.ddpm_sample(model, diffusion, 3, 7, sampler, seed=5, batch_size=3,
                                   device="cpu")
    assert nfe == 7 and images.shape == (3, 1, 28, 28) and len(model.calls) == 7
    kept = ddpm.sampling_timesteps(100, 7)
    assert [int(t[0]) for t in model.calls] == kept[::-1]  # the network sees original steps
    spaced, _ = respace(diffusion, kept)
    generator = torch.Generator().manual_seed(5 * 1_000_003)
    x = torch.randn((3, 1, 28, 28), generator=generator)
    for i in reversed(range(7)):
        t = torch.full((3,), i)
        eps = 0.5 * x
        noise = torch.randn(x.shape, generator=generator)
        if sampler == "ancestral":
            x = spaced.p_sample_from_eps(eps, x, t, noise=noise)
        else:
            x = spaced.ddim_step(eps, x, t, t - 1, eta=0.0)
    torch.testing.assert_close(images, x.clamp(-1, 1))


def test_sampling_is_deterministic_per_seed_and_batching():
    diffusion = GaussianDiffusion(make_beta_schedule("cosine", 40))
    model = ConstantEps()
    a, _ = ddpm.ddpm_sample(model, diffusion, 6, 5, seed=1, batch_size=6, device="cpu")
    b, _ = ddpm.ddpm_sample(model, diffusion, 6, 5, seed=1, batch_size=6, device="cpu")
    c, _ = ddpm.ddpm_sample(model, diffusion, 6, 5, seed=2, batch_size=6, device="cpu")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_sampler_arguments():
    diffusion = GaussianDiffusion(make_beta_schedule("linear", 40))
    with pytest.raises(ValueError, match="sampler='euler' is unknown"):
        ddpm.ddpm_sample(ConstantEps(), diffusion, 2, 4, "euler", device="cpu")
    with pytest.raises(ValueError, match="n=0"):
        ddpm.ddpm_sample(ConstantEps(), diffusion, 0, 4, device="cpu")


def test_elbo_weights_are_the_corrected_eq6():
    diffusion = GaussianDiffusion(make_beta_schedule("linear", 1000))
    weights = ddpm.loss_weights(diffusion, "elbo")
    t = 500
    sigma2 = diffusion.posterior_variance[t]
    expected = diffusion.betas[t] ** 2 / (
        2 * sigma2 * diffusion.alphas[t] * (1 - diffusion.alphas_cumprod[t]))
    raw = diffusion.betas**2 / (2 * torch.exp(torch.tensor(
        diffusion.posterior_log_variance_clipped)).numpy() * diffusion.alphas
        * (1 - diffusion.alphas_cumprod))
    assert weights[t] == pytest.approx(expected / raw.mean())
    assert weights.mean() == pytest.approx(1.0)
    assert (ddpm.loss_weights(diffusion, "simple") == 1).all()
    with pytest.raises(ValueError, match="ddpm_loss='kl'"):
        ddpm.loss_weights(diffusion, "kl")


def test_training_learns_and_resume_is_exact(tmp_path):
    torch.manual_seed(0)
    data = torch.rand(64, 1, 28, 28) * 2 - 1
    cfg = tiny_config(ddpm_train_steps=8, ddpm_lr=2e-3, ddpm_ema_decay=0.5)
    full = ddpm.train_ddpm(cfg, tmp_path / "a", device="cpu", progress=False, data=data)
    assert full["images_seen"] == 32 and len(full["history"]) >= 2
    # stop_after is the run's step count: the second call with it does no step
    for _ in range(2):
        paused = ddpm.train_ddpm(cfg, tmp_path / "b", device="cpu", progress=False, data=data,
                                 stop_after=3)
        assert not paused["finished"] and paused["train_steps"] == 3
    assert not (tmp_path / "b" / ddpm.MODEL_FILE).exists()
    resumed = ddpm.train_ddpm(cfg, tmp_path / "b", device="cpu", progress=False, data=data)
    assert full["finished"] and resumed["finished"] and resumed["train_steps"] == 8
    a, info = read_model_file(tmp_path / "a" / ddpm.MODEL_FILE)
    b, _ = read_model_file(tmp_path / "b" / ddpm.MODEL_FILE)
    assert info["format"] == ddpm.MODEL_FORMAT and info["config"]["ddpm_timesteps"] == 50
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "a" / "checkpoint.pt").exists()  # the product is the model file


def test_loss_decreases_on_a_fixed_image(tmp_path):
    data = torch.zeros(8, 1, 28, 28)
    cfg = tiny_config(ddpm_train_steps=60, ddpm_lr=3e-3, ddpm_warmup_steps=0)
    metrics = ddpm.train_ddpm(cfg, tmp_path, device="cpu", progress=False, data=data)
    history = metrics["history"]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


def test_nan_data_stops_training_with_a_clear_message(tmp_path):
    data = torch.full((8, 1, 28, 28), float("nan"))
    with pytest.raises(DivergenceError, match="training diverged at step"):
        ddpm.train_ddpm(tiny_config(), tmp_path, device="cpu", progress=False, data=data)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model_ema.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or not a ddgan_core checkpoint"):
        ddpm.load_model(bad, "cpu")
    torch.save({"weights": 1}, bad)
    with pytest.raises(CheckpointError, match="not a DDPM model file"):
        ddpm.load_model(bad, "cpu")
    torn = tmp_path / ddpm.MODEL_FILE
    torn.write_bytes(b"\x07\x00\x00\x00\x00\x00\x00\x00{\"a\": 1")  # a broken header
    with pytest.raises(CheckpointError, match="corrupt") as err:
        ddpm.load_model(torn, "cpu")
    assert "\n" not in str(err.value)


def test_the_torch_model_files_of_before_still_load(tmp_path):
    """``model_ema.pt`` (tagged, or untagged as first written) loads like the safetensors file."""
    cfg = tiny_config()
    model = ddpm.make_model(cfg)
    weights = {k: v.half() for k, v in model.state_dict().items()}
    config = {k: cfg[k] for k in ddpm.MODEL_KEYS + ddpm.DIFFUSION_KEYS}
    for tag in ({"format": ddpm.MODEL_FORMAT}, {}):
        save_checkpoint(tmp_path / "model_ema.pt", {**tag, "model": weights, "config": config})
        loaded, diffusion = ddpm.load_model(tmp_path / "model_ema.pt", "cpu")
        assert diffusion.num_timesteps == cfg["ddpm_timesteps"]
        assert all(torch.equal(v.float(), loaded.state_dict()[k]) for k, v in weights.items())
