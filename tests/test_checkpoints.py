"""Checkpoints: exact resume (dropout on), the last good checkpoint after a divergence, writes
that never tear, and training through the result cache that checkpoints as it goes."""

from __future__ import annotations

import pytest
import torch

from ddgan_core import ddgan, ddpm
from ddgan_core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_model_file,
    save_checkpoint,
)
from ddgan_core.profiles import get_profile
from ddgan_core.training import DivergenceError, TrainingPaused


@pytest.fixture
def images():
    return torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 2 - 1


def ddpm_config(**overrides):
    config = ddpm.training_config(get_profile("smoke"))
    config.update(ddpm_channels=[8, 8], ddpm_timesteps=50, ddpm_train_steps=8, ddpm_batch_size=4,
                  ddpm_attention=[], ddpm_dropout=0.3)
    config.update(overrides)
    return config


def _weights(path):
    state = load_checkpoint(path)
    return state["model"]


def _train_ddpm(workdir, images, **kwargs):
    return ddpm.train_ddpm(ddpm_config(**kwargs.pop("config", {})), workdir, device="cpu",
                           progress=False, data=images, **kwargs)


def test_ddpm_resume_with_dropout_is_bit_exact(tmp_path, images):
    """Dropout draws from the global RNG; without it in the checkpoint 134 of 166 tensors
    differed after a resume."""
    _train_ddpm(tmp_path / "straight", images, checkpoint_every=0)
    torch.manual_seed(12345)  # whatever the caller's RNG state, the resume restores the saved one
    paused = _train_ddpm(tmp_path / "resumed", images, stop_after=3, checkpoint_every=0)
    assert not paused["finished"] and paused["train_steps"] == 3
    torch.manual_seed(999)
    _train_ddpm(tmp_path / "resumed", images, checkpoint_every=0)
    a = _weights_of_model(tmp_path / "straight")
    b = _weights_of_model(tmp_path / "resumed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _weights_of_model(folder):
    return read_model_file(folder / ddpm.MODEL_FILE)[0]


def test_ddpm_checkpoints_every_n_steps_through_the_cache(tmp_path, monkeypatch, images):
    """``training_config`` carries no checkpoint cadence; the cache's DDPM still checkpoints."""
    from ddgan_core import experiments
    from ddgan_core.cache import ResultCache

    seen = []
    real = ddpm.train_ddpm

    def spy(config, workdir, *args, **kwargs):
        seen.append(kwargs.get("checkpoint_every"))
        return real(config, workdir, *args, data=images, device="cpu", progress=False,
                    stop_after=2, checkpoint_every=kwargs.get("checkpoint_every"))

    monkeypatch.setattr(ddpm, "train_ddpm", spy)
    profile = get_profile("smoke", ddpm_checkpoint_every=1)
    with pytest.raises(TrainingPaused):  # an unfinished run never becomes an entry
        experiments.ddpm_model(profile, ResultCache(tmp_path))
    assert seen == [1]
    partial = next(tmp_path.glob("ddpm_model/*.partial"))
    assert load_checkpoint(partial / "checkpoint.pt")["step"] == 2


def test_ddpm_divergence_keeps_a_checkpoint_that_resumes(tmp_path, images):
    work = tmp_path / "w"
    assert not _train_ddpm(work, images, stop_after=4, checkpoint_every=2)["finished"]
    with pytest.raises(DivergenceError):
        _train_ddpm(work, images, checkpoint_every=1, config={"ddpm_lr": 1e6})
    kept = load_checkpoint(work / "checkpoint.pt")
    assert kept["step"] == 4  # the step-5 weights (after an lr-1e6 update) were never written
    assert max(float(v.abs().max()) for v in kept["model"].values()) < 100
    metrics = _train_ddpm(work, images, checkpoint_every=2)  # a sane lr continues finitely
    assert metrics["train_steps"] == 8 and all(
        torch.isfinite(torch.tensor(h["loss"])) for h in metrics["history"])


DDGAN_TINY = {
    "seed": 0, "ddgan_timesteps": 2, "ddgan_nz": 4, "ddgan_channels": [4, 8, 8],
    "ddgan_res_blocks": 1, "ddgan_d_channels": [4, 8, 8], "ddgan_d_head": "flatten",
    "ddgan_train_steps": 8, "ddgan_batch_size": 4, "ddgan_lr_g": 1e-3, "ddgan_lr_d": 1e-3,
    "ddgan_r1_gamma": 0.1, "ddgan_lazy_r1": 2, "ddgan_d_steps": 1, "ddgan_ema_decay": 0.9,
    "ddgan_checkpoint_every": 2,
}


def test_ddgan_divergence_keeps_a_checkpoint_that_resumes(tmp_path, images):
    work = tmp_path / "w"
    ddgan.train_ddgan(DDGAN_TINY, work, device="cpu", progress=False, data=images, stop_after=4)
    # only G explodes: step 5's losses (computed before its G update) are finite, the G it
    # produces is not; the old code saved that G (max |w| = 6e5) as "the last good checkpoint"
    bad = dict(DDGAN_TINY, ddgan_lr_g=1e6, ddgan_checkpoint_every=1)
    with pytest.raises(DivergenceError):
        ddgan.train_ddgan(bad, work, device="cpu", progress=False, data=images)
    kept = load_checkpoint(work / "checkpoint.pt")["trainer"]
    assert kept["step"] == 4
    assert max(float(v.abs().max()) for v in kept["G"].values() if v.is_floating_point()) < 100
    metrics = ddgan.train_ddgan(DDGAN_TINY, work, device="cpu", progress=False, data=images)
    assert metrics["finished"] and all(abs(h["loss_d"]) < 100 for h in metrics["history"])


def test_checkpoint_written_aside_and_renamed(tmp_path, monkeypatch):
    """A writer killed mid-write leaves the old checkpoint intact (and only a hidden temporary
    file, removed by the next training run)."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def killed(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_training_state_of_the_other_model_is_refused_in_one_line(tmp_path, images):
    work = tmp_path / "w"
    ddgan.train_ddgan(DDGAN_TINY, work, device="cpu", progress=False, data=images, stop_after=2)
    with pytest.raises(CheckpointError, match="not a DDPM training checkpoint") as err:
        _train_ddpm(work, images)
    assert "\n" not in str(err.value)
    random_bytes = tmp_path / "r.pt"
    random_bytes.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(random_bytes)
    assert "\n" not in str(err.value) and "corrupt" in str(err.value)


def test_sample_output_is_written_aside_and_renamed(tmp_path, images, monkeypatch):
    """A sampler killed while writing (or two writers of one --out) never leaves a torn .npz."""
    import numpy as np

    from ddgan_core import cli

    ddgan.train_ddgan(DDGAN_TINY, tmp_path / "g", device="cpu", progress=False, data=images)
    out = tmp_path / "s.npz"
    argv = ["sample", "--checkpoint", str(tmp_path / "g" / ddgan.GENERATOR_FILE), "--n", "6",
            "--out", str(out)]
    assert cli.main(argv) == 0
    first = np.load(out)["images"]
    assert first.shape == (6, 28, 28) and first.dtype == np.uint8

    def killed(file, **arrays):
        file.write(b"PK\x03\x04 half an npz")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", killed)
    with pytest.raises(KeyboardInterrupt):
        cli.main([*argv[:-1], str(out)])
    monkeypatch.undo()
    assert np.array_equal(np.load(out)["images"], first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "s.npz"]


def test_nan_samples_are_refused_and_nothing_is_written(tmp_path, capsys):
    """A diverged model's NaN samples were written as black uint8 images with exit 0."""
    from ddgan_core import cli

    G = ddgan.make_generator(DDGAN_TINY)
    weights = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
               for k, v in G.state_dict().items()}
    save_checkpoint(tmp_path / "g.pt", {
        "format": ddgan.GENERATOR_FORMAT, "state_dict": weights,
        "config": {k: DDGAN_TINY[k] for k in ddgan.ARCH_KEYS}, "train_steps": 1})
    out = tmp_path / "s.npz"
    code = cli.main(["sample", "--checkpoint", str(tmp_path / "g.pt"), "--n", "4",
                     "--out", str(out)])
    assert code == 2 and "NaN" in capsys.readouterr().err and not out.exists()


def test_torn_progress_file_names_itself(tmp_path):
    from ddgan_core import experiments

    torn = tmp_path / "progress.json"
    torn.write_text('[{"step": 3, "fid": 1')
    with pytest.raises(ValueError, match=r"progress.json is unreadable.*\.partial"):
        experiments._read_progress(torn)
