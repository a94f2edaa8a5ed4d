"""Data-parallel DDPM training under torchrun (gloo, 2 CPU processes) equals one process with
the same global batch, up to float rounding; the one-process world changes nothing."""

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
STEPS = ["--profile", "smoke", "--set", "ddpm_train_steps=4", "--set", "ddpm_checkpoint_every=0",
         "--set", "ddpm_lr=0.01", "--set", "ddpm_ema_decay=0.0"]


def test_the_one_process_world_changes_nothing():
    world = World()
    batch = torch.arange(8.0)
    assert world.shard(batch) is batch and world.mean(batch) is batch and world.is_main
    two = World(rank=1, size=2)
    assert torch.equal(two.shard(batch), torch.tensor([4.0, 5.0, 6.0, 7.0]))
    with pytest.raises(ValueError, match="multiple of 2"):
        two.check_batch(7, "ddpm_batch_size")


def _train(args: list[str], out, env) -> str:
    return subprocess.run([*args, "-m", "ddgan_core", "train", "ddpm", *STEPS, "--out", str(out)],
                          check=True, env=env, capture_output=True, text=True,
                          timeout=600).stdout


def _initial_weights() -> dict[str, torch.Tensor]:
    from ddgan_core import ddpm
    from ddgan_core.profiles import get_profile

    torch.manual_seed(0)  # train_ddpm seeds the global RNG with the profile's seed first
    model = ddpm.make_model(get_profile("smoke"))
    return {k: v.half() for k, v in model.state_dict().items()}


@needs_data
def test_two_gloo_processes_train_like_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    alone = _train([sys.executable], tmp_path / "one", env)
    shared = _train([sys.executable, "-m", "torch.distributed.run", "--standalone",
                     "--nproc_per_node", "2"], tmp_path / "two", env)
    assert "over 2 processes" in shared and "over 2 processes" not in alone
    one, _ = read_model_file(tmp_path / "one" / "model_ema.safetensors")
    init = _initial_weights()
    two, _ = read_model_file(tmp_path / "two" / "model_ema.safetensors")
    assert one.keys() == two.keys()
    worst = max((one[k].float() - two[k].float()).abs().max().item() for k in one)
    moved = max((one[k].float() - init[k].float()).abs().max().item() for k in one)
    assert worst < 2e-3 < moved, f"weights differ by up to {worst} (training moved {moved})"
