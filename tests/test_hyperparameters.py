"""The hyper-parameter study: class histograms, the deterministic generator, the grid of points,
one sweep point end to end, and sweeping an experiment from the command line."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from conftest import needs_data

from ddgan_core import ddgan, experiments, sweep
from ddgan_core.cache import ResultCache
from ddgan_core.cli import main
from ddgan_core.metrics.classes import COVERED_SHARE, histogram_statistics
from ddgan_core.profiles import get_profile

# --------------------------------------------------------------------------------------------
# class histograms


def test_uniform_labels_cover_every_class_with_zero_kl():
    stats = histogram_statistics(torch.arange(10).repeat(7))
    assert stats["classes_covered"] == 10
    assert stats["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert stats["counts"] == [7] * 10 and stats["n"] == 70


def test_one_class_is_the_largest_kl_and_one_class_covered():
    stats = histogram_statistics(torch.full((50,), 3))
    assert stats["classes_covered"] == 1
    assert stats["kl_to_uniform"] == pytest.approx(math.log(10))
    assert stats["max_share"] == 1.0 and stats["min_share"] == 0.0


def test_a_class_counts_as_covered_from_a_quarter_of_its_share():
    threshold = COVERED_SHARE / 10  # 2.5% of the samples
    n = 1000
    below = int(threshold * n) - 1  # 24 samples of class 9: not covered
    labels = torch.cat([torch.zeros(n - below, dtype=torch.long),
                        torch.full((below,), 9)])
    assert histogram_statistics(labels)["classes_covered"] == 1
    at = int(threshold * n)  # 25 samples: covered
    labels = torch.cat([torch.zeros(n - at, dtype=torch.long), torch.full((at,), 9)])
    assert histogram_statistics(labels)["classes_covered"] == 2


def test_kl_to_uniform_matches_its_formula():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])
    p = torch.tensor([0.6, 0.3, 0.1])
    expected = float((p * torch.log(10 * p)).sum())
    assert histogram_statistics(labels)["kl_to_uniform"] == pytest.approx(expected)


@pytest.mark.parametrize("labels", [torch.tensor([], dtype=torch.long), torch.tensor([0, 10]),
                                    torch.tensor([-1])])
def test_bad_labels_are_refused(labels):
    with pytest.raises(ValueError):
        histogram_statistics(labels)


@needs_data
def test_real_test_images_are_near_uniform():
    from ddgan_core.data import load_fashion_mnist
    from ddgan_core.metrics.classes import class_histogram

    images = load_fashion_mnist("test")[0][:1000]
    stats = class_histogram(images, "cpu")
    assert stats["classes_covered"] == 10
    assert stats["kl_to_uniform"] < 0.05  # the classifier's errors only: the chapter's floor
    assert sum(stats["counts"]) == 1000


# --------------------------------------------------------------------------------------------
# the deterministic generator (ddgan_nz = 0)

TINY = {"ddgan_timesteps": 2, "ddgan_nz": 0, "ddgan_channels": [4, 8, 8],
        "ddgan_res_blocks": 1, "ddgan_d_channels": [4, 8, 8], "ddgan_d_head": "flatten"}


def test_a_generator_without_latent_ignores_z_and_has_no_mapping():
    torch.manual_seed(0)
    G = ddgan.make_generator(TINY)
    assert G.net.mapping is None
    x_t, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 1, 1])
    out_a = G(x_t, t, torch.randn(3, 0))
    out_b = G(x_t, t, torch.zeros(3, 0))
    assert torch.equal(out_a, out_b)
    with_z = ddgan.make_generator({**TINY, "ddgan_nz": 4})
    assert sum(p.numel() for p in with_z.parameters()) > sum(p.numel() for p in G.parameters())


def test_a_negative_latent_size_is_refused():
    with pytest.raises(ValueError, match="ddgan_nz=-1"):
        ddgan.make_generator({**TINY, "ddgan_nz": -1})
    with pytest.raises(ValueError):
        get_profile("smoke", ddgan_nz=-1)


def test_sampling_without_latent_is_deterministic_given_the_chain_noise():
    torch.manual_seed(0)
    G = ddgan.make_generator(TINY)
    diffusion = ddgan.make_ddgan_diffusion(2)
    a, nfe = ddgan.ddgan_sample(G, diffusion, 4, 0, seed=5, device="cpu", progress=False)
    b, _ = ddgan.ddgan_sample(G, diffusion, 4, 0, seed=5, device="cpu", progress=False)
    assert nfe == 2 and torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# the grid


def test_the_cpu_grid_has_each_run_once():
    profile = get_profile("cpu")
    points = experiments.hyperparameter_points(profile)
    values = sum(len(profile[k]) for _, k in experiments.HYPERPARAMETER_FACTORS)
    # each factor's list holds the centre's own value once: those points are the centre run
    centres = sum(profile[key] in profile[k] for key, k in experiments.HYPERPARAMETER_FACTORS)
    seeds = len(profile["hp_seeds"])
    assert len(points) == (1 + values - centres) * seeds
    assert points[: seeds] == [{"seed": s} for s in profile["hp_seeds"]]  # the centre first
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)


def test_one_seed_restricts_the_grid():
    profile = get_profile("cpu")
    points = experiments.hyperparameter_points(profile, seeds=[1])
    assert {p["seed"] for p in points} == {1}
    assert len(points) * 2 == len(experiments.hyperparameter_points(profile))


def test_a_bad_grid_value_fails_before_any_run():
    profile = get_profile("smoke")
    profile["hp_d_steps"] = [1, 0]
    with pytest.raises(ValueError, match="ddgan_d_steps"):
        experiments.hyperparameter_points(profile)


def test_the_sweep_point_key_holds_the_sweep_length_not_the_models_steps():
    profile = get_profile("cpu")
    config = experiments._sweep_point_config(profile)
    assert config["ddgan_train_steps"] == profile["sweep_steps"]
    assert config["n"] == profile["sweep_samples"]
    assert config["ddgan_ema_decay"] == profile["budget_ema_decay"]
    other = experiments._sweep_point_config({**profile, "ddgan_train_steps": 1})
    assert other == config  # the chapter-4 step count does not enter a sweep point


# --------------------------------------------------------------------------------------------
# aggregation over seeds


def _row(value, seed, fid, lo, hi):
    return {"profile": "cpu", "ddgan_nz": value, "seed": seed, "fid": fid, "fid_lo": lo,
            "fid_hi": hi, "classes_covered": 10 - seed, "label": "text"}


def test_aggregates_are_means_ranges_and_the_union_of_intervals():
    rows = [_row(0, 0, 10.0, 9.0, 11.0), _row(0, 1, 14.0, 13.0, 16.0),
            _row([4, 8], 0, 20.0, 19.0, 21.0)]
    aggs = sweep.aggregate_seeds(rows, "ddgan_nz")
    assert [a["ddgan_nz"] for a in aggs] == [0, [4, 8]]
    first = aggs[0]
    assert first["fid"] == 12.0 and first["fid_min"] == 10.0 and first["fid_max"] == 14.0
    assert (first["fid_lo"], first["fid_hi"]) == (9.0, 16.0)
    assert first["classes_covered_min"] == 9 and first["seeds"] == [0, 1]
    assert "label" not in first  # text columns are not averaged
    assert not sweep.intervals_overlap(aggs[0], aggs[1], "fid")
    assert sweep.intervals_overlap(aggs[0], {"fid_lo": 15.5, "fid_hi": 30.0}, "fid")


# --------------------------------------------------------------------------------------------
# one point end to end, and the command line


@needs_data
def test_a_sweep_point_trains_scores_and_is_read_back(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    profile = get_profile("smoke", ddgan_nz=0)
    result = experiments.ddgan_sweep_point(profile, cache)
    assert result.computed
    row = experiments.sweep_point_summary(result)
    for name in ("fid", "recall", "coverage"):
        assert row[f"{name}_lo"] is not None and row[f"{name}_hi"] is not None
    assert 1 <= row["classes_covered"] <= 10
    assert 0.0 <= row["kl_to_uniform"] <= math.log(10) + 1e-9
    assert row["seconds_per_image"] > 0 and row["train_minutes"] > 0
    assert result.metrics["train"]["train_steps"] == profile["sweep_steps"]
    files = set(result.metrics and [p.name for p in result.path.iterdir()])
    assert "samples.png" in files
    assert ddgan.GENERATOR_FILE not in files and "checkpoint.pt" not in files
    again = experiments.ddgan_sweep_point(profile, cache)
    assert not again.computed and again.key == result.key


def _fake_point(profile, cache):
    """A cheap stand-in for ddgan_sweep_point: a Result-like with the summary's fields."""
    class Fake:
        key = f"k{profile['ddgan_nz']}-{profile['seed']}"
        computed = True
        metrics = {"fid": 10.0 + profile["ddgan_nz"] + profile["seed"]}
    return Fake()


def _fake_summary(result):
    fid = result.metrics["fid"]
    return {"fid": fid, "fid_lo": fid + 0.5, "fid_hi": fid + 1.0}  # interval above the value


def test_an_experiment_sweep_writes_rows_plot_and_record(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "sweep_experiments",
                        lambda: {"ddgan_sweep_point": (_fake_point, _fake_summary)})
    csv_path, plot = sweep.run_experiment_sweep(
        "ddgan_sweep_point", {"ddgan_nz": [0, 4], "seed": [0, 1]}, "smoke", tmp_path / "out")
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["ddgan_nz"], r["seed"]) for r in rows] == [("0", "0"), ("0", "1"), ("4", "0"),
                                                          ("4", "1")]
    assert float(rows[3]["fid"]) == 15.0
    assert plot.stat().st_size > 1000  # error bars below 0 are clipped, not an error
    record = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert record["experiment"] == "ddgan_sweep_point"
    assert record["points"][1]["cache_entries"][0]["key"] == "k0-1"


def test_an_experiment_sweep_plots_list_values_by_label(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "sweep_experiments", lambda: {"ddgan_sweep_point": (
        lambda p, c: _fake_point({**p, "ddgan_nz": p["ddgan_channels"][0]}, c),
        _fake_summary)})
    _, plot = sweep.run_experiment_sweep(
        "ddgan_sweep_point", {"ddgan_channels": [[8, 16, 16], [16, 32, 32]]}, "smoke",
        tmp_path / "out")
    assert plot.exists()


def test_the_command_line_refuses_a_bad_value_before_any_point(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(sweep, "sweep_experiments", lambda: {"ddgan_sweep_point": (
        lambda p, c: calls.append(p) or _fake_point(p, c), _fake_summary)})
    code = main(["sweep", "ddgan_sweep_point", "-p", "ddgan_nz", "4", "-1", "--profile", "smoke",
                 "--out", str(tmp_path / "out")])
    assert code != 0 and not calls
    assert "ddgan_nz" in capsys.readouterr().err


def test_an_unknown_experiment_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match="ddgan_sweep_point"):
        sweep.experiment_rows("no_such_experiment", get_profile("smoke"), {"seed": [0]})


def test_training_config_without_keys_is_the_full_config_less_them_read_or_not():
    class Reads(dict):
        def __init__(self, *args):
            super().__init__(*args)
            self.read = set()

        def __getitem__(self, key):
            self.read.add(key)
            return super().__getitem__(key)

    profile = Reads(get_profile("cpu"))
    full = ddgan.training_config(dict(profile))
    less = ddgan.training_config(profile, without=("seed", "ddgan_train_steps"))
    assert less == {k: v for k, v in full.items() if k not in ("seed", "ddgan_train_steps")}
    assert not profile.read & {"seed", "ddgan_train_steps"}
    assert "ddgan_loss" not in full  # the ns loss is left out of keys
    assert ddgan.training_config({**profile, "ddgan_loss": "hinge"})["ddgan_loss"] == "hinge"
