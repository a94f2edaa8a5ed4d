"""Tests of the second feature extractor (``fmnist-cnn-b``) and of ``evaluate_samples``'
``bootstrap`` and ``second_extractor`` options.

Deterministic; ~30 s on one thread. Tests that need the FashionMNIST files are marked ``data``
and skipped with the reason when they are absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import needs_data

from ddgan_core.metrics import fid as fidm
from ddgan_core.metrics import second
from ddgan_core.metrics.evaluate import evaluate_samples
from ddgan_core.metrics.features import CheckpointError, get_feature_extractor
from ddgan_core.metrics.uncertainty import BOOTSTRAP_METRICS

torch.set_num_threads(1)

N_TRAIN_REF = 6000  # train images behind the test reference statistics (both extractors)
N = 300  # test images scored as "generated"
#: The keys of an evaluate_samples result with the default options (before these options).
DEFAULT_KEYS = {
    "n_samples", "fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "k",
    "n_real_prdc", "n_real_kid", "n_train_fid", "extractor", "classifier_test_accuracy",
    "device", "num_threads", "fid_floor", "fid_floor_n", "floor", "inception_fid",
    "inception_status", "timings_s",
}
DEFAULT_TIMINGS = {"load", "imports", "features", "fid", "kid", "prdc", "floor", "inception",
                   "total"}


# ----------------------------------------------------------------------------------------------
# the pinned checkpoint


def test_pinned_second_extractor_matches_its_manifest():
    manifest = second.load_second_manifest()
    assert manifest["name"] == second.SECOND_NAME == "fmnist-cnn-b"
    assert manifest["sha256"] == second.SECOND_SHA256
    assert manifest["test_accuracy"] > 0.90
    for key in ("config", "torch_version", "train_wall_time_s", "architecture"):
        assert manifest[key], key
    assert manifest["config"]["augmentation"] == "none"
    model = second.load_second_extractor(device="cpu")
    assert model.sha256 == second.SECOND_SHA256 and model.extractor_name == "fmnist-cnn-b"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # independent of v1: another architecture, no BatchNorm, another feature dimension
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, second.SECOND_FEATURE_DIM)
    assert second.SECOND_FEATURE_DIM != 128
    assert second.SECOND_CHECKPOINT.stat().st_size < 1_000_000


def test_modified_second_checkpoint_is_refused(tmp_path):
    data = bytearray(second.SECOND_CHECKPOINT.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "fmnist_cnn_b.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt.*sha256.*git checkout.*retrain"):
        second.load_second_extractor(bad, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        second.load_second_extractor(tmp_path / "missing.safetensors", device="cpu")
    # v1's checkpoint is a valid file but not this extractor
    from ddgan_core.metrics.features import DEFAULT_CHECKPOINT

    with pytest.raises(CheckpointError, match="does not fit fmnist-cnn-b"):
        second.load_second_extractor(DEFAULT_CHECKPOINT, device="cpu", expected_sha256=None)


@needs_data
@pytest.mark.data
def test_training_entry_point_is_reproducible_and_guards_the_asset(tmp_path):
    with pytest.raises(ValueError, match="refusing to write"):
        second.train_second_extractor(out=second.SECOND_CHECKPOINT, epochs=1)
    runs = [
        second.train_second_extractor(out=tmp_path / f"b{i}.safetensors", epochs=1,
                                      max_train_images=512, log=lambda _: None)
        for i in range(2)
    ]
    assert runs[0]["sha256"] == runs[1]["sha256"]
    manifest = json.loads((tmp_path / "b0.json").read_text())
    assert manifest["sha256"] == runs[0]["sha256"] and manifest["config"]["seed"] == 1
    model = second.load_second_extractor(tmp_path / "b0.safetensors", device="cpu",
                                         expected_sha256=runs[0]["sha256"])
    assert model.sha256 == runs[0]["sha256"]


# ----------------------------------------------------------------------------------------------
# evaluate_samples with the new options


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Small reference statistics (6,000 train images) for both extractors and N test images
    in the references' test order (so they are exactly the floor's images)."""
    from ddgan_core.data import load_fashion_mnist

    cache = tmp_path_factory.mktemp("cache")
    refs = {}
    for name, model in (("v1", get_feature_extractor("cpu")),
                        ("b", second.get_second_extractor("cpu"))):
        refs[name] = fidm.reference_stats(
            model=model, cache_dir=cache, device="cpu", max_train_images=N_TRAIN_REF,
            subset_size=N_TRAIN_REF,
        )
    test_x, _ = load_fashion_mnist("test")
    real = test_x[torch.from_numpy(refs["v1"]["test_indices"][:N])]
    common = {"device": "cpu", "kid_subsets": 10, "inception": cache / "no-inception"}
    plain = evaluate_samples(real, reference=refs["v1"], **common)
    rich = evaluate_samples(real, reference=refs["v1"], bootstrap=50, bootstrap_seed=3,
                            second_extractor=True, second_reference=refs["b"], **common)
    return {"refs": refs, "real": real, "plain": plain, "rich": rich, "cache": cache,
            "common": common}


@needs_data
@pytest.mark.data
def test_default_output_is_unchanged(setup):
    plain = setup["plain"]
    assert set(plain) == DEFAULT_KEYS
    assert set(plain["timings_s"]) == DEFAULT_TIMINGS
    assert plain["extractor"]["name"] == "fmnist-cnn-v1"
    # the options add keys and change none of the first extractor's numbers
    rich = setup["rich"]
    assert set(rich) == DEFAULT_KEYS | {"uncertainty", "bootstrap", "second"}
    for key in DEFAULT_KEYS - {"timings_s", "num_threads"}:
        assert rich[key] == plain[key], key


@needs_data
@pytest.mark.data
def test_bootstrap_and_second_extractor_keys(setup):
    rich, refs = setup["rich"], setup["refs"]
    assert rich["bootstrap"] == {"replicates": 50, "over": "generated samples", "seed": 3}
    for part in (rich, rich["second"]):
        assert set(part["uncertainty"]) == set(BOOTSTRAP_METRICS)
        for name, u in part["uncertainty"].items():
            assert set(u) >= {"std", "lo", "hi", "n_boot"} and u["n_boot"] == 50, name
            assert u["lo"] <= part[name] <= u["hi"], (name, part[name], u)
    sec = rich["second"]
    assert sec["extractor"] == {"name": "fmnist-cnn-b", "sha256": second.SECOND_SHA256}
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "fid_floor"):
        assert isinstance(sec[key], float), key
    assert sec["n_train_fid"] == N_TRAIN_REF and sec["fid_floor_n"] == N
    # the samples are the floor's own test images: their FID is the floor, and the floor is
    # small next to that of noise images on the same extractor
    assert sec["fid"] == pytest.approx(sec["fid_floor"], rel=1e-6)
    noise = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise_fid = fidm.fid_from_features(second.extract_second_features(noise, device="cpu"),
                                       refs["b"]["mu"], refs["b"]["sigma"])
    assert sec["fid_floor"] < noise_fid / 20, (sec["fid_floor"], noise_fid)
    assert sec["precision"] > 0.7 and sec["recall"] > 0.7, sec
    # the second extractor's reference file is its own, keyed by its checksum
    assert refs["b"]["path"] != refs["v1"]["path"]
    assert second.SECOND_SHA256[:12] in refs["b"]["path"] and refs["b"]["name"] == "fmnist-cnn-b"
    # the same seed gives the same intervals; the report shows them
    from ddgan_core.metrics.evaluate import format_report

    again = evaluate_samples(setup["real"], reference=refs["v1"], bootstrap=50, bootstrap_seed=3,
                             with_floor=False, **setup["common"])
    assert again["uncertainty"] == rich["uncertainty"]
    text = format_report(rich)
    assert "bootstrap    50 replicates" in text and "fmnist-cnn-b" in text


@pytest.mark.parametrize("value", [1, -1, 2.5, True])
def test_bad_bootstrap_count_is_refused_before_any_work(value):
    with pytest.raises(ValueError, match="bootstrap="):
        evaluate_samples(np.zeros((10, 28, 28), dtype=np.uint8), device="cpu", bootstrap=value)
