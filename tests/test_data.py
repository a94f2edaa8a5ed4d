from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from conftest import needs_data, write_idx

from ddgan_core import data


def test_loads_tiny_idx_directory_in_model_range(tiny_idx_dir):
    images, labels = data.load_fashion_mnist("train", root=tiny_idx_dir)
    assert images.shape == (12, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert labels.tolist() == [i % 10 for i in range(12)]
    raw, _ = data.load_fashion_mnist_uint8("test", root=tiny_idx_dir)
    assert raw.shape == (6, 28, 28) and raw.dtype == torch.uint8
    back = data.model_to_uint8(data.uint8_to_model(raw))
    assert torch.equal(back, raw)


def test_env_var_and_torchvision_layout(tiny_idx_dir, tmp_path_factory, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tiny_idx_dir))
    assert data.find_dataset_dir("train") == tiny_idx_dir
    monkeypatch.delenv(data.ENV_VAR)
    nested = tmp_path_factory.mktemp("tv")
    raw = nested / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for path in tiny_idx_dir.iterdir():
        (raw / path.name).write_bytes(path.read_bytes())
    assert data.find_dataset_dir("test", root=nested) == raw


def test_missing_files_name_every_place_tried_and_the_fixes(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_fashion_mnist("train", root=tmp_path / "empty")
    message = str(err.value)
    assert "empty" in message and "nowhere" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert data.ENV_VAR in message and "download=True" in message


def test_wrong_checksum_is_rejected(tiny_idx_dir):
    name = data.FILES["train"][0]
    corrupt = np.zeros((12, 28, 28), dtype=np.uint8)
    write_idx(tiny_idx_dir / name, corrupt)
    with pytest.raises(data.DatasetCorruptError, match="MD5 of the decompressed data"):
        data.load_fashion_mnist("train", root=tiny_idx_dir)


def test_broken_gzip_and_bad_header(tiny_idx_dir):
    label_gz = tiny_idx_dir / (data.FILES["test"][1] + ".gz")
    label_gz.write_bytes(b"not gzip at all")
    with pytest.raises(data.DatasetCorruptError, match="not a valid gzip"):
        data.load_fashion_mnist("test", root=tiny_idx_dir)
    with pytest.raises(data.DatasetCorruptError, match="bad magic"):
        data.parse_idx(b"\x01\x02\x03\x04")
    truncated = gzip.decompress(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2])))
    with pytest.raises(data.DatasetCorruptError, match="declares shape"):
        data.parse_idx(truncated)


def test_bad_split_name(tiny_idx_dir):
    with pytest.raises(ValueError, match=r"split='validation'.*allowed: \['train', 'test'\]"):
        data.load_fashion_mnist("validation", root=tiny_idx_dir)


def test_uint8_conversion_rejects_floats():
    with pytest.raises(ValueError, match="must be uint8"):
        data.uint8_to_model(torch.zeros(2, 28, 28))


def test_batches_cover_each_image_once():
    images = torch.arange(10).float()[:, None]
    seen = torch.cat(list(data.batches(images, 3, torch.Generator().manual_seed(0),
                                       drop_last=False)))
    assert sorted(seen.flatten().tolist()) == list(range(10))
    assert len(list(data.batches(images, 3, torch.Generator().manual_seed(0)))) == 3


@needs_data
@pytest.mark.data
def test_real_fashion_mnist_matches_published_statistics():
    images, labels = data.load_fashion_mnist_uint8("train")
    assert images.shape == (60_000, 28, 28)
    assert torch.bincount(labels).tolist() == [6000] * 10
    pixels = images.double() / 255
    assert abs(pixels.mean().item() - 0.2860406) < 1e-6
    assert abs(pixels.std().item() - 0.3530242) < 1e-5
    test_images, _ = data.load_fashion_mnist("test")
    assert test_images.shape == (10_000, 1, 28, 28)
