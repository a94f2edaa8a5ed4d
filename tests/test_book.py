"""The executable book: pairs in sync, smoke execution, strict build, browser check, sweeps."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import jupytext
import pytest
from conftest import needs_data

from ddgan_core import book, browsercheck, sweep

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))


def _cells(notebook):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", [])))
            for c in notebook.cells]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_paired_notebook_is_in_sync_and_has_no_outputs(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"run `make sync` to create {paired.name}"
    assert _cells(jupytext.read(source)) == _cells(jupytext.read(paired)), (
        f"{paired.name} is out of sync with {source.name}: run `make sync`")
    raw = json.loads(paired.read_text())
    assert not any(c.get("outputs") for c in raw["cells"]), f"{paired.name} has outputs"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_chapter_has_a_profile_parameter(source):
    assert book.notebook_parameters(source)["profile"] == "cpu"


def test_table_of_contents_lists_every_notebook():
    assert book.chapters(ROOT) == [p.stem for p in SOURCES]


def test_unknown_parameter_is_rejected_before_running(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter name\(s\) \['nope'\]; valid names"):
        book.run("smoke", {"nope": 1}, book_dir=tmp_path, build=False)
    with pytest.raises(ValueError, match="profile='huge' is unknown"):
        book.run("huge", book_dir=tmp_path, build=False)


def test_failing_notebook_names_notebook_cell_and_error(tmp_path):
    source = tmp_path / "broken.py"
    source.write_text(
        '# %% tags=["parameters"]\nprofile = "cpu"\n\n# %%\nx = 1\n\n# %%\n'
        'raise RuntimeError("boom in cell")\n'
    )
    with pytest.raises(book.NotebookFailed) as err:
        book.execute_notebook(source, tmp_path / "out.ipynb", {"profile": "smoke"})
    message = str(err.value)
    assert "broken.py" in message and "RuntimeError: boom in cell" in message
    assert "cell 3" in message or "cell 2" in message


@pytest.mark.book
@needs_data
def test_smoke_book_builds_strictly_and_passes_the_browser_check(tmp_path):
    html = book.run("smoke", book_dir=tmp_path / "book", cache_dir=tmp_path / "cache")
    executed = tmp_path / "book" / "book" / "executed"
    for source in SOURCES:
        notebook = json.loads((executed / f"{source.stem}.ipynb").read_text())
        injected = [c for c in notebook["cells"]
                    if "injected-parameters" in c["metadata"].get("tags", [])]
        assert injected and "hide-input" in injected[0]["metadata"]["tags"]
        assert '"smoke"' in "".join(injected[0]["source"])
    # MathJax is served by the book: the real pages are checked offline, nothing rewritten
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    remote_mathjax = re.compile(r'<script[^>]*src="https?://[^"]*mathjax', re.IGNORECASE)
    assert not any(remote_mathjax.search(page.read_text()) for page in html.rglob("*.html"))
    checked, problems = browsercheck.check_book(
        html, screenshots={SOURCES[0].stem: tmp_path / "chapter.png"})
    assert len(checked) >= len(SOURCES) + 2
    assert problems == []
    assert (tmp_path / "chapter.png").stat().st_size > 10_000


@pytest.mark.book
@needs_data
def test_browser_check_catches_a_broken_page(tmp_path):
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    (html / "index.html").write_text("<html><body>redirect</body></html>")
    (html / "book" / "bad.html").write_text(
        '<html><body><img src="missing.png"><div class="math notranslate">\\[ \\frac{1}{ \\]'
        "</div><p>Traceback (most recent call last):</p><p>{glue:text}`x`</p>"
        "<p>| a | b |\n|---|---:|\n| 1 | 2 |</p></body></html>")
    _, problems = browsercheck.check_book(html)
    text = "\n".join(problems)
    assert "missing image missing.png" in text
    assert "MathJax" in text
    assert "traceback" in text
    assert "unrendered MyST roles" in text
    assert "Markdown table was rendered as text" in text


@pytest.mark.book
@needs_data
def test_sweep_over_two_values_writes_csv_and_plot(tmp_path, monkeypatch):
    monkeypatch.setenv("DDGAN_CACHE_DIR", str(tmp_path / "cache"))
    csv_path, plot_path = sweep.run_sweep(
        "notebooks/01_forward_process", {"forward_timesteps": [30, 200]}, "smoke", tmp_path / "s")
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["forward_timesteps"] for r in rows] == ["30", "200"]
    assert [r["T"] for r in rows] == ["30", "200"]  # raw numbers: a count stays an integer
    assert all(0 < float(r["linear_snr1_frac"]) <= 1 for r in rows)
    assert plot_path.stat().st_size > 5_000
    record = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert record["profile"] == "smoke" and record["grid"] == {"forward_timesteps": [30, 200]}
    assert record["git_commit"] and record["notebook"] == "notebooks/01_forward_process.py"
    for point in record["points"]:
        names = [entry["name"] for entry in point["cache_entries"]]
        assert names == ["dataset_statistics"], point  # the cached experiment the chapter used
    keys = {e["key"] for p in record["points"] for e in p["cache_entries"]}
    assert len(keys) == 1  # the same entry for both points: forward_timesteps is not in its key
