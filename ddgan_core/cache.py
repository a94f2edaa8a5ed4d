"""The result cache: every expensive step stored under a key made from its full configuration.

An entry lives in ``<root>/<name>/<key>/`` with

- ``config.json``: the configuration that produced it (the key is a hash of it and the name);
- ``metrics.json``: the numbers;
- ``manifest.json``: git commit, package versions, device, threads, wall time, date, and the
  SHA-256 of every file of the entry;
- whatever the step wrote (``samples.png``, ``*.npz``, a small checkpoint);
- ``COMPLETE``: written last. An entry without it, or whose files fail their checksums, is
  treated as missing and recomputed; it is never returned.

While a step runs it works in ``<root>/<name>/<key>.partial/``, which survives an interruption, so
a long step can resume from its own checkpoints there; on success the folder is renamed into
place in one step.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

MARKER = "COMPLETE"
ENV_VAR = "DDGAN_CACHE_DIR"
_RESERVED = {"config.json", "metrics.json", "manifest.json", MARKER}


def repo_root() -> Path:
    """The project's top folder (where ``pyproject.toml`` lies), else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def default_root() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else repo_root() / "results"


def config_key(name: str, config: dict[str, Any]) -> str:
    """A stable 16-hex-digit key of (name, config): canonical JSON, SHA-256."""
    payload = json.dumps({"name": name, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file.

    The bytes go to a hidden temporary file in the same folder (created with the parents),
    which gets the usual permissions (0666 minus the umask) and then replaces ``path`` in one
    ``os.replace``; on any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented, key-sorted JSON, written with :func:`atomic_write_bytes`."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write_bytes(path, text.encode())


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def git_commit() -> str:
    """The current commit (with ``-dirty`` when the work tree has changes), or ``unknown``."""
    try:
        root = repo_root()
        head = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=root, capture_output=True, text=True, timeout=10,
        )
        commit = head.stdout.strip() if head.returncode == 0 else ""
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device: str | torch.device | None = None) -> str:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{_cpu_model()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_manifest(device: str | torch.device | None = None) -> dict[str, Any]:
    """What produced a result: code version, package versions, device and threads."""
    import numpy

    from . import __version__

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "ddgan_core": __version__,
    }
    try:
        import torchvision

        versions["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    return {
        "git_commit": git_commit(),
        "versions": versions,
        "device": device_description(device),
        "threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


@dataclass
class Result:
    """A verified cache entry."""

    name: str
    key: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    computed: bool = field(default=False)

    def file(self, filename: str) -> Path:
        path = self.path / filename
        if not path.is_file():
            raise FileNotFoundError(f"result {self.name}/{self.key} has no file {filename!r}")
        return path

    def provenance(self) -> str:
        """One line for captions: profile, device, date and commit."""
        man = self.manifest
        return (
            f"profile {self.config.get('profile', '?')}, {man.get('device', '?')}, "
            f"{man.get('threads', '?')} threads, {man.get('wall_time_s', 0):.0f} s, "
            f"{man.get('date', '?')[:10]}, commit {str(man.get('git_commit', '?'))[:10]}"
        )


class CacheError(RuntimeError):
    """A cache entry is partial or corrupt (it will be recomputed)."""


class ResultCache:
    """Experiments stored under ``root/name/key``; see the module docstring."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()

    def path(self, name: str, config: dict[str, Any]) -> Path:
        _check_name(name)
        return self.root / name / config_key(name, config)

    def load(self, name: str, config: dict[str, Any]) -> Result | None:
        """The verified entry for (name, config), or ``None`` when missing, partial or corrupt."""
        try:
            return self._verify(name, config, self.path(name, config))
        except CacheError:
            return None

    def _verify(self, name: str, config: dict[str, Any], path: Path) -> Result:
        if not (path / MARKER).is_file():
            raise CacheError(f"{path}: no {MARKER} marker (missing or interrupted)")
        try:
            stored_config = json.loads((path / "config.json").read_text())
            metrics = json.loads((path / "metrics.json").read_text())
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CacheError(f"{path}: unreadable JSON ({err})") from err
        if json.loads(json.dumps(config, default=str)) != stored_config:
            raise CacheError(f"{path}: stored configuration differs from the requested one")
        for filename, digest in manifest.get("files", {}).items():
            file = path / filename
            if not file.is_file() or sha256_file(file) != digest:
                raise CacheError(f"{path}: {filename} is missing or fails its checksum")
        return Result(name, path.name, path, stored_config, metrics, manifest)

    def load_or_run(
        self,
        name: str,
        config: dict[str, Any],
        compute: Callable[[Path, dict[str, Any]], dict[str, Any]],
        *,
        force: bool = False,
        device: str | torch.device | None = None,
    ) -> Result:
        """Return the cached result of ``compute`` for (name, config), computing it if needed.

        ``compute(workdir, config) -> metrics`` writes any files into ``workdir`` (which keeps
        what an interrupted run left, so it can resume) and returns JSON-serialisable metrics.
        """
        final = self.path(name, config)
        if not force:
            cached = self.load(name, config)
            if cached is not None:
                return cached
        workdir = final.with_name(final.name + ".partial")
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        metrics = compute(workdir, config)
        wall = time.perf_counter() - start
        if not isinstance(metrics, dict):
            raise TypeError(f"{name}: compute must return a dict of metrics, got {type(metrics)}")
        write_json_atomic(workdir / "config.json", config)
        write_json_atomic(workdir / "metrics.json", metrics)
        manifest = environment_manifest(device)
        manifest.update(
            name=name,
            key=final.name,
            wall_time_s=round(wall, 3),
            files={
                p.name: sha256_file(p)
                for p in sorted(workdir.iterdir())
                if p.is_file() and p.name not in _RESERVED and not p.name.endswith(".tmp")
            },
        )
        write_json_atomic(workdir / "manifest.json", manifest)
        (workdir / MARKER).write_text(manifest["date"] + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(workdir, final)
        result = self._verify(name, config, final)
        result.computed = True
        return result

    def entries(self) -> list[Path]:
        """Every complete entry under the root."""
        return sorted(p.parent for p in self.root.glob(f"*/*/{MARKER}"))

    def pack(self, archive: str | os.PathLike, entries: list[Path] | None = None) -> Path:
        """Write complete entries into one ``.tar.gz`` that :meth:`unpack` merges elsewhere."""
        archive = Path(archive)
        with tarfile.open(archive, "w:gz") as tar:
            for entry in entries if entries is not None else self.entries():
                tar.add(entry, arcname=str(entry.relative_to(self.root)))
        return archive

    def unpack(self, archive: str | os.PathLike) -> list[Path]:
        """Merge an archive from :meth:`pack` into the cache; returns the entries added."""
        added = []
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts or len(parts) < 2:
                    raise ValueError(f"{archive}: unsafe or unexpected member {member.name!r}")
                if not (member.isfile() or member.isdir()):
                    raise ValueError(f"{archive}: member {member.name!r} is not a plain file")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(self.root, members=members, filter="data")
            else:  # Python without extraction filters: members were checked above
                tar.extractall(self.root, members=members)
        for member in members:
            if Path(member.name).name == MARKER:
                added.append(self.root / Path(member.name).parent)
        return added


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"experiment name {name!r} must be a plain folder name")
