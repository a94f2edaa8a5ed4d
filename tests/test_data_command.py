"""``python -m ddgan_core data`` and ``tools/check_data.py`` (what ``make book``/``make test``
run first): the data found and reported; missing data is exit 1 with the fixes, never a silent
install or download; the Debian package, then torchvision's download, only when asked."""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_data

from ddgan_core import cli, data

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "check_data.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("check_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_data = _load_script()


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No FashionMNIST anywhere: empty env dir and working directory, the Debian dir patched away,
    and every way to the network (or apt-get) fails the test."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(data.ENV_VAR, str(empty))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "_MEMORY", {})
    monkeypatch.setattr(check_data, "DEBIAN_DIR", tmp_path / "no-debian")

    def network(*args, **kwargs):
        raise AssertionError("the network or apt-get was touched")

    monkeypatch.setattr(data, "_download", network)
    monkeypatch.setattr(data.subprocess, "run", network)
    monkeypatch.setattr(socket.socket, "connect", network)
    return tmp_path


@pytest.fixture
def fetchers(monkeypatch, tiny_idx_dir):
    """Stand-ins for apt-get and torchvision's download that record the order they ran in; the
    download writes the tiny data set (MD5 table patched by ``tiny_idx_dir``)."""
    calls = []
    files = {path.name: path.read_bytes() for path in tiny_idx_dir.iterdir()}

    def apt(log=print):
        calls.append("apt")
        return False  # as apt-get without the package in its lists

    def download(root):
        calls.append(("download", root))
        raw = Path(root or "data") / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name, content in files.items():
            (raw / name).write_bytes(content)
        return raw

    monkeypatch.setattr(data, "install_debian_package", apt)
    monkeypatch.setattr(data, "_download", download)
    monkeypatch.setattr(data, "can_install_debian_package", lambda: None)  # root with apt-get
    return calls


@needs_data
def test_data_finds_and_reports_the_installed_data(capsys):
    assert cli.main(["data"]) == 0
    out = capsys.readouterr().out
    for split in data.SPLITS:
        directory = data.find_dataset_dir(split).resolve()
        assert f"FashionMNIST {split}: {directory}" in out and "MD5 verified" in out


def test_missing_data_exits_1_with_the_fixes_and_no_network(nowhere, capsys):
    assert cli.main(["data"]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: FashionMNIST 'train' split not found") and not captured.out
    assert str(nowhere / "empty") in err and str(nowhere / "no-debian") in err
    assert "apt-get install dataset-fashion-mnist" in err  # fix 1
    assert "python -m ddgan_core data --download" in err  # fix 2
    assert data.ENV_VAR in err and "data/FashionMNIST/raw" in err  # fix 3
    assert err.count("error:") == 1 and "Traceback" not in err


def test_the_stdlib_script_reports_missing_data_in_a_second(nowhere, capsys):
    start = time.perf_counter()
    assert check_data.main([]) == 1
    assert time.perf_counter() - start < 1
    err = capsys.readouterr().err
    assert err.startswith("error: FashionMNIST 'train' split not found")
    assert str(nowhere / "empty") in err and str(nowhere / "no-debian") in err
    assert "apt-get install dataset-fashion-mnist" in err and "make data" in err
    assert "python -m ddgan_core data --download" in err and data.ENV_VAR in err


def test_nothing_is_fetched_without_a_flag(fetchers, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    assert cli.main(["data", "--root", str(tmp_path / "empty")]) == 1
    assert fetchers == []


def test_download_tries_the_debian_package_first_then_torchvision(fetchers, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    assert cli.main(["data", "--download"]) == 0
    assert fetchers == ["apt", ("download", None)]
    out = capsys.readouterr().out
    assert "installing the Debian package" in out and "downloading" in out
    raw = (tmp_path / "data" / "FashionMNIST" / "raw").resolve()
    assert f"FashionMNIST train: {raw}" in out and f"FashionMNIST test: {raw}" in out


def test_apt_flag_never_downloads(fetchers, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    assert cli.main(["data", "--apt"]) == 1
    assert fetchers == ["apt"]
    assert "apt-get could not install" in capsys.readouterr().out


def test_without_root_the_debian_package_is_skipped(fetchers, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "can_install_debian_package", lambda: "needs root")
    root = tmp_path / "mine"
    assert cli.main(["data", "--download", "--root", str(root)]) == 0
    assert fetchers == [("download", root)]
    assert "skipping the Debian package: needs root" in capsys.readouterr().out


def test_install_debian_package_updates_the_lists_once(monkeypatch):
    commands = []

    def run(command, env):
        commands.append(command)
        assert env["DEBIAN_FRONTEND"] == "noninteractive"
        return subprocess.CompletedProcess(command, 0 if len(commands) > 1 else 100)

    monkeypatch.setattr(data.subprocess, "run", run)
    assert data.install_debian_package(log=lambda _: None)
    install = ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]
    assert commands == [install, ["apt-get", "update", "-q"], install]


def test_corrupt_data_exits_1(tiny_idx_dir, capsys):
    name = data.FILES["test"][0]
    (tiny_idx_dir / name).write_bytes(b"\0\0\x08\x01" + bytes(4))
    assert cli.main(["data", "--root", str(tiny_idx_dir)]) == 1
    assert "MD5" in capsys.readouterr().err


def test_the_script_agrees_with_the_library(tmp_path, monkeypatch):
    """Same files, checksums and places, in the same order, as ``ddgan_core.data``."""
    assert check_data.FILES == data.FILES and check_data.MD5 == data.MD5
    assert check_data.DEBIAN_DIR == data.DEBIAN_DIR and check_data.ENV_VAR == data.ENV_VAR
    assert check_data.DEBIAN_PACKAGE == data.DEBIAN_PACKAGE
    for env in (None, str(tmp_path / "env")):
        if env:
            monkeypatch.setenv(data.ENV_VAR, env)
        else:
            monkeypatch.delenv(data.ENV_VAR, raising=False)
        for root in (None, str(tmp_path / "root")):
            assert check_data.candidate_dirs(root) == data._candidate_dirs(root)


def test_the_script_uses_the_standard_library_only():
    tree = ast.parse(SCRIPT.read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules


def test_the_script_checks_a_tiny_data_set(tiny_idx_dir, monkeypatch, capsys):
    monkeypatch.setattr(check_data, "MD5", data.MD5)  # patched by tiny_idx_dir
    assert check_data.main(["--root", str(tiny_idx_dir)]) == 0
    assert f"FashionMNIST train: {tiny_idx_dir} (MD5 verified)" in capsys.readouterr().out
    (tiny_idx_dir / (data.FILES["train"][1] + ".gz")).write_bytes(b"not gzip")
    assert check_data.main(["--root", str(tiny_idx_dir)]) == 1
    assert "not a valid gzip file" in capsys.readouterr().err


@needs_data
def test_the_script_finds_the_installed_data_as_make_runs_it():
    env = {k: v for k, v in os.environ.items() if k != data.ENV_VAR}
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("MD5 verified") == 2
