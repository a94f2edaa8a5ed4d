"""A user's runs go to a local, git-ignored cache; the committed reference results are read, never
written; ``promote`` is the one explicit way into them."""

from __future__ import annotations

import pytest

from ddgan_core import cache as cache_module
from ddgan_core import cli
from ddgan_core.cache import CacheError, ResultCache


@pytest.fixture
def roots(tmp_path, monkeypatch):
    committed, local = tmp_path / "results", tmp_path / "local"
    monkeypatch.setattr(cache_module, "committed_root", lambda: committed)
    monkeypatch.setenv(cache_module.ENV_VAR, str(local))
    return committed, local


def _compute(value):
    def compute(workdir, config):
        (workdir / "weights.bin").write_bytes(b"w" * value)
        return {"value": value}
    return compute


def test_runs_go_local_and_committed_results_are_read_not_written(roots):
    committed, local = roots
    ResultCache(committed).load_or_run("exp", {"n": 1}, _compute(1))  # a reference result
    before = sorted(p.relative_to(committed) for p in committed.rglob("*"))
    cache = ResultCache()
    assert cache.read_roots == [local, committed]
    found = cache.load_or_run("exp", {"n": 1}, lambda *a: pytest.fail("recomputed"))
    assert found.path.parent.parent == committed and not found.computed
    new = cache.load_or_run("exp", {"n": 2}, _compute(2))
    assert new.computed and new.path.parent.parent == local
    assert sorted(p.relative_to(committed) for p in committed.rglob("*")) == before
    assert [p.name for p in cache.entries()] == [new.key]  # reproduce packs the user's runs


def test_the_default_local_cache_is_git_ignored(monkeypatch):
    import subprocess

    monkeypatch.delenv(cache_module.ENV_VAR, raising=False)
    root = cache_module.default_root()
    assert root != cache_module.committed_root()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(root / "exp" / "k")],
                             cwd=cache_module.repo_root())
    assert ignored.returncode == 0


def test_promote_copies_verified_entries_only(roots, capsys):
    committed, local = roots
    cache = ResultCache()
    entry = cache.load_or_run("exp", {"n": 3}, _compute(3))
    name = f"exp/{entry.key}"
    assert cli.main(["promote", name]) == 0
    assert f"promoted: {name}" in capsys.readouterr().out
    cache_module.check_entry(committed / name)
    assert ResultCache(committed).load("exp", {"n": 3}).metrics == {"value": 3}
    assert cache.promote([name]) == [(name, "already committed")]
    (entry.path / "weights.bin").write_bytes(b"tampered")
    other = cache.load_or_run("exp", {"n": 4}, _compute(4))
    with pytest.raises(CacheError, match="weights.bin"):
        cache.promote([f"exp/{other.key}", name])  # nothing copied when one entry is corrupt
    assert not (committed / "exp" / other.key).exists()
    assert cli.main(["promote", "exp/0000000000000000"]) == 2
    assert cli.main(["promote"]) == 2
