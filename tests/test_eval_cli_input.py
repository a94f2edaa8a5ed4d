"""``eval`` and ``train classifier`` input checks: one clear line before any long work.

Feature extraction and training are replaced by stubs that fail loudly, so every check here must
fire before them; nothing loads the extractor, the reference statistics or FashionMNIST.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from ddgan_core import cli
from ddgan_core.data import uint8_to_model
from ddgan_core.metrics import evaluate, features

N_IMAGES = 200  # more than the feature dimension, so the old code reached feature extraction


class Reached(Exception):
    """A stub of long work (feature extraction, training) was called."""


@pytest.fixture
def no_long_work(monkeypatch):
    """Make feature extraction (and the slow cleanfid import) raise :class:`Reached`."""

    def reached(*args, **kwargs):
        raise Reached("feature extraction was reached")

    monkeypatch.setattr(evaluate, "get_feature_extractor", reached)
    monkeypatch.setattr(evaluate, "extract_features", reached)
    monkeypatch.setattr(evaluate, "reference_stats", reached)


@pytest.fixture
def uint8_file(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (N_IMAGES, 28, 28), dtype=np.uint8)
    path = tmp_path / "samples.npz"
    np.savez(path, images=images)
    return path


def _npz(tmp_path, name="s.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--k", "0"], r"--k 0: .*>= 1"),
        (["--k", "-3"], r"--k -3: .*>= 1"),
        (["--n", "0"], r"--n 0: .*>= 1"),
        (["--n", "-5"], r"--n -5: .*>= 1"),
    ],
)
def test_bad_k_and_n_fail_before_feature_extraction(uint8_file, no_long_work, extra, match):
    with pytest.raises(ValueError, match=match):
        evaluate.cli_eval(["--samples", str(uint8_file), *extra])


def test_n_larger_than_the_file_names_both_counts(uint8_file, no_long_work):
    allowed = rf"holds {N_IMAGES} images \(allowed: 1 to {N_IMAGES}\)"
    with pytest.raises(ValueError, match=rf"--n 500: .*{allowed}"):
        evaluate.cli_eval(["--samples", str(uint8_file), "--n", "500"])


def test_missing_samples_path_is_one_line_value_error(tmp_path, no_long_work, capsys):
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(ValueError, match=r"--samples .*nowhere\.npz.*not found"):
        evaluate.cli_eval(["--samples", str(missing)])
    assert cli.main(["eval", "--samples", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "nowhere.npz" in err


@pytest.mark.parametrize(
    "arrays,match",
    [
        ({"x": np.zeros((N_IMAGES, 28, 28), np.uint8)}, r"no key 'images'.*\['x'\]"),
        ({"images": np.array(["a", "b"] * 100)}, r"'images' has dtype <U1.*uint8"),
        ({"images": np.array([{"a": 1}] * N_IMAGES, dtype=object)}, r"'images' .*object.*uint8"),
        ({"images": np.zeros((N_IMAGES, 3, 28, 28), np.float32)}, r"shape \(200, 3, 28, 28\)"),
        ({"images": np.zeros((N_IMAGES, 32, 32), np.uint8)}, r"shape \(200, 32, 32\)"),
        ({"images": np.zeros((0, 28, 28), np.uint8)}, r"holds no images"),
        ({"images": np.zeros((N_IMAGES, 28, 28), np.int64)}, r"dtype int64.*uint8"),
        ({"images": np.full((N_IMAGES, 28, 28), 200.0)}, r"values in \[200, 200\].*\[-1, 1\]"),
        ({"images": np.full((N_IMAGES, 28, 28), np.nan)}, r"NaN or infinite"),
    ],
)
def test_bad_npz_contents_are_one_line_errors(tmp_path, no_long_work, arrays, match):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(ValueError, match=match) as err:
        evaluate.cli_eval(["--samples", str(path)])
    assert "\n" not in str(err.value)


def test_not_an_npz_file_is_a_clear_error(tmp_path, no_long_work):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"junk\.npz: cannot be read as \.npz"):
        evaluate.load_samples(path)


def test_float_images_in_0_1_are_refused_unless_range_01(tmp_path, no_long_work):
    rng = np.random.default_rng(0)
    uint8 = rng.integers(0, 256, (N_IMAGES, 28, 28), dtype=np.uint8)
    unit = (uint8 / 255.0).astype(np.float32)
    path = _npz(tmp_path, images=unit)
    # the old code read these as [-1, 1] images: grey backgrounds, a meaningless FID
    with pytest.raises(ValueError, match=r"all in \[0, 1\].*ambiguous.*uint8.*--range 01"):
        evaluate.cli_eval(["--samples", str(path)])
    with pytest.raises(ValueError, match="ambiguous"):
        evaluate.load_samples(unit)  # a numpy array, as read from a user's file
    # a torch tensor is a model's output, [-1, 1] by contract: taken as it is
    tensor = torch.from_numpy(unit)
    assert torch.equal(evaluate.load_samples(tensor), tensor[:, None])
    loaded = evaluate.load_samples(path, value_range="01")
    expected = uint8_to_model(torch.from_numpy(uint8))
    assert loaded.shape == (N_IMAGES, 1, 28, 28) and loaded.dtype == torch.float32
    assert torch.allclose(loaded, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"value_range='01'.*\[0, 1\]"):
        evaluate.load_samples(torch.from_numpy(unit * 2 - 1), value_range="01")
    with pytest.raises(ValueError, match=r"value_range='0255'.*'-11', '01'"):
        evaluate.load_samples(path, value_range="0255")


def test_float_images_in_minus1_1_and_uint8_still_load(tmp_path, no_long_work):
    rng = np.random.default_rng(1)
    uint8 = rng.integers(0, 256, (N_IMAGES, 1, 28, 28), dtype=np.uint8)
    expected = uint8_to_model(torch.from_numpy(uint8))
    assert torch.equal(evaluate.load_samples(_npz(tmp_path, "u.npz", images=uint8)), expected)
    floats = _npz(tmp_path, "f.npz", images=expected.numpy()[:, 0])
    assert torch.equal(evaluate.load_samples(floats), expected)
    # an all-black float image set is not ambiguous (0 is -1 nowhere, but max == 0 is grey only)
    zeros = torch.zeros(3, 1, 28, 28)
    assert torch.equal(evaluate.load_samples(zeros), zeros)


def test_evaluate_samples_checks_k_and_n_before_loading(no_long_work):
    images = torch.zeros(N_IMAGES, 1, 28, 28) - 1
    with pytest.raises(ValueError, match=r"k=0: .*>= 1"):
        evaluate.evaluate_samples(images, k=0, device="cpu")
    with pytest.raises(ValueError, match=r"n=0: .*>= 1"):
        evaluate.evaluate_samples(images, n=0, device="cpu")
    with pytest.raises(ValueError, match=r"k=2\.5: .*integer"):
        evaluate.evaluate_samples(images, k=2.5, device="cpu")


def test_eval_help_states_the_value_rule(capsys):
    with pytest.raises(SystemExit):
        evaluate.cli_eval(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "uint8" in out and "0..255" in out and "[-1, 1]" in out and "--range 01" in out
    assert "ambiguous" in evaluate.load_samples.__doc__


# ----------------------------------------------------------------------------------------------
# train classifier: never over the pinned asset by default


class FakeTrain:
    """Stands in for :func:`features.train_classifier`: records its arguments, writes nothing."""

    def __init__(self):
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return {"checkpoint_bytes": 1, "sha256": features.CHECKPOINT_SHA256,
                "test_accuracy": 0.9, "train_wall_time_s": 0.0, "device": "cpu"}


def test_train_classifier_default_output_is_outside_the_package(tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(features, "train_classifier", fake)
    monkeypatch.chdir(tmp_path)
    assert features.cli_train_classifier([]) == 0
    out = fake.calls[0]["out"]
    assert out.resolve() == (tmp_path / "classifier" / "fmnist_classifier.safetensors")
    assert fake.calls[0]["manifest"].resolve() == tmp_path / "classifier" / "fmnist_classifier.json"
    assert features.ASSET_DIR.resolve() not in out.resolve().parents


@pytest.mark.parametrize("target", ["checkpoint", "manifest"])
def test_writing_over_the_pinned_asset_needs_the_flag(tmp_path, monkeypatch, capsys, target):
    fake = FakeTrain()
    monkeypatch.setattr(features, "train_classifier", fake)
    argv = (["--out", str(features.DEFAULT_CHECKPOINT)] if target == "checkpoint"
            else ["--out", str(tmp_path / "c.safetensors"),
                  "--manifest", str(features.DEFAULT_MANIFEST)])
    with pytest.raises(ValueError, match=r"pinned .*--overwrite-pinned"):
        features.cli_train_classifier(argv)
    assert fake.calls == []
    assert cli.main(["train", "classifier", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--overwrite-pinned" in err
    assert fake.calls == []


def test_overwrite_pinned_flag_targets_the_packaged_asset(monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(features, "train_classifier", fake)
    assert features.cli_train_classifier(["--overwrite-pinned"]) == 0
    assert fake.calls[0]["out"] == features.DEFAULT_CHECKPOINT
    assert fake.calls[0]["manifest"] == features.DEFAULT_MANIFEST
    assert fake.calls[0]["overwrite_pinned"] is True


def test_train_classifier_refuses_the_pinned_path_before_loading_data(monkeypatch):
    import ddgan_core.data as data

    def reached(*args, **kwargs):
        raise Reached("training started")

    monkeypatch.setattr(data, "load_fashion_mnist", reached)
    before = features.DEFAULT_CHECKPOINT.read_bytes()
    with pytest.raises(ValueError, match="--overwrite-pinned"):
        features.train_classifier(out=features.DEFAULT_CHECKPOINT, manifest=None)
    with pytest.raises(ValueError, match="--overwrite-pinned"):  # a custom out, manifest inside
        features.train_classifier(out="elsewhere.safetensors", manifest=features.DEFAULT_MANIFEST)
    assert features.DEFAULT_CHECKPOINT.read_bytes() == before
    defaults = inspect.signature(features.train_classifier).parameters
    assert features.ASSET_DIR.resolve() not in Path(defaults["out"].default).resolve().parents
    assert defaults["manifest"].default == features.MANIFEST_BESIDE_OUT


def test_tiny_training_writes_checkpoint_and_manifest_atomically(tiny_idx_dir, tmp_path,
                                                                 monkeypatch):
    from ddgan_core import cache, data

    written = []
    real = cache.atomic_write_bytes

    def spy(path, data):
        written.append(path)
        real(path, data)

    monkeypatch.setattr(features, "atomic_write_bytes", spy)
    monkeypatch.setenv(data.ENV_VAR, str(tiny_idx_dir))
    out = tmp_path / "out" / "clf.safetensors"
    info = features.train_classifier(epochs=1, batch_size=4, out=out,
                                     manifest=out.with_suffix(".json"), log=lambda *_: None)
    assert sorted(written) == sorted([out, out.with_suffix(".json")])
    assert info["sha256"] == features.hashlib.sha256(out.read_bytes()).hexdigest()
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []
