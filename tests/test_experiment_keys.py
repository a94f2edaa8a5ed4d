"""Cache keys hold every setting that changes a number.

Each experiment of the book runs on the smoke profile with a profile that records which keys it
reads. Every key read must be part of the configuration (the cache key) of an entry that the call
produced, except the few that change no number (checkpoint cadence) or only choose which entries
exist (the step grid: each grid point's key holds its own K). A setting read but left out of the
key would let a cached number stand for a different computation (FID 83.21 cached against 82.52
recomputed when only ``eval_batch_size`` differed).
"""

from __future__ import annotations

import json

import pytest
from conftest import needs_data

from ddgan_core import experiments
from ddgan_core.cache import ResultCache, committed_root
from ddgan_core.profiles import get_profile

#: Keys read that must not be in a key: they change no number or select which entries exist.
NOT_IN_KEY = {
    "profile",                 # the profile's name is in every key under "profile"
    *experiments.CADENCE_KEYS,  # how often resumable checkpoints are written
    "ddpm_step_grid",          # which Fig. 1 points exist; each point's key holds its K
    "budget_minutes",          # 0 selects step-count training (the key holds the steps);
                               # a budget > 0 is in the key with its threads and device
    "solver_samplers",         # which solver-grid points exist; each point's key holds its
    "solver_steps",            # sampler, spacing and K
    "comparison_ddpm",         # which comparison rows exist; each row's key holds its sampler, K
    "comparison_reference",
    "hp_seeds",                # which hyper-parameter points exist; each point's key holds its
    "hp_timesteps",            # own seed and settings
    "hp_nz",
    "hp_r1_gamma",
    "hp_d_steps",
    "hp_channels",
    "kernel_study_losses",     # which chapter-6 runs exist; each run's key holds its loss
    "frontier_ddpm",           # which frontier points exist; each point's key holds its
                               # sampler, spacing and K (frontier_speed's key holds them all)
    "fast_sampling_ddpm",      # the same for their bf16 points (fast_sampling_speed's key
                               # holds them all)
    "toy_study_seeds",         # which toy runs exist; each run's key holds its seed, mixture
    "toy_study_mixtures",
    "ddgan_loss",              # in a key only when not "ns": a key without it means ns
    "budget_threads",          # a sweep point's threads: its time (in the manifest), not its
                               # numbers; a budgeted model's key holds them
}


class RecordingProfile(dict):
    """A profile that remembers every key read through ``[]`` or ``get``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


#: Profile keys stored in a key under another name.
RENAMED = {"ddpm_grid_samples": "n", "bootstrap_replicates": "bootstrap", "sweep_samples": "n",
           "sweep_steps": "ddgan_train_steps", "budget_ema_decay": "ddgan_ema_decay",
           "toy_study_steps": "steps", "toy_study_T": "T"}


class RecordingCache(ResultCache):
    """A result cache that remembers the configuration of every entry asked for."""

    def __init__(self, root):
        super().__init__(root)
        self.configs: list[dict] = []

    def load_or_run(self, name, config, compute, **kwargs):
        self.configs.append(config)
        return super().load_or_run(name, config, compute, **kwargs)


@needs_data
def test_every_setting_an_experiment_reads_is_in_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("DDGAN_CACHE_DIR", str(tmp_path / "cache"))
    for name, experiment in experiments.EXPERIMENTS.items():
        profile = RecordingProfile(get_profile("smoke"))
        cache = RecordingCache(tmp_path / "cache")  # one folder: dependencies computed once
        experiment(profile, cache)
        # a setting is in a key at its top level or one level down (a dict of settings)
        in_keys = {key for config in cache.configs for key in config} | {
            key for config in cache.configs for value in config.values()
            if isinstance(value, dict) for key in value}
        read = {RENAMED.get(key, key) for key in profile.read}
        missing = sorted(read - in_keys - NOT_IN_KEY)
        assert not missing, (
            f"experiment {name} reads {missing} from the profile, but no cache key it asked "
            "for holds them: add them to the experiment's configuration"
        )


class NoComputeCache(ResultCache):
    """Loads verified entries; asking for one that is missing fails instead of computing it."""

    def load_or_run(self, name, config, compute, **kwargs):
        result = self.load(name, config)
        if result is None:
            pytest.fail(f"{name} {self.path(name, config).name} is not in the committed results: "
                        "a change of its key rule or configuration would recompute it")
        return result


def test_every_key_holds_its_experiments_version_and_no_cadence():
    for path in ResultCache(committed_root()).entries():
        config = json.loads((path / "config.json").read_text())
        assert config["experiment_version"] == experiments.VERSIONS[path.parent.name], path
        assert not set(config) & set(experiments.CADENCE_KEYS), path


@pytest.mark.parametrize("name", sorted(experiments.EXPERIMENTS))
def test_committed_cpu_results_are_found_under_todays_keys(name):
    """Every experiment of the cpu profile resolves to a committed entry, so rendering the book
    recomputes nothing; a key change names the experiments it would recompute."""
    experiments.EXPERIMENTS[name](get_profile("cpu"), NoComputeCache(committed_root()))
