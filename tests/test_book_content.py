"""What a reader meets in the book's sources (static checks, nothing is executed).

- Code is visible: no chapter cell is removed from the page (``remove-cell``, ``remove-input``,
  ``remove-output``) unless :data:`REMOVED_ALLOWED` names it with a reason; every code cell is
  folded instead (``hide-input``, or ``hide-cell`` for pure setup such as imports), the
  parameters cell included.
- Every chapter opens (its first markdown cell, after the title) with a box that reruns it:
  ``python -m ddgan_core book --profile cpu --only <chapter>``, a papermill command and a sweep,
  each changing a profile key, and a statement of what the chapter costs.
- The introduction has the book's title (``_config.yml``), lists exactly the chapters of
  ``_toc.yml`` and promises none that do not exist.
- Equations of the seed are always "the seed's eq. (N)"; the book's own are referenced by label.
- Figures: line plots as SVG (``use_book_style``), sample grids as PNG at twice their size, the
  interactive figure with plotly.js inlined (it must work offline).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import jupytext
import numpy as np
import pytest
import torch
import yaml

from ddgan_core import book, plotting
from ddgan_core.profiles import keys

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("0*.py"))
INTRO = ROOT / "book" / "intro.md"

#: (chapter, first line of the cell) -> why the cell may be removed from the page. Empty: every
#: cell of every chapter is on the page, its code folded behind "Show code cell source".
REMOVED_ALLOWED: dict[tuple[str, str], str] = {}
REMOVE_TAGS = {"remove-cell", "remove-input", "remove-output"}

#: Words that would promise chapters or results the book does not have (yet).
# (DPM-Solver++ is in chapter 3 since its solver grid landed, so the intro may name it.)
NOT_PROMISED = ["hyper-parameter chapter", "hyperparameter chapter", "consistency models",
                "laptop-class", "cannot be downloaded"]


def _cells(source: Path):
    return jupytext.read(source).cells


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_no_cell_is_removed_from_the_page(source):
    for cell in _cells(source):
        tags = set(cell.metadata.get("tags", []))
        if tags & REMOVE_TAGS:
            first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            assert (source.stem, first) in REMOVED_ALLOWED, (
                f"{source.name}: cell {first!r} is tagged {sorted(tags & REMOVE_TAGS)}; fold it "
                "with hide-input (or hide-cell for setup), or add it to REMOVED_ALLOWED with a "
                "reason")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_code_cell_is_folded_not_hidden(source):
    code = [c for c in _cells(source) if c.cell_type == "code"]
    for cell in code:
        tags = set(cell.metadata.get("tags", []))
        assert tags & {"hide-input", "hide-cell"} or tags & REMOVE_TAGS, (
            f"{source.name}: code cell {cell.source.splitlines()[0]!r} has no hide-input or "
            "hide-cell tag: its code would be shown unfolded")
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "hide-input" in parameters[0].metadata["tags"]
    install = code[0]  # Colab/Binder launch buttons open a bare kernel: it installs the package
    assert "hide-cell" in install.metadata.get("tags", [])
    assert "google.colab" in install.source and "BINDER_SERVICE_HOST" in install.source
    assert "find_spec(\"ddgan_core\") is None" in install.source  # a no-op where installed
    setup = code[code.index(parameters[0]) + 1]  # the imports
    assert "hide-cell" in setup.metadata.get("tags", []) and "import" in setup.source


def _first_markdown(source: Path) -> str:
    return next(c.source for c in _cells(source) if c.cell_type == "markdown")


#: Pages that only read other chapters' cached entries: no parameter of theirs is worth a
#: papermill run or a sweep, so their box gives the book command alone.
READ_ONLY_PAGES = {"08_conclusions"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_first_markdown_cell_holds_the_rerun_box(source):
    text = _first_markdown(source)
    lines = text.splitlines()
    assert lines[0].startswith("# "), "the first markdown cell starts with the title"
    box = re.search(r"(`{3,})\{(admonition|tip)\}(.*?)\n\1", text, re.S)
    assert box, f"{source.name}: no admonition or tip in the first markdown cell"
    assert "\n".join(lines[1:]).lstrip().startswith(box.group(0)), "the box follows the title"
    body = re.sub(r"\\\n\s*", "", box.group(3))  # shell line continuations joined
    name = source.stem
    assert f"python -m ddgan_core book --profile cpu --only {name}" in body
    assert "Cost" in body or name in READ_ONLY_PAGES
    assert "{glue:text}`chapter_seconds" in body, "the box says what executing the page costs"
    assert "{glue:text}`chapter_profile`" in body, "the box names the profile shown"
    if name in READ_ONLY_PAGES:
        return
    papermill = re.search(rf"papermill notebooks/{name}\.ipynb \S+\.ipynb -p profile cpu"
                          r"((?: -p \w+ \S+)+)", body)
    assert papermill, f"{source.name}: no papermill command with -p profile cpu -p <key> <value>"
    sweep = re.search(rf"python -m ddgan_core sweep notebooks/{name} -p (\w+) \S+ \S+.*"
                      r"--profile cpu", body)
    assert sweep, f"{source.name}: no sweep example"
    changed = re.findall(r"-p (\w+) ", papermill.group(1)) + [sweep.group(1)]
    for key in changed:
        assert key in keys(), f"{source.name}: {key!r} in the rerun box is not a profile key"
    assert "Cost" in body and "{glue:text}`chapter_seconds" in body, (
        f"{source.name}: the box must say what executing the chapter costs")
    assert "{glue:text}`chapter_profile`" in body, "the box names the profile shown"


def test_rerun_box_says_where_the_numbers_were_computed():
    """The DDPM chapter's model and grid were computed on a GPU, its solver grid on a CPU: its
    box says so from the manifests (the device of every entry), and says what a CPU would
    cost."""
    ddpm = _first_markdown(ROOT / "notebooks" / "03_ddpm.py")
    for name in ("ddpm_where", "ddpm_device", "fig1_device", "fig1_cpu_hours", "solver_device"):
        assert f"{{glue:text}}`{name}" in ddpm, name
    source = (ROOT / "notebooks" / "03_ddpm.py").read_text()
    assert 'glue("ddpm_where", everything["where"]' in source
    assert "cost([model_result, *points, *solver_points])" in source  # the solver grid too
    gan = _first_markdown(ROOT / "notebooks" / "04_ddgan.py")
    assert "{glue:text}`gan_where`" in gan and "{glue:text}`pair_device`" in gan


def test_cost_says_where_entries_ran():
    from ddgan_core.cache import committed_root

    committed = committed_root() / "x" / "0"

    class Entry:
        def __init__(self, device, seconds, path=committed, computed=False):
            self.manifest = {"device": device, "wall_time_s": seconds, "threads": 2}
            self.path, self.computed = path, computed

    both = plotting.cost([Entry("cuda:NVIDIA H200", 10.0), Entry("cpu:AMD EPYC", 5.0)])
    assert both["where"] == "on a GPU and a CPU" and both["seconds"] == 15.0 and both["gpu"]
    assert both["source"] == "read from the committed cache"
    assert plotting.cost([Entry("cpu:AMD EPYC", 1.0)])["where"] == "on a CPU"
    assert plotting.cost([Entry("cpu:AMD EPYC", 1.0, path=ROOT / ".cache" / "x")])["source"] == (
        "read from the local result cache")
    assert plotting.cost([Entry("cpu:AMD EPYC", 1.0, computed=True)])["source"] == (
        "computed in this run")


def _config_title() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["title"]


def test_intro_has_the_books_title():
    first = INTRO.read_text().splitlines()[0]
    assert first == f"# {_config_title()}"


def test_intro_lists_exactly_the_chapters_of_the_toc():
    text = INTRO.read_text()
    guide = text[text.index("## How to read this book"):]
    listed = re.findall(r"^\d+\. \*\*\{doc\}`executed/(\w+)`", guide, re.M)
    assert listed == book.chapters(ROOT)
    numbered = re.findall(r"^(\d+)\. ", guide, re.M)
    assert len(numbered) == len(listed), "a numbered item in the reading guide is no chapter"


def test_intro_promises_nothing_that_does_not_exist():
    text = INTRO.read_text().lower()
    for words in NOT_PROMISED:
        assert words not in text, f"intro.md mentions {words!r}"


@pytest.mark.parametrize("path", [*SOURCES, INTRO], ids=lambda p: p.stem)
def test_seed_equations_are_called_the_seeds(path):
    text = path.read_text()
    for match in re.finditer(r"\beqs?\. \(\d", text):
        before = text[max(0, match.start() - 16):match.start()]
        assert re.search(r"seed's(\s|#)+$", before), (
            f"{path.name}: {text[match.start() - 30:match.end() + 10]!r}: an equation of the "
            "seed is 'the seed's eq. (N)'; the book's own are referenced with {eq}`label`")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_figures_are_svg_and_no_text_is_written_for_the_build(source):
    text = source.read_text()
    assert "use_book_style()" in text, "line plots as SVG"
    assert "plt.rcParams.update(BOOK_STYLE)" not in text
    assert ".provenance()" not in text, "plotting.provenance says 'commit not recorded'"
    for phrase in ("these machines", "between\n# {glue:text}`min_class_count"):
        assert phrase not in text


def test_every_model_has_an_eight_by_eight_grid_at_twice_its_size():
    text = (ROOT / "notebooks" / "03_ddpm.py").read_text()
    assert re.search(r'grid_image\(\w+\.file\("samples\.png"\), scale=2\)', text)
    # the DDGAN chapter shows its grids side by side with DDPM's and real images, one scale
    text = (ROOT / "notebooks" / "04_ddgan.py").read_text()
    assert 'glue("fig_side_by_side", figure_png(fig)' in text
    assert text.count('.file("samples.png")') >= 2 and "to_grid(real, nrow=8)" in text


def test_interactive_figure_inlines_plotly():
    text = (ROOT / "notebooks" / "02_elbo.py").read_text()
    assert "include_plotlyjs=True" in text and 'include_plotlyjs="cdn"' not in text
    assert 'cfg["elbo_kernel_grid"]' in text, "the interactive grid is sized by a profile key"


def test_grid_image_is_sharp_and_twice_the_size():
    from PIL import Image

    images = torch.linspace(-1, 1, 64 * 28 * 28).reshape(64, 1, 28, 28)
    grid = plotting.to_grid(images, nrow=8)
    image = plotting.grid_image(grid, scale=2)
    assert image.width == grid.shape[1] * 2 == 484  # each 28-px image shown 56 px wide
    with Image.open(io.BytesIO(image.data)) as png:
        assert png.size == (grid.shape[1] * 2 * plotting.PNG_OVERSAMPLE,) * 2
        pixels = np.asarray(png)
    factor = 2 * plotting.PNG_OVERSAMPLE
    assert (pixels[::factor, ::factor].repeat(factor, 0).repeat(factor, 1) == pixels).all()


def test_commit_label_never_says_unknown():
    assert plotting.commit_label({"git_commit": "unknown"}) == "commit not recorded"
    assert plotting.commit_label({}) == "commit not recorded"
    assert plotting.commit_label({"git_commit": "15d1bc2a01b46ea7"}) == "commit 15d1bc2a01"
    assert plotting.device_label({"device": "cuda:NVIDIA H200"}) == "an NVIDIA H200 GPU"
    assert plotting.device_label({"device": "cpu:AMD EPYC", "threads": 1}) == (
        "an AMD EPYC CPU (1 thread)")
