"""Data-parallel training under torchrun (gloo, 2 CPU processes) equals one process with the
same global batch, up to float rounding, for both trainers; the one-process world changes
nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import needs_data

from ddgan_core.checkpoint import read_model_file
from ddgan_core.distributed import World

# a large learning rate and no EMA, so that the saved weights carry every step's gradient
STEPS = {
    "ddpm": ["--set", "ddpm_train_steps=4", "--set", "ddpm_checkpoint_every=0",
             "--set", "ddpm_lr=0.01", "--set", "ddpm_ema_decay=0.0"],
    # two D updates per G update, R1 on every other one: every part of a DDGAN step
    "ddgan": ["--set", "ddgan_train_steps=3", "--set", "ddgan_checkpoint_every=0",
              "--set", "ddgan_lr_g=0.01", "--set", "ddgan_lr_d=0.01",
              "--set", "ddgan_ema_decay=0.0", "--set", "ddgan_d_steps=2"],
}
FILES = {"ddpm": "model_ema.safetensors", "ddgan": "generator_ema.safetensors"}


def test_the_one_process_world_changes_nothing():
    world = World()
    batch = torch.arange(8.0)
    assert world.shard(batch) is batch and world.mean(batch) is batch and world.is_main
    two = World(rank=1, size=2)
    assert torch.equal(two.shard(batch), torch.tensor([4.0, 5.0, 6.0, 7.0]))
    with pytest.raises(ValueError, match="multiple of 2"):
        two.check_batch(7, "ddpm_batch_size")


def _train(model: str, args: list[str], out, env) -> str:
    return subprocess.run([*args, "-m", "ddgan_core", "train", model, "--profile", "smoke",
                           *STEPS[model], "--out", str(out)],
                          check=True, env=env, capture_output=True, text=True,
                          timeout=600).stdout


def _initial_weights(model: str) -> dict[str, torch.Tensor]:
    from ddgan_core import ddgan, ddpm
    from ddgan_core.profiles import get_profile

    torch.manual_seed(0)  # both trainers seed the global RNG with the profile's seed first
    profile = get_profile("smoke")
    net = ddpm.make_model(profile) if model == "ddpm" else ddgan.make_generator(profile)
    return {k: v.half() for k, v in net.state_dict().items()}


@needs_data
@pytest.mark.parametrize("model", ["ddpm", "ddgan"])
def test_two_gloo_processes_train_like_one(tmp_path, model):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    alone = _train(model, [sys.executable], tmp_path / "one", env)
    shared = _train(model, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node", "2"], tmp_path / "two", env)
    assert "over 2 processes" in shared and "over 2 processes" not in alone
    one, _ = read_model_file(tmp_path / "one" / FILES[model])
    init = _initial_weights(model)
    two, _ = read_model_file(tmp_path / "two" / FILES[model])
    assert one.keys() == two.keys()
    # Adam moves every weight by about lr per step whatever its gradient's size, so a gradient
    # near zero whose float rounding differs can move a few weights the other way: compare the
    # mean difference with the mean movement (a wrong shard or average moves every weight)
    diff = torch.cat([(one[k].float() - two[k].float()).abs().flatten() for k in one])
    moved = torch.cat([(one[k].float() - init[k].float()).abs().flatten() for k in one])
    assert diff.mean() < 0.02 * moved.mean(), (
        f"weights differ by {diff.mean():.2e} on average (training moved {moved.mean():.2e})")
    assert (diff > 1e-3).float().mean() < 0.01
