"""Tests of ddgan_core.metrics.uncertainty: bootstrap uncertainty over the generated samples.

Synthetic features only (no data set, no extractor); deterministic; ~15 s on one thread.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ddgan_core.metrics import uncertainty as unc
from ddgan_core.metrics.fid import feature_statistics, fid_from_features
from ddgan_core.metrics.prdc import compute_prdc, nearest_neighbour_radii

torch.set_num_threads(1)


def _gaussians(seed: int, n: int, d: int, shift: float = 0.0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    return (shift + scale * rng.normal(size=(n, d))).astype(np.float32)


def _reference(d: int, n_train: int = 20_000, n_subset: int = 2_000) -> dict:
    """Reference statistics of a standard Gaussian 'real' distribution, shaped like
    ``reference_stats``' result."""
    train = _gaussians(100, n_train, d)
    mu, sigma = feature_statistics(train)
    return {"mu": mu, "sigma": sigma, "subset_features": train[:n_subset]}


def _boot(gen, ref, n_boot=100, seed=0, k=5):
    n_real = min(gen.shape[0], ref["subset_features"].shape[0])
    real = ref["subset_features"][:n_real]
    radii = nearest_neighbour_radii(real, k, device="cpu")
    return unc.bootstrap_metrics(
        torch.from_numpy(gen), ref, n_boot=n_boot, seed=seed, k=k, device="cpu",
        real_radii=radii, real_features=real, kid_subsets=10,
    ), real, radii


def _points(gen, ref, real, radii, k=5) -> dict:
    return {
        "fid": fid_from_features(gen, ref["mu"], ref["sigma"]),
        **compute_prdc(real, gen, nearest_k=k, device="cpu", real_radii=radii),
    }


# ----------------------------------------------------------------------------------------------
# building blocks


def test_resample_counts_are_seeded_draws_with_replacement():
    a = unc.resample_counts(50, 20, seed=3)
    assert a.shape == (20, 50) and (a.sum(axis=1) == 50).all() and (a >= 0).all()
    assert np.array_equal(a, unc.resample_counts(50, 20, seed=3))
    assert not np.array_equal(a, unc.resample_counts(50, 20, seed=4))
    # with replacement: about 1 - 1/e of the originals are drawn in a replicate
    assert 0.55 < (a > 0).mean() < 0.71


def test_distinct_neighbour_radius_on_a_hand_made_example():
    # points on a line at 0, 1, 3, 6, 10; the replicate drew 0 three times, 6 twice, 3 and 10
    # once, and 1 never
    x = np.array([[0.0, 0], [1, 0], [3, 0], [6, 0], [10, 0]])
    counts = np.array([3, 0, 1, 2, 1])
    radii = unc.distinct_neighbour_radii(x, counts, k=2, device="cpu")
    # k=2 among the distinct present others: 0 -> {3, 6, 10}; 3 -> {0, 6, 10}; 6 -> {3, 10, 0};
    # 10 -> {6, 3, 0}. A naive k-NN in the multiset would give 0 for points 0 and 6 (copies).
    assert np.isnan(radii[1])
    np.testing.assert_allclose(radii[[0, 2, 3, 4]], [6.0, 3.0, 4.0, 7.0])
    # the precomputed neighbour lists give the same radii, also when the lists are too short
    # for the replicate (neighbours=2 leaves point 0 with one present neighbour in its list:
    # the exact fallback)
    for neighbours in (2, 4):
        facts = unc.prdc_facts(x[:2], x, k=2, device="cpu", neighbours=neighbours,
                               real_radii=torch.ones(2))
        pos, ok = unc._kth_present_position(facts, counts > 0)
        listed = np.sqrt(facts.neigh_sq[np.arange(5), pos])
        present_ok = (counts > 0) & ok
        np.testing.assert_allclose(listed[present_ok], radii[present_ok])
        # with two-long lists, points 0 and 3 (whose second neighbour is a tie) run short
        assert ok[[3, 4]].all() and ok[0] == ok[2] == (neighbours > 2)
    # all present once: the radius compute_prdc uses
    ones = unc.distinct_neighbour_radii(x, np.ones(5, dtype=int), k=2, device="cpu")
    np.testing.assert_allclose(ones, nearest_neighbour_radii(x, 2, device="cpu").numpy())
    np.testing.assert_allclose(ones, [3.0, 2.0, 3.0, 4.0, 7.0])


def test_weighted_prdc_at_all_ones_is_compute_prdc():
    real, gen = _gaussians(1, 700, 8), _gaussians(2, 600, 8, shift=0.3, scale=0.8)
    radii = nearest_neighbour_radii(real, 5, device="cpu")
    facts = unc.prdc_facts(real, gen, k=5, real_radii=radii, device="cpu")
    got = unc.weighted_prdc(facts, np.ones(600, dtype=np.int64))
    want = compute_prdc(real, gen, nearest_k=5, device="cpu", real_radii=radii)
    assert got == want  # exactly: the same distances, the same decisions
    assert all(0.1 < want[key] < 1 for key in ("precision", "recall", "coverage")), want


def test_weighted_prdc_of_a_replicate_matches_brute_force():
    real, gen = _gaussians(3, 400, 6), _gaussians(4, 300, 6, shift=0.2)
    radii = nearest_neighbour_radii(real, 3, device="cpu")
    short = unc.prdc_facts(real, gen, k=3, real_radii=radii, device="cpu", neighbours=4)
    long = unc.prdc_facts(real, gen, k=3, real_radii=radii, device="cpu")
    rng = np.random.default_rng(0)
    for counts in unc.resample_counts(300, 5, seed=7):
        idx = np.repeat(np.arange(300), counts)
        rng.shuffle(idx)
        # precision, density and coverage of the resampled multiset itself
        direct = compute_prdc(real, gen[idx], nearest_k=3, device="cpu", real_radii=radii)
        # recall with the distinct-neighbour radii, by brute force
        r = unc.distinct_neighbour_radii(gen, counts, k=3, device="cpu")
        present = counts > 0
        d = np.linalg.norm(gen[present][:, None, :].astype(np.float64) - real[None], axis=2)
        recall = float((d < r[present][:, None]).any(axis=0).mean())
        for facts in (short, long):  # neighbours=4: most radii come from the exact fallback
            got = unc.weighted_prdc(facts, counts)
            for key in ("precision", "density", "coverage"):
                assert got[key] == pytest.approx(direct[key], abs=1e-12), key
            assert got["recall"] == pytest.approx(recall, abs=1e-12)
        assert direct["recall"] < recall  # the naive multiset radii (copies: zero) undercount


def test_fid_replicates_equal_frechet_distance_of_the_resample():
    ref = _reference(12, n_train=3000)
    gen = _gaussians(5, 400, 12, shift=0.2, scale=1.1)
    counts = unc.resample_counts(400, 3, seed=0)
    got = unc.fid_replicates(gen, ref["mu"], ref["sigma"], np.vstack([np.ones(400), counts]))
    assert got[0] == pytest.approx(fid_from_features(gen, ref["mu"], ref["sigma"]), rel=1e-9)
    for b, row in enumerate(counts, start=1):
        resampled = np.repeat(gen, row, axis=0)
        assert got[b] == pytest.approx(fid_from_features(resampled, ref["mu"], ref["sigma"]),
                                       rel=1e-8)


def test_kid_statistic_is_the_unbiased_mmd_without_copies():
    from cleanfid.fid import kernel_distance

    gen, real = _gaussians(6, 120, 5, shift=0.3), _gaussians(7, 120, 5)
    d = gen.shape[1]

    def kern(a, b):
        return (a.astype(np.float64) @ b.astype(np.float64).T / d + 1) ** 3

    krr = kern(real, real)
    real_term = (krr.sum() - np.trace(krr)) / (120 * 119)
    # all ones: the full-sample estimate, which is clean-fid's with one subset of all samples
    stat = unc.kid_statistic_replicates(gen, real, np.ones((1, 120)))[0]
    assert stat + real_term == pytest.approx(
        kernel_distance(gen.astype(np.float64), real.astype(np.float64), num_subsets=1),
        rel=1e-9, abs=1e-12)
    # a replicate: mean kernel over drawn pairs that are not copies of one original
    counts = unc.resample_counts(120, 1, seed=1)[0]
    idx = np.repeat(np.arange(120), counts)
    kgg = kern(gen[idx], gen[idx])
    other = idx[:, None] != idx[None, :]
    want = kgg[other].mean() - 2 * kern(gen[idx], real).mean()
    assert unc.kid_statistic_replicates(gen, real, counts[None])[0] == pytest.approx(want,
                                                                                    rel=1e-9)


def test_percentile_summary_is_bias_corrected():
    values = np.arange(1.0, 101.0)  # mean 50.5
    s = unc.percentile_summary(values, point=40.5)
    assert s["bias"] == pytest.approx(10.0) and s["n_boot"] == 100
    assert s["lo"] == pytest.approx(np.percentile(values, 2.5) - 10)
    assert s["hi"] == pytest.approx(np.percentile(values, 97.5) - 10)
    assert s["std"] == pytest.approx(values.std(ddof=1))
    clipped = unc.percentile_summary(values, point=70.5, bounds=(0.0, 60.0))
    assert clipped["hi"] == 60.0 and clipped["lo"] == pytest.approx(np.percentile(values, 2.5) + 20)
    assert "bias" not in unc.percentile_summary(values)


# ----------------------------------------------------------------------------------------------
# bootstrap_metrics


def test_intervals_contain_the_estimate_and_shrink_with_n():
    ref = _reference(16)
    out = {}
    for n in (500, 2000):
        gen = _gaussians(8, n, 16, shift=0.15, scale=1.1)
        boot, real, radii = _boot(gen, ref, n_boot=100)
        points = _points(gen, ref, real, radii)
        for name in ("fid", "precision", "recall", "density", "coverage"):
            u = boot[name]
            assert u["lo"] <= points[name] <= u["hi"], (n, name, points[name], u)
            assert u["std"] > 0 and u["n_boot"] == 100, (n, name, u)
        assert boot["kid"]["lo"] < boot["kid"]["hi"] and boot["kid"]["std"] > 0
        # precision and density are linear in the weights: their replicates centre on the
        # estimate (bias well under a standard deviation)
        for name in ("precision", "density"):
            assert abs(boot[name]["bias"]) < 0.3 * boot[name]["std"], (n, name, boot[name])
        out[n] = boot
    for name in unc.BOOTSTRAP_METRICS:
        small, large = out[500][name], out[2000][name]
        assert large["std"] < 0.75 * small["std"], (name, small, large)
        assert large["hi"] - large["lo"] < 0.75 * (small["hi"] - small["lo"]), (name, small, large)


def test_same_seed_same_intervals():
    ref = _reference(8, n_train=4000)
    gen = _gaussians(9, 300, 8, shift=0.2)
    a, _, _ = _boot(gen, ref, n_boot=30, seed=5)
    b, _, _ = _boot(gen, ref, n_boot=30, seed=5)
    c, _, _ = _boot(gen, ref, n_boot=30, seed=6)
    assert a == b
    assert a != c


def test_bootstrap_of_2000_128d_features_is_fast():
    ref = _reference(128, n_train=6000, n_subset=4000)
    gen = _gaussians(10, 2000, 128, shift=0.05)
    t = time.perf_counter()
    boot, _, _ = _boot(gen, ref, n_boot=200)
    seconds = time.perf_counter() - t
    assert seconds < 30, seconds
    assert all(boot[name]["n_boot"] == 200 for name in unc.BOOTSTRAP_METRICS)


def test_bad_replicate_count_is_refused():
    ref = _reference(4, n_train=500)
    with pytest.raises(ValueError, match="n_boot"):
        _boot(_gaussians(0, 100, 4), ref, n_boot=1)
