"""Shared fixtures: a tiny synthetic FashionMNIST in IDX format, and dataset detection."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from ddgan_core import data


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> bytes:
    """Write ``array`` (uint8) as an IDX file; returns the uncompressed bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return raw


@pytest.fixture
def tiny_idx_dir(tmp_path, monkeypatch):
    """A directory with both splits of a 12/6-image IDX data set, MD5 table patched to match."""
    rng = np.random.default_rng(0)
    md5 = {}
    for split, n in (("train", 12), ("test", 6)):
        image_name, label_name = data.FILES[split]
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        md5[image_name] = hashlib.md5(write_idx(tmp_path / image_name, images)).hexdigest()
        md5[label_name] = hashlib.md5(
            write_idx(tmp_path / label_name, labels, compress=True)
        ).hexdigest()
    monkeypatch.setattr(data, "MD5", md5)
    monkeypatch.setattr(data, "_MEMORY", {})
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    return tmp_path


def have_fashion_mnist() -> bool:
    try:
        data.find_dataset_dir("train")
        data.find_dataset_dir("test")
        return True
    except data.DatasetNotFoundError:
        return False


needs_data = pytest.mark.skipif(
    not have_fashion_mnist(),
    reason="FashionMNIST files not found (apt-get install dataset-fashion-mnist)",
)
