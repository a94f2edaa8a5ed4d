"""The result cache: every expensive step stored under a key made from its full configuration.

An entry lives in ``<root>/<name>/<key>/`` with

- ``config.json``: the configuration that produced it (the key is a hash of it and the name);
- ``metrics.json``: the numbers;
- whatever the step wrote (``samples.png``, ``*.npz``, a small checkpoint);
- ``manifest.json``: git commit, package versions, device, threads, wall time, date, and under
  ``files`` the SHA-256 of every other file of the entry (``config.json`` and ``metrics.json``
  included; only ``manifest.json`` itself and the marker are not listed);
- ``COMPLETE``: the marker, written last; it holds the SHA-256 of ``manifest.json`` in the format
  of ``sha256sum`` (``sha256sum -c COMPLETE`` inside the folder checks it).

An entry is returned only when it verifies: the marker is there and matches ``manifest.json``,
the manifest's ``files`` lists exactly the files of the folder, and each matches its checksum.
Anything else (no marker, an edited file or manifest, a file missing or not listed) counts as
missing: :meth:`ResultCache.load` gives ``None`` and :meth:`ResultCache.load_or_run` recomputes
it. Hidden temporary files of :func:`atomic_write_bytes` (``.*.tmp``) are no part of an entry.

While a step runs it works in ``<root>/<name>/<key>.partial/``, which survives an interruption, so
a long step can resume from its own checkpoints there; on success the folder is renamed into
place in one step. Computing holds the lock ``<root>/<name>/<key>.lock`` (``fcntl.flock``,
released by the system if the process dies), so two processes asking for one entry compute it
once: the second waits, then returns the first one's entry.

Entries written before ``config.json`` and ``metrics.json`` were checksummed (and the manifest
sealed by the marker) are brought up to date, contents unchanged, by :func:`upgrade_entry`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .device import device_description

MARKER = "COMPLETE"
MANIFEST = "manifest.json"
ENV_VAR = "DDGAN_CACHE_DIR"
#: When set, every entry a ResultCache returns is logged to this file (one JSON line each); the
#: sweep command sets it per point to record which cached experiments a point used.
LOG_ENV_VAR = "DDGAN_CACHE_LOG"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
_REQUIRED = ("config.json", "metrics.json")
_UNPACK_HINT = "give the .tar.gz written by 'python -m ddgan_core reproduce --archive'"


def repo_root() -> Path:
    """The project's top folder (where ``pyproject.toml`` lies), else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def committed_root() -> Path:
    """The book's reference results, committed with the code: ``<repo>/results``. Read-only by
    default; :meth:`ResultCache.promote` is the one way in."""
    return repo_root() / "results"


def default_root() -> Path:
    """Where a user's runs go: ``$DDGAN_CACHE_DIR``, else ``<repo>/.cache/results``
    (git-ignored). Looked up before the committed results. Also the home of derived, per-machine
    files such as the FID reference statistics."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else repo_root() / ".cache" / "results"


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


def _plain_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (the form :func:`config_key` hashes)."""
    return json.loads(json.dumps(value, default=str))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CacheError(f"{path.parent}: unreadable {path.name} ({err})") from err


def _is_temp(path: Path) -> bool:
    """A hidden temporary file of :func:`atomic_write_bytes` (``.*.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def entry_files(path: Path) -> list[str]:
    """The files of the entry folder ``path`` that its manifest must list, as relative POSIX
    paths: everything but ``manifest.json``, the marker and hidden temporary files."""
    found = []
    for item in sorted(path.rglob("*")):
        relative = item.relative_to(path).as_posix()
        if relative in (MANIFEST, MARKER) or _is_temp(item):
            continue
        if item.is_dir() and not item.is_symlink():
            continue
        found.append(relative)
    return found


def write_marker(path: Path) -> None:
    """Seal the entry folder ``path``: write its marker with the SHA-256 of ``manifest.json``."""
    digest = sha256_file(path / MANIFEST)
    atomic_write_bytes(path / MARKER, f"{digest}  {MANIFEST}\n".encode())


def _sealed_digest(path: Path) -> str | None:
    """The manifest's SHA-256 that the marker of ``path`` holds, or ``None`` (an old marker)."""
    try:
        fields = (path / MARKER).read_text().split()
    except (OSError, ValueError):
        return None
    if len(fields) == 2 and fields[1] == MANIFEST and re.fullmatch("[0-9a-f]{64}", fields[0]):
        return fields[0]
    return None


def _listed_files(path: Path, manifest: Any) -> dict[str, str]:
    """The manifest's ``files`` mapping (file name -> SHA-256); :class:`CacheError` if absent."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise CacheError(f"{path}: {MANIFEST} has no 'files' mapping of file name to SHA-256")
    return files


def _check_listed(path: Path, files: dict[str, str]) -> None:
    """Every listed file is present and matches its checksum."""
    for filename, digest in sorted(files.items()):
        file = path / filename
        if not file.is_file() or sha256_file(file) != digest:
            raise CacheError(f"{path}: {filename} is missing or fails its checksum")


def check_entry(path: Path) -> dict[str, Any]:
    """The manifest of the entry folder ``path`` when the entry verifies, else :class:`CacheError`.

    The marker must hold the SHA-256 of ``manifest.json``; the manifest's ``files`` must list
    exactly the files of the folder (:func:`entry_files`, ``config.json`` and ``metrics.json``
    included), each with its SHA-256.
    """
    if not (path / MARKER).is_file():
        raise CacheError(f"{path}: no {MARKER} marker (missing or interrupted)")
    sealed = _sealed_digest(path)
    if sealed is None:
        raise CacheError(f"{path}: {MARKER} holds no checksum of {MANIFEST} (an entry from "
                         "before manifests were sealed; cache.upgrade_entry brings it up to date)")
    if not (path / MANIFEST).is_file() or sha256_file(path / MANIFEST) != sealed:
        raise CacheError(f"{path}: {MANIFEST} is missing or differs from the one sealed in "
                         f"{MARKER}")
    manifest = _read_json(path / MANIFEST)
    files = _listed_files(path, manifest)
    unlisted = sorted(set(entry_files(path)) - set(files))
    if unlisted:
        raise CacheError(f"{path}: files not in the manifest: {', '.join(unlisted)}")
    unchecked = [name for name in _REQUIRED if name not in files]
    if unchecked:
        raise CacheError(f"{path}: the manifest has no checksum of {', '.join(unchecked)}")
    _check_listed(path, files)
    return manifest


def upgrade_entry(path: str | os.PathLike) -> None:
    """Bring an entry written before every file was checksummed up to date, contents unchanged.

    The files its manifest lists must all verify, and the only files it may lack are
    ``config.json`` and ``metrics.json`` (and ``config.json`` must hash to the folder's name);
    otherwise :class:`CacheError` and nothing is written. Their checksums are added to the
    manifest's ``files``, ``upgraded`` records when and what, the manifest is rewritten
    atomically and then the marker seals it. An entry that verifies already is left alone.
    """
    path = Path(path)
    try:
        check_entry(path)
        return
    except CacheError:
        pass
    if not (path / MARKER).is_file():
        raise CacheError(f"{path}: no {MARKER} marker; an incomplete entry is not upgraded")
    manifest = _read_json(path / MANIFEST)
    files = _listed_files(path, manifest)
    _check_listed(path, files)
    unlisted = sorted(set(entry_files(path)) - set(files))
    unexpected = [name for name in unlisted if name not in _REQUIRED]
    if unexpected:
        raise CacheError(f"{path}: files not in the manifest: {', '.join(unexpected)}; only "
                         f"{' and '.join(_REQUIRED)} are added by an upgrade")
    for name in unlisted:
        _read_json(path / name)
    config = _read_json(path / "config.json")
    if config_key(path.parent.name, config) != path.name:
        raise CacheError(f"{path}: the folder name is not the key of its config.json")
    for name in unlisted:
        files[name] = sha256_file(path / name)
    note = (f"checksums of {' and '.join(unlisted)} added; contents unchanged" if unlisted
            else f"{MANIFEST} sealed in {MARKER}; contents unchanged")
    manifest["files"] = files
    manifest["upgraded"] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "note": note,
    }
    write_json_atomic(path / MANIFEST, manifest)
    write_marker(path)
    check_entry(path)


def rekey_entry(path: str | os.PathLike, new_config: dict[str, Any], note: str) -> Path:
    """Move a verified entry to the key of ``new_config``, recording what changed and why.

    For a key rule that changed while the computation did not: a setting the entry's
    computation already used joins the key (its value checked by the caller against the entry's
    metrics or the profile of the commit that produced it), a setting that changes no number
    (checkpoint cadence) leaves it, a version field is added, or a referenced entry's key was
    itself rekeyed. Nothing but ``config.json``, the manifest (its checksum of ``config.json``,
    ``key``, and a ``rekeyed`` record: the old key, the added, removed and changed fields, and
    ``note``) and the marker changes; the folder is renamed to the new key. Returns the new path.
    """
    path = Path(path)
    manifest = check_entry(path)
    name = path.parent.name
    old = _read_json(path / "config.json")
    new = _plain_json(new_config)
    new_key = config_key(name, new)
    if new_key == path.name:
        return path
    target = path.parent / new_key
    if target.exists():
        raise CacheError(f"{target} exists already")
    record = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "from_key": path.name,
        "added": {k: v for k, v in new.items() if k not in old},
        "removed": {k: v for k, v in old.items() if k not in new},
        "changed": {k: [old[k], v] for k, v in new.items() if k in old and old[k] != v},
        "note": note,
    }
    write_json_atomic(path / "config.json", new)
    manifest["files"]["config.json"] = sha256_file(path / "config.json")
    manifest["key"] = new_key
    manifest.setdefault("rekeyed", []).append(record)
    write_json_atomic(path / MANIFEST, manifest)
    write_marker(path)
    os.replace(path, target)
    check_entry(target)
    return target


def replace_entry_file(entry: str | os.PathLike, old_name: str, new_name: str, data: bytes,
                       note: str) -> Path:
    """Replace the file ``old_name`` of a verified entry by ``new_name`` holding ``data``.

    For a file whose container changes while what it holds does not (model weights moved from
    a torch file to safetensors): the caller checks that ``data`` holds the same content. The
    entry must verify; ``new_name`` is written atomically, ``old_name`` removed, the manifest's
    ``files`` updated and a ``converted`` record appended (date, ``from``, ``to``, ``note``),
    then the marker reseals the manifest. ``config.json``, and so the key, is untouched.
    Returns the new file's path.
    """
    entry = Path(entry)
    manifest = check_entry(entry)
    files = manifest["files"]
    if old_name not in files or old_name in _REQUIRED:
        raise CacheError(f"{entry}: {old_name!r} is not a replaceable file of the entry")
    if new_name != old_name and (new_name in files or (entry / new_name).exists()):
        raise CacheError(f"{entry}: {new_name} exists already")
    target = entry / new_name
    atomic_write_bytes(target, data)
    if new_name != old_name:
        (entry / old_name).unlink()
    del files[old_name]
    files[new_name] = sha256_file(target)
    manifest.setdefault("converted", []).append({
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "from": old_name,
        "to": new_name,
        "note": note,
    })
    write_json_atomic(entry / MANIFEST, manifest)
    write_marker(entry)
    check_entry(entry)
    return target


@dataclass
class UnpackReport:
    """What :meth:`ResultCache.unpack` did with each entry of an archive (cache paths)."""

    added: list[Path] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per entry of the archive."""
        return (
            [f"added {p}" for p in self.added]
            + [f"replaced {p} (the local copy failed verification)" for p in self.replaced]
            + [f"kept local {p} (it verifies; the archive's copy is not used)" for p in self.kept]
            + [f"skipped {p}: corrupt in the archive: {why}" for p, why in self.skipped]
            + [f"ignored {p} (work folders are not merged)" for p in self.ignored]
        )

    def summary(self) -> str:
        text = (f"{len(self.added)} added, {len(self.replaced)} replaced, "
                f"{len(self.kept)} kept local, {len(self.skipped)} skipped as corrupt")
        return text + (f", {len(self.ignored)} ignored" if self.ignored else "")


class ResultCache:
    """Experiments stored under ``root/name/key``; see the module docstring.

    ``ResultCache()`` writes into the local cache (:func:`default_root`) and reads the local
    cache first, then the committed reference results (:func:`committed_root`), which it never
    writes: a user's runs and the book's results stay apart, and ``git status`` stays clean.
    ``ResultCache(root)`` reads and writes ``root`` only, unless ``read_committed=True`` (what
    the command line's ``--cache-dir`` does).
    """

    def __init__(self, root: str | os.PathLike | None = None, *,
                 read_committed: bool | None = None):
        self.root = Path(root) if root is not None else default_root()
        read_committed = root is None if read_committed is None else read_committed
        committed = committed_root()
        same = self.root.resolve() == committed.resolve()
        self.read_roots = [self.root, committed] if read_committed and not same else [self.root]

    def path(self, name: str, config: dict[str, Any]) -> Path:
        """Where (name, config) is written (in the local root)."""
        _check_name(name)
        return self.root / name / config_key(name, config)

    def load(self, name: str, config: dict[str, Any]) -> Result | None:
        """The verified entry for (name, config) from the first read root that has one, or
        ``None`` when it is missing, partial or corrupt everywhere."""
        _check_name(name)
        key = config_key(name, config)
        for root in self.read_roots:
            try:
                return self._verify(name, config, root / name / key)
            except CacheError:
                continue
        return None

    def promote(self, entries: list[str] | None = None,
                target: str | os.PathLike | None = None) -> list[tuple[str, str]]:
        """Copy verified local entries (``"name/key"``; all when ``None``) into the committed
        results (or ``target``), each written aside and renamed; returns ``(entry, what)``
        pairs, ``what`` one of ``promoted``, ``already committed`` (a verified copy is there).

        The one explicit way a run becomes a reference result. A missing or corrupt local
        entry raises :class:`CacheError` before anything is copied.
        """
        target = Path(target) if target is not None else committed_root()
        local = {f"{p.parent.name}/{p.name}": p for p in self._complete(self.root)}
        wanted = sorted(local) if entries is None else list(entries)
        for entry in wanted:
            if entry not in local:
                raise CacheError(f"{entry}: no complete entry in the local cache {self.root}")
            check_entry(local[entry])
        done = []
        for entry in wanted:
            destination = target / entry
            try:
                check_entry(destination)
                done.append((entry, "already committed"))
                continue
            except CacheError:
                pass
            staging = Path(tempfile.mkdtemp(prefix=".promote-", dir=_mkdir(destination.parent)))
            try:
                shutil.copytree(local[entry], staging / "entry")
                check_entry(staging / "entry")
                if destination.exists():
                    shutil.rmtree(destination)
                os.replace(staging / "entry", destination)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            done.append((entry, "promoted"))
        return done

    @staticmethod
    def _complete(root: Path) -> list[Path]:
        return sorted(p.parent for p in root.glob(f"*/*/{MARKER}")
                      if not p.parent.name.endswith(PARTIAL_SUFFIX))

    def _verify(self, name: str, config: dict[str, Any], path: Path) -> Result:
        manifest = check_entry(path)
        stored_config = _read_json(path / "config.json")
        metrics = _read_json(path / "metrics.json")
        if _plain_json(config) != stored_config:
            raise CacheError(f"{path}: stored configuration differs from the requested one")
        return Result(name, path.name, path, stored_config, metrics, manifest)

    def _verify_stored(self, name: str, path: Path) -> Result:
        """Verify the entry folder ``path`` against its own ``config.json``, whose key must be
        the folder's name."""
        config = _read_json(path / "config.json")
        if not isinstance(config, dict) or config_key(name, config) != path.name:
            raise CacheError(f"{path}: the folder name is not the key of its config.json")
        return self._verify(name, config, path)

    @contextlib.contextmanager
    def _lock(self, name: str, key: str) -> Iterator[None]:
        """Hold the entry's lock ``<root>/<name>/<key>.lock`` (waiting, with a line on stderr,
        while another process holds it)."""
        lock_path = self.root / name / (key + LOCK_SUFFIX)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"waiting for another process computing {name}/{key} ...",
                      file=sys.stderr, flush=True)
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

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
        Checking, computing and finalising hold the entry's lock, so that concurrent callers
        compute it once; a verified entry is returned without taking the lock.
        """
        final = self.path(name, config)
        if not force:
            cached = self.load(name, config)
            if cached is not None:
                return _logged(cached)
        with self._lock(name, final.name):
            if not force:
                cached = self.load(name, config)  # another process may have finished it
                if cached is not None:
                    return _logged(cached)
            return _logged(self._compute(name, config, compute, final, device))

    def _compute(
        self,
        name: str,
        config: dict[str, Any],
        compute: Callable[[Path, dict[str, Any]], dict[str, Any]],
        final: Path,
        device: str | torch.device | None,
    ) -> Result:
        """Run ``compute`` in the work folder, seal it and rename it into place (lock held)."""
        workdir = final.with_name(final.name + PARTIAL_SUFFIX)
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        metrics = compute(workdir, config)
        wall = time.perf_counter() - start
        if not isinstance(metrics, dict):
            raise TypeError(f"{name}: compute must return a dict of metrics, got {type(metrics)}")
        write_json_atomic(workdir / "config.json", _plain_json(config))
        write_json_atomic(workdir / "metrics.json", metrics)
        manifest = environment_manifest(device)
        manifest.update(
            name=name,
            key=final.name,
            wall_time_s=round(wall, 3),
            files={f: sha256_file(workdir / f) for f in entry_files(workdir)},
        )
        write_json_atomic(workdir / MANIFEST, manifest)
        write_marker(workdir)
        if final.exists():
            shutil.rmtree(final)
        os.replace(workdir, final)
        result = self._verify(name, config, final)
        result.computed = True
        return result

    def entries(self) -> list[Path]:
        """Every complete entry under the root this cache writes (not the committed results)."""
        return self._complete(self.root)

    def pack(self, archive: str | os.PathLike, entries: list[Path] | None = None) -> Path:
        """Write complete entries into one ``.tar.gz`` that :meth:`unpack` merges elsewhere."""
        archive = Path(archive)
        with tarfile.open(archive, "w:gz") as tar:
            for entry in entries if entries is not None else self.entries():
                tar.add(entry, arcname=str(entry.relative_to(self.root)))
        return archive

    def unpack(self, archive: str | os.PathLike) -> UnpackReport:
        """Merge an archive from :meth:`pack` into the cache, verifying every entry.

        The archive is checked whole (a missing file, a folder, not gzip, truncated:
        ``ValueError`` with one line) and extracted into a temporary folder in the root. Each
        entry is verified like :meth:`load`, against its own ``config.json``: a corrupt one is
        skipped; a good one is added, or replaces a local copy that fails verification; a local
        copy that verifies is kept. Work folders (``*.partial``) are not merged.
        """
        archive = Path(archive)
        _check_archive(archive)
        members = _archive_members(archive)
        entries = sorted({tuple(Path(m.name).parts[:2]) for m in members})
        wanted = [m for m in members if not Path(m.name).parts[1].endswith(PARTIAL_SUFFIX)]
        report = UnpackReport()
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.root))
        try:
            _extract(archive, wanted, staging)
            for name, key in entries:
                if key.endswith(PARTIAL_SUFFIX):
                    report.ignored.append(self.root / name / key)
                else:
                    self._merge(name, key, staging / name / key, report)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return report

    def _merge(self, name: str, key: str, incoming: Path, report: UnpackReport) -> None:
        """Move the verified entry ``incoming`` into place unless a good local copy exists."""
        local = self.root / name / key
        try:
            self._verify_stored(name, incoming)
        except CacheError as err:
            report.skipped.append((local, str(err).replace(str(incoming), f"{name}/{key}")))
            return
        with self._lock(name, key):
            replaced = local.exists() or local.is_symlink()
            if replaced:
                try:
                    self._verify_stored(name, local)
                    report.kept.append(local)
                    return
                except CacheError:
                    if local.is_dir() and not local.is_symlink():
                        shutil.rmtree(local)
                    else:
                        local.unlink()
            local.parent.mkdir(parents=True, exist_ok=True)
            os.replace(incoming, local)
        (report.replaced if replaced else report.added).append(local)


def _check_archive(archive: Path) -> None:
    """One-line ``ValueError`` unless ``archive`` is a whole gzip file."""
    if archive.is_dir():
        raise ValueError(f"{archive} is a folder, not an archive; {_UNPACK_HINT}")
    if not archive.is_file():
        raise ValueError(f"{archive}: no such file; {_UNPACK_HINT}")
    with open(archive, "rb") as handle:
        magic = handle.read(2)
    if magic != b"\x1f\x8b":
        raise ValueError(f"{archive} is not a gzip-compressed tar archive; {_UNPACK_HINT}")
    try:
        with gzip.open(archive) as stream:
            while stream.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{archive} is truncated or damaged ({err}); copy it again") from err


def _archive_members(archive: Path) -> list[tarfile.TarInfo]:
    """The members of ``archive``, each a plain file or folder inside ``<name>/<key>/``."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{archive} is not a readable tar archive ({err}); "
                         f"{_UNPACK_HINT}") from err
    for member in members:
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts or len(parts) < 2:
            raise ValueError(f"{archive}: unsafe or unexpected member {member.name!r}")
        if parts[0].startswith(".") or (len(parts) == 2 and not member.isdir()):
            raise ValueError(f"{archive}: unexpected member {member.name!r} (not in an entry)")
        if not (member.isfile() or member.isdir()):
            raise ValueError(f"{archive}: member {member.name!r} is not a plain file")
    return members


def _extract(archive: Path, members: list[tarfile.TarInfo], destination: Path) -> None:
    """Extract the checked ``members`` of ``archive`` into ``destination``."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, members=members, filter="data")
            else:  # Python without extraction filters: members were checked above
                tar.extractall(destination, members=members)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise ValueError(f"{archive} is truncated or damaged ({err}); copy it again") from err


def _logged(result: Result) -> Result:
    """Append ``result``'s name, key and origin to ``$DDGAN_CACHE_LOG`` when it is set."""
    log = os.environ.get(LOG_ENV_VAR)
    if log:
        line = json.dumps({"name": result.name, "key": result.key, "computed": result.computed,
                           "path": str(result.path)})
        with open(log, "a") as handle:
            handle.write(line + "\n")
    return result


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"experiment name {name!r} must be a plain folder name")
