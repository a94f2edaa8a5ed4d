"""Book runner and sweeps: checks before any chapter runs, the last good notebook survives a
failure, cell progress on a terminal, and atomic writes.

Only :func:`test_failed_chapter_keeps_the_last_good_notebook` starts Jupyter kernels (a tiny
two-chapter book in ``tmp_path``); every other test replaces execution with a stub.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import nbformat
import pytest

from ddgan_core import book, cli, sweep

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = book.chapters(ROOT)


class Recorder:
    """A stub of :func:`book.execute_notebook` that records its calls and writes a notebook."""

    def __init__(self, glued: dict | None = None):
        self.calls: list[tuple[Path, Path, dict]] = []
        self.glued = glued or {}

    def __call__(self, source, output, parameters, *args, **kwargs):
        self.calls.append((Path(source), Path(output), dict(parameters)))
        cells = [{"cell_type": "code", "metadata": {}, "source": "", "execution_count": 1,
                  "outputs": [{"output_type": "display_data",
                               "metadata": {"scrapbook": {"name": k}},
                               "data": {"application/papermill.record/text/plain": repr(v)}}
                              for k, v in self.glued.items()]}]
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                            "nbformat_minor": 5}))
        return Path(output)


# ----------------------------------------------------------------------------------------------
# (b) every override checked before the first chapter runs


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"ddpm_train_steps": "abc"}, r"ddpm_train_steps='abc'.*wrong type; expected int"),
        ({"seed": 1.5}, r"seed=1\.5.*wrong type; expected int"),
        ({"forward_timesteps": "abc"}, r"forward_timesteps='abc'.*expected int"),
        ({"fid_samples": 0}, r"fid_samples=0: must be >= 1"),
        # chapter 1's old name for forward_timesteps: one namespace, profile keys only
        ({"num_timesteps": 30}, r"unknown parameter name.*num_timesteps.*profile keys"),
    ],
)
def test_bad_override_value_fails_before_any_chapter(monkeypatch, overrides, match):
    recorder = Recorder()
    monkeypatch.setattr(book, "execute_notebook", recorder)
    monkeypatch.setattr(book, "build_book", lambda *a, **k: pytest.fail("build started"))
    with pytest.raises(ValueError, match=match) as err:
        book.run("smoke", overrides, build=False)
    assert recorder.calls == []
    assert "\n" not in str(err.value)


def test_book_main_reports_a_bad_override_in_one_line(monkeypatch, capsys):
    recorder = Recorder()
    monkeypatch.setattr(book, "execute_notebook", recorder)
    assert book.main(["--profile", "smoke", "--set", "ddpm_train_steps=abc", "--no-build"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "ddpm_train_steps='abc'" in err
    assert recorder.calls == []


def test_every_override_reaches_every_chapter(monkeypatch, tmp_path):
    """One namespace: the DDGAN chapter compares against the DDPM the override asked for (it
    used to get only the overrides it declared, so chapter 3 and 4 disagreed)."""
    recorder = Recorder()
    monkeypatch.setattr(book, "execute_notebook", recorder)
    book.run("smoke", {"ddpm_train_steps": 7, "forward_timesteps": "30", "seed": None},
             book_dir=tmp_path, build=False)
    assert [call[0].stem for call in recorder.calls] == CHAPTERS
    for call in recorder.calls:
        assert call[2]["ddpm_train_steps"] == 7 and call[2]["forward_timesteps"] == "30"


def test_every_chapter_builds_its_profile_from_all_profile_keys():
    """Each chapter reads every profile key papermill injects, declared or not."""
    from ddgan_core.profiles import keys

    for name in CHAPTERS:
        source = book.notebook_source(name)
        assert "get_profile(profile, **overrides_from(globals()))" in source.read_text(), name
        declared = set(book.notebook_parameters(source)) - {"profile"}
        assert declared <= set(keys()), (name, declared - set(keys()))


# ----------------------------------------------------------------------------------------------
# (c) cell progress on a terminal


class _Stdout(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("tty", [True, False])
def test_papermill_progress_bar_follows_the_terminal(tmp_path, monkeypatch, tty):
    import papermill

    seen = {}

    def fake_execute(notebook, output_path, **kwargs):
        seen.update(kwargs)
        nbformat.write(notebook, output_path)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    source = tmp_path / "tiny.py"
    source.write_text('# %% tags=["parameters"]\nprofile = "cpu"\n\n# %%\nx = 1\n')
    monkeypatch.setattr(sys, "stdout", _Stdout(tty))
    book.execute_notebook(source, tmp_path / "out" / "tiny.ipynb", {"profile": "smoke"})
    assert seen["progress_bar"] is tty
    assert (tmp_path / "out" / "tiny.ipynb").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny.ipynb"]


# ----------------------------------------------------------------------------------------------
# (a) a failing chapter keeps the last good executed notebook and stops before the build

_TOC = """format: jb-book
root: book/intro
chapters:
  - file: book/executed/a_ok
  - file: book/executed/b_flaky
"""
_OK = '# %% tags=["parameters"]\nprofile = "cpu"\n\n# %%\nprint("a ran")\n'
_FLAKY = (
    '# %% tags=["parameters"]\nprofile = "cpu"\nfail = False\n\n# %%\n'
    'if fail:\n    raise RuntimeError("flaky chapter failed")\nprint("b ran fine")\n'
)


def _fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "_toc.yml").write_text(_TOC)
    (root / "notebooks" / "a_ok.py").write_text(_OK)
    (root / "notebooks" / "b_flaky.py").write_text(_FLAKY)
    return root


def _stdout_text(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))


def test_failed_chapter_keeps_the_last_good_notebook(tmp_path, monkeypatch, capsys):
    root = _fake_root(tmp_path)
    monkeypatch.setattr(book, "repo_root", lambda: root)
    builds = []
    monkeypatch.setattr(book, "build_book", lambda book_dir, strict=True: builds.append(book_dir))
    executed = root / "book" / "executed"

    book.run("smoke")  # both chapters good, then the (stubbed) build
    assert builds == [root]
    assert "b ran fine" in _stdout_text(executed / "b_flaky.ipynb")
    good = (executed / "b_flaky.ipynb").read_bytes()

    with pytest.raises(book.NotebookFailed) as err:
        book.run("smoke", {"fail": True})
    assert (executed / "b_flaky.ipynb").read_bytes() == good, "last good notebook overwritten"
    assert builds == [root], "a failed chapter must stop the run before the build"
    message = str(err.value)
    assert "b_flaky.py" in message and "RuntimeError: flaky chapter failed" in message
    assert "b_flaky.failed.ipynb" in message and "kept" in message
    failed = executed / "b_flaky.failed.ipynb"
    assert "flaky chapter failed" in failed.read_text()
    assert sorted(p.name for p in executed.iterdir()) == [
        "a_ok.ipynb", "b_flaky.failed.ipynb", "b_flaky.ipynb"]

    book.run("smoke", only=["b_flaky"], build=False)  # fixed: the failed copy goes away
    assert sorted(p.name for p in executed.iterdir()) == ["a_ok.ipynb", "b_flaky.ipynb"]


def test_book_main_returns_1_and_names_the_kept_notebook(monkeypatch, capsys):
    def failing(source, output, parameters, *args, **kwargs):
        raise book.NotebookFailed(f"notebook {source} failed")

    monkeypatch.setattr(book, "execute_notebook", failing)
    monkeypatch.setattr(book, "build_book", lambda *a, **k: pytest.fail("build started"))
    assert book.main(["--profile", "smoke", "--only", CHAPTERS[0]]) == 1
    assert "failed" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# sweeps: every grid value checked first, a missing notebook in one line, atomic CSV and plot


def test_sweep_bad_grid_value_fails_before_the_first_point(tmp_path, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(sweep, "execute_notebook", recorder)
    with pytest.raises(ValueError, match=r"forward_timesteps='abc'.*expected int"):
        sweep.run_sweep("notebooks/01_forward_process", {"forward_timesteps": [30, "abc"]},
                        "smoke", tmp_path / "s")
    assert recorder.calls == []
    assert not (tmp_path / "s").exists()


def test_sweep_cli_bad_value_and_missing_notebook_are_one_line(tmp_path, monkeypatch, capsys):
    recorder = Recorder()
    monkeypatch.setattr(sweep, "execute_notebook", recorder)
    argv = ["sweep", "notebooks/01_forward_process", "-p", "forward_timesteps", "30", "abc",
            "--profile", "smoke", "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "'abc'" in err
    assert cli.main(["sweep", "notebooks/nope", "-p", "forward_timesteps", "30",
                     "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "notebooks/nope" in err and "01_forward_process" in err  # lists what exists
    assert recorder.calls == []


def test_sweep_writes_csv_and_plot_atomically(tmp_path, monkeypatch):
    recorder = Recorder(glued={"T": 20, "frac": 0.5})
    monkeypatch.setattr(sweep, "execute_notebook", recorder)
    written = []
    real = sweep.atomic_write_bytes

    def spy(path, data):
        written.append(Path(path).name)
        real(path, data)

    monkeypatch.setattr(sweep, "atomic_write_bytes", spy)
    csv_path, plot_path = sweep.run_sweep(
        "notebooks/01_forward_process", {"forward_timesteps": [30, 40]}, "smoke", tmp_path / "s")
    assert sorted(written) == ["plot.png", "results.csv"]
    assert csv_path.read_text().splitlines()[0] == "profile,forward_timesteps,T,frac"
    assert plot_path.read_bytes()[:4] == b"\x89PNG"
    assert [call[2]["forward_timesteps"] for call in recorder.calls] == [30, 40]
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]
