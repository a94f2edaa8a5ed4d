"""Training for a wall-clock budget (ddgan_core.budget): the plan, its reuse on resume."""

import json

import pytest
import torch
from conftest import needs_data

from ddgan_core import budget


def test_steps_for_budget():
    assert budget.steps_for_budget(60.0, 0.7) == 85
    assert budget.steps_for_budget(1.0, 5.0) == 1
    with pytest.raises(ValueError):
        budget.steps_for_budget(0.0, 1.0)


def _fake_train(seconds_per_step: float, images: int):
    calls = []

    def train(config, workdir, **kwargs):
        calls.append((dict(config), kwargs))
        steps = kwargs["stop_after"]
        history = [{"step": i + 1, "images_per_s": images / seconds_per_step}
                   for i in range(steps)]
        return {"history": history}

    return train, calls


def test_calibration_turns_step_times_into_steps(tmp_path):
    train, calls = _fake_train(0.5, 64 * 2)
    config = {"ddgan_batch_size": 64, "ddgan_d_steps": 2, "ddgan_train_steps": 10}
    plan = budget.calibrate_steps(train, config, "ddgan_train_steps", 30.0, tmp_path)
    assert plan["seconds_per_step"] == pytest.approx(0.5)
    assert plan["steps"] == 60 and plan["budget_s"] == 30.0
    # the probe's schedule is longer than any budget, and it neither logs sparsely nor saves
    probe_config, kwargs = calls[0]
    assert probe_config["ddgan_train_steps"] >= 10 ** 6
    assert kwargs["log_every"] == 1 and kwargs["checkpoint_every"] == 0
    assert not (tmp_path / "calibration").exists()


def test_a_resumed_run_keeps_its_plan(tmp_path):
    train, calls = _fake_train(0.25, 128)
    config = {"ddpm_batch_size": 128, "ddpm_train_steps": 10}
    first = budget.planned_steps(train, config, "ddpm_train_steps", 10.0, tmp_path)
    assert first["steps"] == 40 and len(calls) == 1
    again = budget.planned_steps(train, config, "ddpm_train_steps", 10.0, tmp_path)
    assert again == json.loads((tmp_path / budget.BUDGET_FILE).read_text()) and len(calls) == 1
    with pytest.raises(ValueError, match="another budget"):
        budget.planned_steps(train, config, "ddpm_train_steps", 20.0, tmp_path)


def test_num_threads_restores():
    before = torch.get_num_threads()
    with budget.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@needs_data
def test_a_budgeted_model_trains_the_calibrated_steps(tmp_path):
    """Through the cache: the key holds the minutes, threads and device instead of the step
    count, and the model trained exactly the steps its plan fitted into the budget."""
    from ddgan_core import experiments
    from ddgan_core.cache import ResultCache
    from ddgan_core.profiles import get_profile

    profile = get_profile("smoke", budget_minutes=0.01, budget_threads=1)
    result = experiments.ddpm_budget_model(profile, ResultCache(tmp_path))
    assert "ddpm_train_steps" not in result.config
    assert result.config["budget_minutes"] == 0.01 and result.config["device"] == "cpu"
    plan = result.metrics["budget"]
    assert plan["budget_s"] == pytest.approx(0.6) and plan["threads"] == 1
    assert result.metrics["train_steps"] == plan["steps"] >= 1
    assert not (result.path / budget.BUDGET_FILE).exists()
    # without a budget, the same experiment trains for ddpm_train_steps and keys them
    fixed = experiments.ddpm_budget_model(get_profile("smoke"), ResultCache(tmp_path))
    assert fixed.config["ddpm_train_steps"] == 6 and fixed.metrics["budget"] is None
