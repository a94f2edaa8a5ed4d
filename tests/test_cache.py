from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

import ddgan_core
from ddgan_core.cache import (
    MARKER,
    CacheError,
    ResultCache,
    atomic_write_bytes,
    config_key,
    upgrade_entry,
    write_marker,
)


def _compute_counter(calls):
    def compute(workdir, config):
        calls.append(config)
        (workdir / "samples.npz").write_bytes(b"payload-" + str(config["n"]).encode())
        return {"value": config["n"] * 2}

    return compute


def test_load_or_run_computes_once_and_records_manifest(tmp_path):
    cache, calls = ResultCache(tmp_path), []
    first = cache.load_or_run("exp", {"n": 3}, _compute_counter(calls))
    second = cache.load_or_run("exp", {"n": 3}, _compute_counter(calls))
    assert len(calls) == 1 and first.computed and not second.computed
    assert second.metrics == {"value": 6}
    manifest = second.manifest
    for key in ("git_commit", "versions", "device", "threads", "wall_time_s", "date", "files"):
        assert key in manifest
    assert set(manifest["files"]) == {"samples.npz", "config.json", "metrics.json"}
    digest = hashlib.sha256((second.path / "manifest.json").read_bytes()).hexdigest()
    assert (second.path / MARKER).read_text() == f"{digest}  manifest.json\n"  # sha256sum -c
    assert "threads" in second.provenance()


def test_changed_configuration_makes_a_new_key(tmp_path):
    cache, calls = ResultCache(tmp_path), []
    a = cache.load_or_run("exp", {"n": 3}, _compute_counter(calls))
    b = cache.load_or_run("exp", {"n": 4}, _compute_counter(calls))
    assert a.path != b.path and len(calls) == 2
    assert config_key("exp", {"n": 3, "m": 1}) == config_key("exp", {"m": 1, "n": 3})


def test_partial_entry_is_recomputed_never_returned(tmp_path):
    cache, calls = ResultCache(tmp_path), []
    result = cache.load_or_run("exp", {"n": 1}, _compute_counter(calls))
    (result.path / MARKER).unlink()  # as if interrupted before completion
    assert cache.load("exp", {"n": 1}) is None
    cache.load_or_run("exp", {"n": 1}, _compute_counter(calls))
    assert len(calls) == 2


def test_corrupt_file_is_detected(tmp_path):
    cache, calls = ResultCache(tmp_path), []
    result = cache.load_or_run("exp", {"n": 1}, _compute_counter(calls))
    (result.path / "samples.npz").write_bytes(b"garbage")
    assert cache.load("exp", {"n": 1}) is None
    again = cache.load_or_run("exp", {"n": 1}, _compute_counter(calls))
    assert len(calls) == 2 and (again.path / "samples.npz").read_bytes() == b"payload-1"


def test_interrupted_compute_leaves_no_entry_and_keeps_its_workdir(tmp_path):
    cache = ResultCache(tmp_path)

    def crash(workdir, config):
        (workdir / "checkpoint.pt").write_bytes(b"step 10")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.load_or_run("exp", {"n": 9}, crash)
    assert cache.load("exp", {"n": 9}) is None
    partial = cache.path("exp", {"n": 9}).with_name(cache.path("exp", {"n": 9}).name + ".partial")
    assert (partial / "checkpoint.pt").read_bytes() == b"step 10"  # a resume can start from it

    def resume(workdir, config):
        return {"resumed_from": (workdir / "checkpoint.pt").read_text()}

    assert cache.load_or_run("exp", {"n": 9}, resume).metrics == {"resumed_from": "step 10"}


def test_pack_and_unpack_round_trip(tmp_path):
    source, calls = ResultCache(tmp_path / "a"), []
    entry = source.load_or_run("exp", {"n": 5}, _compute_counter(calls))
    archive = source.pack(tmp_path / "r.tar.gz")
    target = ResultCache(tmp_path / "b")
    report = target.unpack(archive)
    assert [p.name for p in report.added] == [entry.key]
    assert report.replaced == report.kept == report.skipped == []
    assert target.load("exp", {"n": 5}).metrics == {"value": 10}
    assert sorted(p.name for p in target.root.iterdir()) == ["exp"]  # no staging folder left


def test_stored_config_must_match(tmp_path):
    cache = ResultCache(tmp_path)
    result = cache.load_or_run("exp", {"n": 1}, _compute_counter([]))
    (result.path / "config.json").write_text(json.dumps({"n": 2}))
    assert cache.load("exp", {"n": 1}) is None


def test_bad_experiment_name(tmp_path):
    with pytest.raises(ValueError, match="plain folder name"):
        ResultCache(tmp_path).path("../escape", {})


def test_committed_reference_results_verify():
    """Every committed entry under results/ is complete and passes its checksums."""
    cache = ResultCache(Path(__file__).resolve().parent.parent / "results")
    entries = cache.entries()
    assert entries, "no committed reference results found"
    for entry in entries:
        config = json.loads((entry / "config.json").read_text())
        assert cache.load(entry.parent.name, config) is not None, f"{entry} fails verification"


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


# --- integrity: every file of an entry is checksummed, the manifest sealed by the marker ---


def _entry(cache, n=1, calls=None):
    return cache.load_or_run("exp", {"n": n}, _compute_counter([] if calls is None else calls))


def _edit_manifest(path, edit):
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    write_marker(path)  # sealed again: only the edit itself is wrong


def test_edited_metrics_is_detected_and_recomputed(tmp_path):
    cache, calls = ResultCache(tmp_path), []
    result = _entry(cache, 1, calls)
    (result.path / "metrics.json").write_text(json.dumps({"value": 999}))  # valid, but edited
    assert cache.load("exp", {"n": 1}) is None
    assert _entry(cache, 1, calls).metrics == {"value": 2} and len(calls) == 2


def test_manifest_without_files_is_corrupt(tmp_path):
    cache = ResultCache(tmp_path)
    result = _entry(cache)
    _edit_manifest(result.path, lambda m: m.pop("files"))
    weights = bytearray((result.path / "samples.npz").read_bytes())
    weights[0] ^= 0xFF
    (result.path / "samples.npz").write_bytes(bytes(weights))
    assert cache.load("exp", {"n": 1}) is None


@pytest.mark.parametrize("how", ["extra file", "manifest lists fewer files"])
def test_file_not_in_the_manifest_is_corrupt(tmp_path, how):
    cache = ResultCache(tmp_path)
    result = _entry(cache)
    if how == "extra file":
        (result.path / "extra.bin").write_bytes(b"x")
    else:
        _edit_manifest(result.path, lambda m: m["files"].pop("samples.npz"))
    assert cache.load("exp", {"n": 1}) is None


def test_edited_manifest_is_corrupt(tmp_path):
    cache = ResultCache(tmp_path)
    result = _entry(cache)
    manifest = json.loads((result.path / "manifest.json").read_text())
    manifest["device"] = "cuda:a faster one"
    (result.path / "manifest.json").write_text(json.dumps(manifest))
    assert cache.load("exp", {"n": 1}) is None


def test_hidden_temporary_files_are_no_part_of_an_entry(tmp_path):
    cache = ResultCache(tmp_path)
    result = _entry(cache)
    (result.path / ".metrics.json.abc123.tmp").write_bytes(b"left by a killed writer")
    assert cache.load("exp", {"n": 1}) is not None


# --- concurrency: one entry computed once by two processes ---

_WORKER = textwrap.dedent("""
    import hashlib, json, os, sys, time
    from pathlib import Path
    from ddgan_core.cache import ResultCache

    root, counter, release = map(Path, sys.argv[1:4])

    def compute(workdir, config):
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        (workdir / "weights.bin").write_bytes(os.urandom(64))  # differs per computation
        return {"pid": os.getpid()}

    result = ResultCache(root).load_or_run("exp", {"n": 1}, compute)
    weights = hashlib.sha256(result.file("weights.bin").read_bytes()).hexdigest()
    print(json.dumps({"path": str(result.path), "computed": result.computed,
                      "metrics": result.metrics, "weights": weights}))
""")


def test_two_processes_compute_an_entry_once(tmp_path):
    root, counter, release = tmp_path / "cache", tmp_path / "counter", tmp_path / "release"
    package_root = str(Path(ddgan_core.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}

    def start(index):
        err = open(tmp_path / f"err{index}", "w")
        proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(root), str(counter),
                                 str(release)], stdout=subprocess.PIPE, stderr=err, env=env,
                                cwd=tmp_path, text=True)
        return proc, err

    first, err1 = start(1)
    deadline = time.monotonic() + 60
    while not counter.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first process is computing (and holds the lock)
    second, err2 = start(2)
    while time.monotonic() < deadline and second.poll() is None:
        if "waiting for another process" in (tmp_path / "err2").read_text():
            break
        if len(counter.read_text().split()) > 1:
            break  # the second one computes too (no lock)
        time.sleep(0.05)
    release.touch()
    out1, _ = first.communicate(timeout=60)
    out2, _ = second.communicate(timeout=60)
    err1.close()
    err2.close()
    assert first.returncode == 0 and second.returncode == 0, (tmp_path / "err2").read_text()
    assert len(counter.read_text().split()) == 1  # exactly one compute
    one, two = json.loads(out1), json.loads(out2)
    assert one == {**two, "computed": True} and not two["computed"]
    key = config_key("exp", {"n": 1})
    assert f"waiting for another process computing exp/{key} ..." in (tmp_path / "err2").read_text()
    assert ResultCache(root).load("exp", {"n": 1}).metrics == one["metrics"]


# --- unpack: checked arguments, verified entries, good local entries kept ---


def _corrupt(path, filename="samples.npz"):
    (path / filename).write_bytes(b"garbage")


def _cached_pair(tmp_path, corrupt_incoming=False, corrupt_local=False):
    """An archive of entry exp/{n: 1} (from cache a) and cache b holding the same entry."""
    source, target = ResultCache(tmp_path / "a"), ResultCache(tmp_path / "b")
    incoming, local = _entry(source), _entry(target)
    if corrupt_incoming:
        _corrupt(incoming.path)
    if corrupt_local:
        _corrupt(local.path)
    return source.pack(tmp_path / "r.tar.gz"), target, incoming, local


def test_unpack_skips_corrupt_incoming_and_keeps_local(tmp_path):
    archive, target, _, local = _cached_pair(tmp_path, corrupt_incoming=True)
    before = {p.name: p.read_bytes() for p in local.path.iterdir()}
    report = target.unpack(archive)
    assert [p for p, _ in report.skipped] == [local.path]
    assert "samples.npz" in report.skipped[0][1]
    assert report.added == report.replaced == report.kept == []
    assert {p.name: p.read_bytes() for p in local.path.iterdir()} == before
    assert sorted(p.name for p in target.root.iterdir()) == ["exp"]
    fresh = ResultCache(tmp_path / "c")
    assert fresh.unpack(archive).skipped and not (fresh.root / "exp" / local.key).exists()


def test_unpack_replaces_corrupt_local(tmp_path):
    archive, target, incoming, local = _cached_pair(tmp_path, corrupt_local=True)
    report = target.unpack(archive)
    assert report.replaced == [local.path] and report.added == report.skipped == []
    assert target.load("exp", {"n": 1}).manifest == incoming.manifest


def test_unpack_keeps_good_local(tmp_path):
    archive, target, incoming, local = _cached_pair(tmp_path)
    manifest = (local.path / "manifest.json").read_bytes()
    report = target.unpack(archive)
    assert report.kept == [local.path] and report.added == report.replaced == []
    assert (local.path / "manifest.json").read_bytes() == manifest
    assert "kept local" in report.lines()[0]


def test_unpack_ignores_work_folders(tmp_path):
    cache, archive = ResultCache(tmp_path / "cache"), tmp_path / "work.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("exp/0123456789abcdef.partial/checkpoint.pt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"step"))
    report = cache.unpack(archive)
    assert report.ignored == [cache.root / "exp" / "0123456789abcdef.partial"]
    assert not (cache.root / "exp").exists() or not any((cache.root / "exp").iterdir())


def test_unpack_rejects_unsafe_members(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("exp/../../evil.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="unsafe"):
        ResultCache(tmp_path / "cache").unpack(archive)


@pytest.mark.parametrize("kind", ["missing", "directory", "not gzip", "truncated", "gzip not tar"])
def test_unpack_rejects_bad_archives_in_one_line(tmp_path, kind):
    source = ResultCache(tmp_path / "a")
    _entry(source)
    good = source.pack(tmp_path / "r.tar.gz").read_bytes()
    archive = tmp_path / "bad.tar.gz"
    if kind == "directory":
        archive.mkdir()
    elif kind == "not gzip":
        archive.write_bytes(b"this is not an archive\n")
    elif kind == "truncated":
        archive.write_bytes(good[: len(good) // 2])
    elif kind == "gzip not tar":
        archive.write_bytes(gzip.compress(b"plain text, no tar headers\n" * 40))
    expected = {"missing": "no such file", "directory": "is a folder",
                "not gzip": "not a gzip", "truncated": "truncated",
                "gzip not tar": "not a readable tar"}[kind]
    target = ResultCache(tmp_path / "b")
    with pytest.raises(ValueError, match=expected) as err:
        target.unpack(archive)
    assert "\n" not in str(err.value)
    assert not target.root.exists() or not any(target.root.iterdir())


def test_cli_unpack_reports_each_entry_and_fails_on_corrupt(tmp_path, capsys):
    from ddgan_core.cli import main

    archive, target, _, local = _cached_pair(tmp_path, corrupt_incoming=True)
    assert main(["unpack", str(archive), "--cache-dir", str(target.root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"skipped {local.path}") and "1 skipped as corrupt" in out[-1]
    good = ResultCache(tmp_path / "c")
    _entry(good, 7)
    assert main(["unpack", str(good.pack(tmp_path / "g.tar.gz")),
                 "--cache-dir", str(target.root)]) == 0
    assert "1 added" in capsys.readouterr().out


# --- upgrade of entries written before config.json and metrics.json were checksummed ---


def _old_format(path):
    """Rewrite an entry as the old code wrote it: no checksums of the JSON files, date marker."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in ("config.json", "metrics.json"):
        manifest["files"].pop(name)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (path / MARKER).write_text(manifest["date"] + "\n")


def test_upgrade_entry_adds_checksums_contents_unchanged(tmp_path):
    cache = ResultCache(tmp_path)
    result = _entry(cache)
    _old_format(result.path)
    assert cache.load("exp", {"n": 1}) is None
    before = {p.name: p.read_bytes() for p in result.path.iterdir()}
    upgrade_entry(result.path)
    upgraded = cache.load("exp", {"n": 1})
    assert upgraded is not None and upgraded.metrics == {"value": 2}
    assert set(upgraded.manifest["files"]) == {"samples.npz", "config.json", "metrics.json"}
    assert "contents unchanged" in upgraded.manifest["upgraded"]["note"]
    after = {p.name: p.read_bytes() for p in result.path.iterdir()}
    assert {k: v for k, v in after.items() if k not in ("manifest.json", MARKER)} == {
        k: v for k, v in before.items() if k not in ("manifest.json", MARKER)}
    manifest = (result.path / "manifest.json").read_bytes()
    upgrade_entry(result.path)  # an entry that verifies is left alone
    assert (result.path / "manifest.json").read_bytes() == manifest


@pytest.mark.parametrize("defect", ["listed file fails", "other unlisted file"])
def test_upgrade_entry_refuses_a_bad_entry(tmp_path, defect):
    cache = ResultCache(tmp_path)
    result = _entry(cache)
    _old_format(result.path)
    if defect == "listed file fails":
        _corrupt(result.path)
    else:
        (result.path / "extra.bin").write_bytes(b"x")
    manifest = (result.path / "manifest.json").read_bytes()
    with pytest.raises(CacheError):
        upgrade_entry(result.path)
    assert (result.path / "manifest.json").read_bytes() == manifest
    assert cache.load("exp", {"n": 1}) is None


def test_rekey_entry_moves_an_entry_and_records_what_changed(tmp_path):
    """A key rule change (a setting added or removed) moves the entry, contents unchanged."""
    from ddgan_core.cache import check_entry, rekey_entry

    cache = ResultCache(tmp_path)
    old = cache.load_or_run("exp", {"n": 1, "every": 5}, lambda w, c: {"value": 2})
    moved = rekey_entry(old.path, {"n": 1, "version": 1}, "why")
    assert not old.path.exists() and moved.name == config_key("exp", {"n": 1, "version": 1})
    check_entry(moved)
    found = cache.load("exp", {"n": 1, "version": 1})
    assert found is not None and found.metrics == {"value": 2}
    record = found.manifest["rekeyed"][-1]
    assert record["from_key"] == old.key and record["note"] == "why"
    assert record["added"] == {"version": 1} and record["removed"] == {"every": 5}
