"""Tests of ddgan_core.metrics: FID/KID/PR/DC on the project's classifier features.

Deterministic and fast (the whole file takes well under a minute on 2 CPU cores). Tests that
need the FashionMNIST files are marked ``data`` and skipped with the reason when they are absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from ddgan_core.data import DatasetNotFoundError, find_dataset_dir
from ddgan_core.metrics import fid as fidm
from ddgan_core.metrics.evaluate import evaluate_samples, load_samples
from ddgan_core.metrics.features import (
    CHECKPOINT_SHA256,
    DEFAULT_CHECKPOINT,
    FEATURE_DIM,
    CheckpointError,
    extract_features,
    get_feature_extractor,
    load_feature_extractor,
    load_manifest,
)
from ddgan_core.metrics.prdc import compute_prdc
from ddgan_core.metrics.speed import measure_speed


def _have_data() -> bool:
    try:
        find_dataset_dir("train")
        find_dataset_dir("test")
    except DatasetNotFoundError:
        return False
    return True


HAVE_DATA = _have_data()
requires_data = pytest.mark.skipif(
    not HAVE_DATA,
    reason="FashionMNIST files not found (apt-get install dataset-fashion-mnist, or set "
    "FASHION_MNIST_DIR to a folder with the four IDX files)",
)
N = 2000  # images per generated set in the data tests
N_TRAIN_REF = 6000  # train images behind the test reference statistics


# ----------------------------------------------------------------------------------------------
# no data needed


def test_frechet_distance_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = fidm.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # the stand-in used with SciPy >= 1.18 (where clean-fid 0.1.35's sqrtm call fails)
    same = fidm._frechet_distance_same_as_cleanfid(mu1, np.diag(s1), mu2, np.diag(s2))
    assert same == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # rotating both Gaussians by the same orthogonal matrix leaves the distance unchanged
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    rotated = fidm.frechet_distance(
        q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T
    )
    assert rotated == pytest.approx(expected, rel=1e-6)
    assert fidm.frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0, abs=1e-6)


def test_kid_wrapper_is_clean_fids_estimator():
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(1)
    f1 = rng.normal(size=(300, 32)).astype(np.float32)
    f2 = rng.normal(0.3, 1.0, size=(250, 32)).astype(np.float32)
    with fidm.seeded_global_numpy(0):
        reference = kernel_distance(f1, f2, num_subsets=10, max_subset_size=100)
    mean, std = fidm.kid(f1, f2, num_subsets=10, max_subset_size=100, seed=0)
    assert mean == pytest.approx(reference, rel=1e-5)  # clean-fid sums subsets in float32
    mean64, _ = fidm.kid(f1, f2, num_subsets=10, max_subset_size=100, seed=0, dtype=np.float64)
    assert mean64 == pytest.approx(mean, abs=1e-6)
    assert std > 0
    assert fidm.kid(f1, f2, num_subsets=10, max_subset_size=100, seed=0) == (mean, std)


@pytest.mark.parametrize("n_real,n_fake,dim,k", [(300, 250, 64, 5), (200, 200, 16, 3)])
def test_prdc_agrees_with_prdc_package(n_real, n_fake, dim, k):
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(dim)
    real = rng.normal(size=(n_real, dim)).astype(np.float32)
    fake = (rng.normal(size=(n_fake, dim)) * 1.1 + 0.2).astype(np.float32)
    expected = prdc.compute_prdc(real, fake, k)
    got = compute_prdc(real, fake, nearest_k=k, chunk_size=97, device="cpu")
    for key in ("precision", "recall", "density", "coverage"):
        assert got[key] == pytest.approx(float(expected[key]), abs=1e-6), key


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    data = bytearray(DEFAULT_CHECKPOINT.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "classifier.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt.*sha256.*train classifier"):
        load_feature_extractor(bad, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        load_feature_extractor(tmp_path / "missing.safetensors", device="cpu")
    # a truncated file that is nonetheless "expected" fails to parse, also clearly
    bad.write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError, match="cannot be parsed"):
        load_feature_extractor(bad, device="cpu", expected_sha256=None)


def test_pinned_checkpoint_matches_manifest():
    manifest = load_manifest()
    assert manifest["sha256"] == CHECKPOINT_SHA256
    assert manifest["test_accuracy"] >= 0.92
    model = load_feature_extractor(device="cpu")
    assert model.sha256 == CHECKPOINT_SHA256
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert DEFAULT_CHECKPOINT.stat().st_size < 1_000_000


@pytest.mark.parametrize(
    "images,match",
    [
        (torch.zeros(4, 1, 28, 28) + 1.5, r"values in \[-1, 1\]"),
        (torch.rand(4, 1, 28, 28) * 255, r"values in \[-1, 1\]"),
        (torch.zeros(4, 28, 28), r"shape \[N, 1, 28, 28\]"),
        (torch.zeros(4, 3, 32, 32), r"shape \[N, 1, 28, 28\]"),
        (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), "uint8_to_model"),
        (torch.full((4, 1, 28, 28), float("nan")), r"values in \[-1, 1\]"),
    ],
)
def test_bad_images_are_clear_errors(images, match):
    with pytest.raises(ValueError, match=match):
        extract_features(images, device="cpu")


def test_fewer_samples_than_feature_dim_is_a_clear_error():
    feats = np.random.default_rng(0).normal(size=(FEATURE_DIM - 1, FEATURE_DIM))
    with pytest.raises(ValueError, match="more samples than the feature dimension"):
        fidm.feature_statistics(feats)
    with pytest.raises(ValueError, match="more samples than the feature dimension"):
        evaluate_samples(torch.zeros(100, 1, 28, 28), device="cpu")


def test_inception_skips_without_weights(tmp_path, monkeypatch):
    images = torch.zeros(8, 1, 28, 28)
    out = fidm.inception_fid(images, weights=tmp_path / "nowhere", device="cpu")
    assert out["inception_fid"] is None
    assert out["inception_status"].startswith("skipped: weights not found at ")
    assert str(tmp_path / "nowhere") in out["inception_status"]
    monkeypatch.delenv(fidm.INCEPTION_ENV, raising=False)
    out = fidm.inception_fid(images, device="cpu")
    assert out["inception_status"].startswith("skipped: weights not found at ")
    monkeypatch.setenv(fidm.INCEPTION_ENV, str(tmp_path / "x.pt"))
    out = fidm.inception_fid(images, device="cpu")
    assert out["inception_status"] == f"skipped: weights not found at {tmp_path / 'x.pt'}"


def test_load_samples_from_every_source(tmp_path):
    from PIL import Image

    from ddgan_core.data import uint8_to_model

    rng = np.random.default_rng(0)
    uint8 = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    expected = uint8_to_model(torch.from_numpy(uint8))
    np.savez(tmp_path / "s.npz", images=uint8)
    np.savez(tmp_path / "s4.npz", images=uint8[:, None])
    folder = tmp_path / "png"
    folder.mkdir()
    for i, img in enumerate(uint8):
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    calls = []

    def sampler(b):
        start = sum(calls)
        calls.append(b)
        return expected[start: start + b]

    for source in (tmp_path / "s.npz", str(tmp_path / "s4.npz"), folder, expected, uint8):
        assert torch.equal(load_samples(source), expected)
    assert torch.equal(load_samples(sampler, n=7, batch_size=3), expected)
    assert calls == [3, 3, 1]
    assert torch.equal(load_samples(folder, n=5), expected[:5])
    with pytest.raises(ValueError, match="required for a sampler"):
        load_samples(sampler)
    with pytest.raises(ValueError, match="holds 7"):
        load_samples(expected, n=8)
    np.savez(tmp_path / "bad.npz", x=uint8)
    with pytest.raises(ValueError, match="no key 'images'"):
        load_samples(tmp_path / "bad.npz")


def test_measure_speed_records_the_setup():
    def sampler(b):
        x = torch.zeros(b, 1, 28, 28)
        for _ in range(4):
            x = torch.tanh(x + 0.1)
        return x

    out = measure_speed(sampler, n_images=10, batch_size=4, nfe=4, device="cpu", repeats=3)
    assert out["nfe"] == 4 and out["batch_size"] == 4 and out["n_images"] == 10
    assert len(out["repeat_seconds"]) == 3
    assert out["seconds_total"] == sorted(out["repeat_seconds"])[1]
    assert out["images_per_s"] == pytest.approx(1 / out["seconds_per_image"])
    assert out["num_threads"] == torch.get_num_threads()
    assert out["dtype"] == "float32" and out["device"] == "cpu"


# ----------------------------------------------------------------------------------------------
# with the data set


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Reference statistics of 6,000 train images (cached in a temp dir), 2,000 test images,
    their features, and features of corrupted copies."""
    from ddgan_core.data import load_fashion_mnist

    torch.manual_seed(0)
    cache = tmp_path_factory.mktemp("cache")
    model = get_feature_extractor("cpu")
    ref = fidm.reference_stats(
        model=model, cache_dir=cache, device="cpu", max_train_images=N_TRAIN_REF,
        subset_size=N_TRAIN_REF,
    )
    test_x, test_y = load_fashion_mnist("test")
    idx = torch.from_numpy(ref["test_indices"][:N])
    real = test_x[idx]
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=gen)
    sets = {"noise_image": torch.rand(real.shape, generator=gen) * 2 - 1}
    for level in (0.1, 0.3, 0.6):
        sets[f"noise{level}"] = (real + level * noise).clamp(-1, 1)
    for sigma in (0.7, 1.2, 2.0):
        sets[f"blur{sigma}"] = TF.gaussian_blur(real, kernel_size=9, sigma=sigma)
    feats = {name: extract_features(x, model=model) for name, x in sets.items()}
    feats["test"] = torch.from_numpy(ref["test_features"][:N])
    return {"ref": ref, "feats": feats, "cache": cache, "model": model, "real": real}


def _fid(setup, name):
    ref = setup["ref"]
    return fidm.fid_from_features(setup["feats"][name], ref["mu"], ref["sigma"])


@pytest.mark.data
@requires_data
def test_reference_stats_are_cached_atomically(setup):
    ref = setup["ref"]
    path = setup["cache"] / "_reference_stats" / f"{setup['model'].sha256[:12]}_train6000.npz"
    assert ref["path"] == str(path) and path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    again = fidm.reference_stats(
        model=setup["model"], cache_dir=setup["cache"], max_train_images=N_TRAIN_REF,
        subset_size=N_TRAIN_REF,
    )
    assert np.array_equal(again["mu"], ref["mu"]) and np.array_equal(again["sigma"], ref["sigma"])
    assert again["sha256"] == setup["model"].sha256 and again["n_train"] == N_TRAIN_REF


@pytest.mark.data
@requires_data
def test_fid_orders_real_corrupted_and_noise(setup):
    real = _fid(setup, "test")
    noise = _fid(setup, "noise_image")
    assert real < noise / 20, (real, noise)
    noisy = [_fid(setup, f"noise{level}") for level in (0.1, 0.3, 0.6)]
    blurred = [_fid(setup, f"blur{sigma}") for sigma in (0.7, 1.2, 2.0)]
    assert real < noisy[0] < noisy[1] < noisy[2], (real, noisy)
    assert real < blurred[0] < blurred[1] < blurred[2], (real, blurred)


@pytest.mark.data
@requires_data
def test_kid_of_two_train_halves_is_near_zero(setup):
    sub = setup["ref"]["subset_features"]
    half = sub.shape[0] // 2
    mean, std = fidm.kid(sub[:half], sub[half:], num_subsets=50)
    assert abs(mean) < std, (mean, std)
    noise_mean, noise_std = fidm.kid(setup["feats"]["noise_image"], sub, num_subsets=20)
    assert noise_mean > 100 * max(abs(mean), std)


@pytest.mark.data
@requires_data
def test_precision_recall_same_set_and_mode_dropping(setup):
    from ddgan_core.data import load_fashion_mnist

    sub = setup["ref"]["subset_features"]
    same = compute_prdc(sub[:N], sub[N: 2 * N], nearest_k=5, device="cpu")
    assert same["precision"] > 0.8 and same["recall"] > 0.8, same
    assert 0.8 < same["density"] < 1.2 and same["coverage"] > 0.85, same
    # a "generator" that only makes 3 of the 10 classes: precise, but poor recall and coverage
    _, train_y = load_fashion_mnist("train")
    labels = train_y[torch.from_numpy(setup["ref"]["subset_indices"])]
    few = sub[N:][np.isin(labels[N:].numpy(), [0, 1, 7])][:N]
    dropped = compute_prdc(sub[:N], few, nearest_k=5, device="cpu")
    assert dropped["precision"] > 0.8, dropped
    assert dropped["recall"] < same["recall"] - 0.3, (same, dropped)
    assert dropped["coverage"] < 0.5, dropped


@pytest.mark.data
@requires_data
def test_evaluate_samples_reports_everything(setup):
    ref = setup["ref"]
    out = evaluate_samples(
        setup["real"][:1000], device="cpu", reference=ref, kid_subsets=10,
        inception=setup["cache"] / "no-inception",
    )
    for key in ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage",
                "fid_floor", "classifier_test_accuracy"):
        assert isinstance(out[key], float), key
    assert out["n_samples"] == 1000 and out["fid_floor_n"] == 1000 and out["n_real_prdc"] == 1000
    assert out["extractor"] == {"name": "fmnist-cnn-v1", "sha256": setup["model"].sha256}
    assert out["inception_fid"] is None and out["inception_status"].startswith("skipped")
    # these are test images: the result is the floor itself (same images, same reference)
    assert out["fid"] == pytest.approx(out["fid_floor"], rel=1e-4)
    floor_file = ref["path"].replace(".npz", "_floor.json")
    assert "n=1000,k=5,kid_subsets=10" in open(floor_file).read()
