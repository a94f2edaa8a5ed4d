from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ddgan_core.cache import MARKER, ResultCache, atomic_write_bytes, config_key


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
    assert set(manifest["files"]) == {"samples.npz"}
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
    added = target.unpack(archive)
    assert [p.name for p in added] == [entry.key]
    assert target.load("exp", {"n": 5}).metrics == {"value": 10}


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
