#!/usr/bin/env python3
"""Is FashionMNIST here? The check ``make book`` and ``make test`` run before anything else.

Standard library only (no torch, no virtual environment needed), so a missing data set fails in
a second instead of after installing 6 GB of packages. It looks in the same places, in the same
order, as ``ddgan_core.data`` (``tests/test_data_command.py`` checks that they agree):

1. ``--root DIR`` and ``$FASHION_MNIST_DIR`` (each as ``DIR`` and ``DIR/FashionMNIST/raw``);
2. ``data/FashionMNIST/raw`` (torchvision's layout, where ``python -m ddgan_core data
   --download`` puts them);
3. ``/usr/share/datasets/fashion-mnist`` (Debian's package ``dataset-fashion-mnist``).

Each file may be plain or ``.gz``; the decompressed bytes must match the official MD5 sums.
Exit 0 and one line per split when found, else exit 1 with every place tried and the fixes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import sys
from pathlib import Path

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
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
TORCHVISION_DIR = Path("data") / "FashionMNIST" / "raw"
ENV_VAR = "FASHION_MNIST_DIR"


def candidate_dirs(root: str | None = None) -> list[Path]:
    """Where the files are looked for, in order (as ``ddgan_core.data._candidate_dirs``)."""
    bases = [Path(base) for base in (root, os.environ.get(ENV_VAR)) if base]
    dirs = [path for base in bases for path in (base, base / "FashionMNIST" / "raw")]
    return dirs + [TORCHVISION_DIR, DEBIAN_DIR]


def find_file(directory: Path, name: str) -> Path | None:
    """``directory/name`` or ``directory/name.gz``, whichever is a file."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_split(split: str, dirs: list[Path]) -> Path | None:
    """The first directory that holds both files of ``split``."""
    for directory in dirs:
        if all(find_file(directory, name) for name in FILES[split]):
            return directory
    return None


def corrupt_reason(path: Path, name: str) -> str | None:
    """Why ``path`` is not the official ``name`` (bad gzip, wrong MD5), or ``None``."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            return f"{path} is not a valid gzip file ({err})"
    digest = hashlib.md5(raw).hexdigest()
    if digest != MD5[name]:
        return f"{path}: MD5 {digest}, expected {MD5[name]} (corrupt, or not FashionMNIST)"
    return None


def fixes() -> str:
    """The three ways to get the data, one per line."""
    names = ", ".join(f"{name}.gz" for names in FILES.values() for name in names)
    return (
        "Fix it in one of three ways, then run the command again:\n"
        f"  1. Debian/Ubuntu, as root: apt-get install {DEBIAN_PACKAGE}   (into {DEBIAN_DIR})\n"
        "  2. with internet: make data   (creates .venv, then runs python -m ddgan_core data "
        f"--download: torchvision's download into {TORCHVISION_DIR})\n"
        f"  3. copy the four files ({names}; plain or .gz) into {TORCHVISION_DIR}, or into a "
        f"folder DIR and set {ENV_VAR}=DIR"
    )


def check(root: str | None = None) -> tuple[dict[str, Path], str | None]:
    """``({split: directory}, None)`` when every file is found and verified, else the found
    splits and the error message (every place tried, or the corrupt file, and the fixes)."""
    dirs = candidate_dirs(root)
    found: dict[str, Path] = {}
    for split in FILES:
        directory = find_split(split, dirs)
        if directory is None:
            names = " and ".join(f"{name}[.gz]" for name in FILES[split])
            tried = "\n".join(f"  - {d}" for d in dirs)
            return found, (f"FashionMNIST {split!r} split not found: looked for {names} in:\n"
                           f"{tried}\n{fixes()}")
        for name in FILES[split]:
            reason = corrupt_reason(find_file(directory, name), name)
            if reason:
                return found, f"{reason}\n{fixes()}"
        found[split] = directory
    return found, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", metavar="DIR", help="look here first (as root= in ddgan_core)")
    args = parser.parse_args(argv)
    found, error = check(args.root)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for split, directory in found.items():
        print(f"FashionMNIST {split}: {directory} (MD5 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
