"""One home per concern: checkpoint and model files (one error class, safetensors model files,
the torch files of before, converting a cache entry), the device helper, the training loop both
trainers share, and the Gaussian mixtures of the ELBO and toy code."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
import torch

from ddgan_core import checkpoint, ddgan, ddpm, device, elbo, mixtures, toy, training
from ddgan_core.cache import CacheError, ResultCache, check_entry, committed_root
from ddgan_core.metrics import features

# -- checkpoint and model files ----------------------------------------------------------------


def test_there_is_one_checkpoint_error():
    one = checkpoint.CheckpointError
    assert training.CheckpointError is one and features.CheckpointError is one
    assert ddgan.CheckpointError is one and issubclass(one, ValueError)


def test_a_model_file_is_safetensors_with_its_tag_and_config_as_json(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float16).reshape(2, 3), "n": torch.tensor([3])}
    info = {"format": checkpoint.DDPM_MODEL, "config": {"ddpm_channels": [8, 8], "x": 1.5}}
    path = checkpoint.save_model_file(tmp_path / "m.safetensors", tensors, info)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        assert json.loads(handle.metadata()["ddgan_core"]) == info
    loaded, read = checkpoint.read_model_file(path)
    assert read == info and all(torch.equal(loaded[k], v) for k, v in tensors.items())
    # one metadata entry: the same weights always give the same bytes (and the same SHA-256)
    assert checkpoint.model_file_bytes(tensors, info) == path.read_bytes()
    assert checkpoint.model_kind(path) == "ddpm"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # written aside, renamed


def test_model_kind_refuses_training_states_in_one_line(tmp_path):
    checkpoint.save_checkpoint(tmp_path / "checkpoint.pt", {"format": ddpm.CHECKPOINT_FORMAT})
    with pytest.raises(checkpoint.CheckpointError, match="training state") as err:
        checkpoint.model_kind(tmp_path / "checkpoint.pt")
    assert ddpm.MODEL_FILE in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        checkpoint.model_kind(tmp_path / "missing.safetensors")


def _entry_with_a_torch_model_file(root, untagged=False):
    cfg = {"ddpm_channels": [8, 8], "ddpm_res_blocks": 1, "ddpm_attention": [],
           "ddpm_dropout": 0.0, "ddpm_schedule": "linear", "ddpm_timesteps": 50}
    weights = {k: v.half() for k, v in ddpm.make_model(cfg).state_dict().items()}
    tag = {} if untagged else {"format": ddpm.MODEL_FORMAT}

    def compute(workdir, config):
        checkpoint.save_checkpoint(workdir / "model_ema.pt",
                                   {**tag, "model": weights, "config": cfg})
        return {"loss": 1.0}

    return ResultCache(root).load_or_run("ddpm_model", {"n": 1}, compute), weights


@pytest.mark.parametrize("untagged", [False, True])
def test_convert_entry_swaps_the_torch_file_for_safetensors_bit_for_bit(tmp_path, untagged):
    result, weights = _entry_with_a_torch_model_file(tmp_path, untagged)
    assert checkpoint.find_model_file(result.path, "ddpm").name == "model_ema.pt"
    assert checkpoint.convert_entry(result.path) == [ddpm.MODEL_FILE]
    manifest = check_entry(result.path)  # still verifies, resealed
    assert sorted(manifest["files"]) == ["config.json", "metrics.json", ddpm.MODEL_FILE]
    (record,) = manifest["converted"]
    assert record["from"] == "model_ema.pt" and record["to"] == ddpm.MODEL_FILE
    assert ("added" in record["note"]) == untagged
    again = ResultCache(tmp_path).load("ddpm_model", {"n": 1})  # same key, found
    assert again is not None and again.path == result.path
    tensors, info = checkpoint.read_model_file(again.file(ddpm.MODEL_FILE))
    assert info["format"] == ddpm.MODEL_FORMAT
    assert all(tensors[k].dtype == v.dtype and torch.equal(tensors[k], v)
               for k, v in weights.items())
    assert checkpoint.convert_entry(result.path) == []  # nothing left to convert


def test_replace_entry_file_refuses_what_it_cannot_do_cleanly(tmp_path):
    from ddgan_core.cache import replace_entry_file

    result, _ = _entry_with_a_torch_model_file(tmp_path)
    with pytest.raises(CacheError, match="not a replaceable file"):
        replace_entry_file(result.path, "config.json", "c.json", b"{}", "no")
    with pytest.raises(CacheError, match="exists already"):
        replace_entry_file(result.path, "model_ema.pt", "metrics.json", b"{}", "no")
    (result.path / "metrics.json").write_text("{}")  # an edited entry is not converted
    with pytest.raises(CacheError):
        replace_entry_file(result.path, "model_ema.pt", ddpm.MODEL_FILE, b"x", "no")


def test_the_committed_model_files_are_safetensors():
    found = {p.name for p in committed_root().glob("*/*/*") if "_ema." in p.name}
    assert found == {ddpm.MODEL_FILE, ddgan.GENERATOR_FILE}
    for path in committed_root().glob("*/*/*.safetensors"):
        if path.parent.parent.name == "distilled_student":  # chapter 7's students
            from ddgan_core import distillation

            steps = distillation.load_student(path, "cpu")[2]
            assert path.name == distillation.student_file(steps)
        else:
            assert checkpoint.model_kind(path) in ("ddpm", "ddgan")


# -- the device helper ---------------------------------------------------------------------------


def test_device_helper():
    assert device.pick_device("cpu") == torch.device("cpu")
    assert device.pick_device().type == device.default_device()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            device.pick_device("cuda")
    assert device.device_description("cpu").startswith("cpu:")
    assert device.device_name("cpu") == device.device_description("cpu")[4:]
    device.synchronize("cpu")
    assert training.pick_device is device.pick_device


# -- the loop both trainers share ----------------------------------------------------------------


def test_both_trainers_take_the_same_arguments():
    a = inspect.signature(ddpm.train_ddpm).parameters
    b = inspect.signature(ddgan.train_ddgan).parameters
    assert [(p.name, p.kind, p.default) for p in a.values()] == [
        (p.name, p.kind, p.default) for p in b.values()]
    assert list(a) == ["config", "workdir", "device", "progress", "data", "stop_after",
                       "checkpoint_every", "log_every", "max_seconds"]


class FakeRun:
    """Callbacks for run_training_loop that record what it asked for."""

    def __init__(self, step=0):
        self.step, self.saved, self.logged = step, [], []

    def train_step(self):
        self.step += 1
        return self.step

    def save(self, step, seconds):
        self.saved.append(step)

    def log(self, step):
        self.logged.append(step)
        return {"loss": "0"}


def _loop(run, **kwargs):
    options = dict(start=run.step, total=10, desc="test", progress=False, log_every=4,
                   checkpoint_every=3)
    return training.run_training_loop(run.train_step, run.save, run.log, **{**options, **kwargs})


def test_the_loop_logs_checkpoints_and_stops_at_the_runs_step():
    run = FakeRun()
    end = _loop(run, stop_after=5)
    assert (end.finished, end.steps, run.step) == (False, 5, 5)
    assert run.saved == [3, 5] and run.logged == [4]
    end = _loop(run, stop_after=5)  # the run's step count: nothing left to do
    assert (end.finished, end.steps, run.saved) == (False, 0, [3, 5])
    end = _loop(run)
    assert (end.finished, end.steps) == (True, 5)
    assert run.saved == [3, 5, 6, 9, 10] and run.logged == [4, 8, 10]
    run = FakeRun()
    end = _loop(run, checkpoint_every=0, max_seconds=0.0)  # out of time after one step
    assert (end.finished, end.steps, run.saved) == (False, 1, [1])


def test_progress_bars_are_off_unless_a_terminal_shows_them():
    assert training.progress_bar(range(3), desc="x").disable  # pytest's stderr is no terminal
    assert training.progress_bar(range(3), desc="x", enabled=False).disable


# -- Gaussian mixtures ---------------------------------------------------------------------------


def test_the_two_rings_are_one_definition_with_two_sizes():
    elbo_ring, toy_ring = elbo.eight_gaussians(), toy.mixture_of("8gaussians")
    for ring, kwargs in ((elbo_ring, mixtures.ELBO_RING), (toy_ring, mixtures.TOY_RING)):
        expected = mixtures.ring8(**kwargs)
        assert np.array_equal(ring.means, expected.means)
        assert np.array_equal(ring.stds, expected.stds)
        assert np.allclose(np.linalg.norm(ring.means, axis=1), kwargs["radius"])
    assert np.allclose(np.arctan2(toy_ring.means[:, 1], toy_ring.means[:, 0]) % (2 * math.pi),
                       np.arange(8) * math.pi / 4)
    centers, std = toy.mixture("8gaussians")
    assert torch.equal(centers, torch.from_numpy(toy_ring.means)) and std == 0.04
    grid = toy.mixture_of("25gaussians")
    assert grid.means.shape == (25, 2) and np.array_equal(grid.means[1], [-2.0, -1.0])


def test_torch_draws_follow_the_mixture():
    ring = mixtures.ring8(**mixtures.TOY_RING)
    a = ring.sample_torch(4000, torch.Generator().manual_seed(0))
    b = toy.sample_mixture("8gaussians", 4000, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert a.double().var(0).tolist() == pytest.approx([2.0 + 0.04**2] * 2, rel=0.05)
    skewed = mixtures.three_gaussians_1d()
    x = skewed.sample_torch(20_000, torch.Generator().manual_seed(1))
    assert float((x < -0.4).double().mean()) == pytest.approx(0.3, abs=0.02)
    with pytest.raises(ValueError, match="equal weights"):
        skewed.reverse_kernel_sample(torch.zeros(1), 0.5, 0.1, 10)
