"""FashionMNIST as in-memory tensors, found offline.

The whole data set is 55 MB as uint8, so it is read once into memory and batches are sliced
from it (no DataLoader workers: on a 2-core machine they would compete with the training step).

Sources are tried in this order (the first that has the four files wins):

1. an explicit ``root`` argument, or the environment variable ``FASHION_MNIST_DIR``;
2. torchvision's layout ``<root>/FashionMNIST/raw`` (for ``root`` and for ``./data``);
3. Debian's package ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist`` (gzip);
4. torchvision's download into ``./data``, only when the caller passes ``download=True``.

Each directory may hold the IDX files plain or gzip-compressed. The decompressed bytes are
checked against the official MD5 sums before use. ``python -m ddgan_core data`` checks all four
files (:func:`verify_dataset`) and, when asked, fetches them (:func:`ensure_dataset`: the Debian
package, then torchvision's download); ``tools/check_data.py`` is the same check without torch.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "test")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "FASHION_MNIST_DIR"

_MEMORY: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


class DatasetNotFoundError(FileNotFoundError):
    """Raised when no directory holds the FashionMNIST files."""


class DatasetCorruptError(ValueError):
    """Raised when a FashionMNIST file does not match its official checksum or format."""


DEBIAN_PACKAGE = "dataset-fashion-mnist"
TORCHVISION_DIR = Path("data") / "FashionMNIST" / "raw"


def _fix_hint() -> str:
    return (
        f"Fix it in one of three ways: (1) `apt-get install {DEBIAN_PACKAGE}` (Debian/Ubuntu, as "
        f"root; installs into {DEBIAN_DIR}); (2) on a machine with internet, `python -m ddgan_core "
        f"data --download` (or load_fashion_mnist(download=True)) lets torchvision download them "
        f"into {TORCHVISION_DIR}; (3) copy the four IDX files (plain or .gz) into "
        f"{TORCHVISION_DIR}, or into a directory DIR and pass root=DIR or set {ENV_VAR}=DIR."
    )


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _candidate_dirs(root: str | os.PathLike | None) -> list[Path]:
    dirs: list[Path] = []
    bases = []
    if root is not None:
        bases.append(Path(root))
    env = os.environ.get(ENV_VAR)
    if env:
        bases.append(Path(env))
    for base in bases:
        dirs += [base, base / "FashionMNIST" / "raw"]
    dirs += [TORCHVISION_DIR, DEBIAN_DIR]
    return dirs


def find_dataset_dir(split: str, root: str | os.PathLike | None = None) -> Path:
    """Return the first directory that holds both IDX files of ``split``.

    Raises :class:`DatasetNotFoundError` naming every directory tried and the ways to fix it.
    """
    _check_split(split)
    tried = _candidate_dirs(root)
    for directory in tried:
        if all(_find_file(directory, name) for name in FILES[split]):
            return directory
    listing = "\n".join(f"  - {d}" for d in tried)
    raise DatasetNotFoundError(
        f"FashionMNIST {split!r} split not found. Looked for {FILES[split][0]}[.gz] and "
        f"{FILES[split][1]}[.gz] in:\n{listing}\n{_fix_hint()}"
    )


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a FashionMNIST split; allowed: {list(SPLITS)}")


def _read_verified(path: Path, name: str, verify: bool) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DatasetCorruptError(
                f"{path} is not a valid gzip file ({err}). {_fix_hint()}"
            ) from err
    if verify:
        digest = hashlib.md5(raw).hexdigest()
        if digest != MD5[name]:
            raise DatasetCorruptError(
                f"{path}: MD5 of the decompressed data is {digest}, expected {MD5[name]} for the "
                f"official {name}. The file is corrupt or not FashionMNIST. {_fix_hint()}"
            )
    return raw


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse an IDX file (uint8 payload) into a numpy array of its declared shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetCorruptError(f"{source}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise DatasetCorruptError(
            f"{source}: header declares shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist_uint8(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = False,
    verify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FashionMNIST ``split`` as uint8 images ``[N, 28, 28]`` and int64 labels ``[N]``."""
    _check_split(split)
    key = (split, str(root) + os.environ.get(ENV_VAR, ""))
    if key in _MEMORY:
        return _MEMORY[key]
    try:
        directory = find_dataset_dir(split, root)
    except DatasetNotFoundError:
        if not download:
            raise
        directory = _download(root)
    image_name, label_name = FILES[split]
    images = parse_idx(
        _read_verified(_find_file(directory, image_name), image_name, verify), image_name
    )
    labels = parse_idx(
        _read_verified(_find_file(directory, label_name), label_name, verify), label_name
    )
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetCorruptError(
            f"{directory}: images {images.shape} and labels {labels.shape} do not form a data set"
        )
    result = (torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
    _MEMORY[key] = result
    return result


def load_fashion_mnist(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FashionMNIST ``split`` as float32 images in [-1, 1], shape ``[N, 1, 28, 28]``, and labels.

    ``split`` is ``"train"`` (60,000 images) or ``"test"`` (10,000). See the module docstring for
    where the files are looked for; a missing or corrupt file raises at once with the fixes.
    """
    images, labels = load_fashion_mnist_uint8(split, root, download)
    return uint8_to_model(images), labels


def uint8_to_model(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` or ``[N, 1, 28, 28]`` -> float32 ``[N, 1, 28, 28]`` in [-1, 1]."""
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    return images.float().div_(127.5).sub_(1.0)


def model_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] ``[N, 1, H, W]`` -> uint8 ``[N, H, W]`` (rounded, clamped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].cpu()


def _download(root: str | os.PathLike | None) -> Path:
    from torchvision.datasets import FashionMNIST

    base = Path(root) if root is not None else Path("data")
    FashionMNIST(str(base), train=True, download=True)
    FashionMNIST(str(base), train=False, download=True)
    return base / "FashionMNIST" / "raw"


def verify_dataset(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Find both splits (as :func:`find_dataset_dir`) and check all four files' MD5 sums.

    Returns ``{split: directory}``; raises :class:`DatasetNotFoundError` (every place tried and
    the fixes) or :class:`DatasetCorruptError`. Reads and decompresses the files (under a second).
    """
    found = {}
    for split in SPLITS:
        directory = find_dataset_dir(split, root)
        for name in FILES[split]:
            _read_verified(_find_file(directory, name), name, verify=True)
        found[split] = directory
    return found


def can_install_debian_package() -> str | None:
    """``None`` when :func:`install_debian_package` can run (root and ``apt-get`` on the PATH),
    else why not."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available (not a Debian/Ubuntu system)"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"installing {DEBIAN_PACKAGE} needs root (run as root, or use sudo apt-get)"
    return None


def install_debian_package(log: Callable[[str], None] = print) -> bool:
    """``apt-get install -y dataset-fashion-mnist`` (after ``apt-get update`` when the package
    lists do not know it yet); ``True`` when it succeeded. Only ever called on request."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", DEBIAN_PACKAGE]
    log(f"$ {' '.join(install)}")
    if subprocess.run(install, env=env).returncode == 0:
        return True
    log("$ apt-get update -q")
    if subprocess.run(["apt-get", "update", "-q"], env=env).returncode != 0:
        return False
    log(f"$ {' '.join(install)}")
    return subprocess.run(install, env=env).returncode == 0


def ensure_dataset(
    root: str | os.PathLike | None = None,
    download: bool = False,
    apt: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """:func:`verify_dataset`, fetching the files first when they are missing and it is asked to.

    In order: the Debian package (only with ``apt`` or ``download``, as root with ``apt-get``),
    then torchvision's download into ``root`` or ``./data`` (only with ``download``). Nothing is
    installed or downloaded without one of the two flags; when the files are still missing,
    :class:`DatasetNotFoundError` names every place tried and the fixes.
    """
    try:
        return verify_dataset(root)
    except DatasetNotFoundError as err:
        missing = err
    if apt or download:
        why_not = can_install_debian_package()
        if why_not is None:
            log(f"FashionMNIST not found; installing the Debian package {DEBIAN_PACKAGE}")
            if install_debian_package(log) and all(
                _find_file(DEBIAN_DIR, name) for names in FILES.values() for name in names
            ):
                return verify_dataset(root)
            log(f"apt-get could not install {DEBIAN_PACKAGE}")
        else:
            log(f"skipping the Debian package: {why_not}")
    if download:
        base = Path(root) if root is not None else Path("data")
        log(f"downloading FashionMNIST with torchvision into {base / 'FashionMNIST' / 'raw'}")
        _download(root)
        return verify_dataset(root)
    raise missing


def batches(
    images: torch.Tensor, batch_size: int, generator: torch.Generator, drop_last: bool = True
):
    """Yield shuffled mini-batches from an in-memory tensor, one epoch."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    order = torch.randperm(images.shape[0], generator=generator)
    stop = images.shape[0] - (images.shape[0] % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield images[order[start: start + batch_size]]
