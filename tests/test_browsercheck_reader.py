"""The browser check sees what a reader sees: small synthetic pages in headless Chromium.

Each page is built like the book's (the theme's ``div.math``, figures, tables, code-cell toggles)
and served with the book's own MathJax copy, offline. A clean page passes; a clipped wide
equation, untypeset math, a narrow figure, a table too wide at 800 px and an unresolved
reference each fail with a message that names them.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from ddgan_core import book, browsercheck

HEAD = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>
<style>
  body {{ margin: 0; font-family: sans-serif; }}
  main {{ display: flex; }} nav {{ width: 250px; flex: none; }}
  article.bd-article {{ width: 700px; min-width: 0; padding: 0 1rem; }}
  div.math, span.math {{ display: flex; max-width: 100%; overflow: hidden; }}
  div.math mjx-container {{ flex-grow: 1; overflow: auto; }}
  .pst-scrollable-table-container {{ overflow-x: auto; }}
  figure img {{ max-width: 100%; }}
</style>
<script>window.MathJax = {{options: {{processHtmlClass: "math", ignoreHtmlClass: "document"}}}};
</script>
<script defer src="{mathjax}"></script></head>
<body class="document"><main><nav>navigation</nav><article class="bd-article">
<h1 id="top">{title}</h1>
"""
TAIL = "</article></main></body></html>\n"
LOCAL_MATHJAX = "../_static/mathjax/tex-mml-chtml.js"


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(width: int) -> str:
    return f'<figure><img src="{_png(width, 100)}" alt="samples"></figure>\n'


CELL_WITH_TOGGLE = (
    '<div class="cell tag_hide-input"><details class="hide above-input"><summary>'
    '<span class="collapsed">Show code cell source</span></summary>'
    # source code that holds a Markdown table is code, not a table rendered as text
    '<div class="cell_input"><div class="highlight-ipython3"><pre>'
    'lines = ["| a | b |", "|---|---:|"]</pre></div></div></details>'
    '<div class="cell_output">1</div></div>\n')

PAGES = {
    "clean": (
        '<p>The forward process adds noise: <span class="math notranslate nohighlight">'
        r"\(q(x_t \mid x_{t-1})\)</span>, see <a class='reference internal' href='#top'>"
        "the top</a> and <a class='reference internal' href='figure.html#top'>the figure "
        "page</a>.</p>\n"
        r'<div class="math notranslate nohighlight">\[ \bar\alpha_t = \prod_{s=1}^t '
        r"(1 - \beta_s) \]</div>" + "\n"
        + _figure(600)
        + '<div class="pst-scrollable-table-container"><table><tr><th>steps</th><th>FID</th>'
        "</tr><tr><td>4</td><td>12.3</td></tr></table></div>\n"
        + CELL_WITH_TOGGLE
    ),
    "clipped": (
        # a wide inline formula: the theme's span.math clips it and does not scroll
        '<p>The sum <span class="math notranslate nohighlight">'
        + r"\(" + " + ".join(f"a_{{{i}}}" for i in range(60)) + r"\)"
        + "</span> is long.</p>\n"
    ),
    "untypeset": r'<p>Raw math: <span class="math notranslate nohighlight">\(x\)</span></p>',
    "figure": _figure(200),
    "narrow": (
        # fits the 700 px column at 1280 px, sticks out of the viewport at 800 px
        '<table style="width: 640px"><tr><td>wide table</td></tr></table>\n'
    ),
    "xref": (
        '<p>As shown in <span class="xref std std-ref">fig-missing</span> and '
        '<a class="reference internal" href="#nowhere">there</a>, see ??.</p>\n'
        '<div class="cell"><div class="cell_output">output only</div></div>\n'
    ),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    html = tmp_path_factory.mktemp("html")
    (html / "index.html").write_text("<html><body>index</body></html>")
    (html / "book").mkdir()
    book.copy_mathjax(html / "_static" / "mathjax")
    for name, body in PAGES.items():
        mathjax = ("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
                   if name == "untypeset" else LOCAL_MATHJAX)
        page = HEAD.format(title=name, mathjax=mathjax) + body + TAIL
        (html / "book" / f"{name}.html").write_text(page)
    details: dict = {}
    pages, problems = browsercheck.check_book(html, details=details)
    found = {name: [p for p in problems if p.startswith(f"book/{name}.html: ")]
             for name in PAGES}
    return pages, found, details


def test_every_page_is_checked(checked):
    pages, _, details = checked
    assert sorted(pages) == sorted(f"book/{name}.html" for name in PAGES)
    assert details["book/clean.html"]["mathjax"] == "typeset"
    assert details["book/clean.html"]["figures"] == [600]
    assert details["book/clean.html"]["toggles"] == 1


def test_clean_page_passes(checked):
    _, found, _ = checked
    assert found["clean"] == []


def test_clipped_wide_equation_fails(checked):
    _, found, _ = checked
    text = "\n".join(found["clipped"])
    assert "at 1280 px: equation" in text and "at 800 px: equation" in text
    assert "a_{0} + a_{1}" in text  # the equation is named by its TeX source


def test_untypeset_math_fails(checked):
    _, found, _ = checked
    text = "\n".join(found["untypeset"])
    assert "1 of 1 math elements were not typeset by MathJax" in text
    assert r"\(x\)" in text
    assert "MathJax is loaded from https://cdn.jsdelivr.net" in text
    assert "(offline: the book must not need the network)" in text  # no network in the check


def test_narrow_figure_fails(checked):
    _, found, _ = checked
    assert any("rendered 200 px wide at 1280 px (at least 400" in p for p in found["figure"])


def test_table_too_wide_at_800_px_fails_only_there(checked):
    _, found, _ = checked
    assert found["narrow"], "the table sticks out of an 800 px viewport"
    assert all("at 800 px: table" in p for p in found["narrow"])


def test_unresolved_references_and_missing_toggle_fail(checked):
    _, found, _ = checked
    text = "\n".join(found["xref"])
    assert 'unresolved reference "fig-missing"' in text
    assert "link to a missing anchor #nowhere" in text
    assert '"??" in the text' in text
    assert "no 'Show code cell source' toggle" in text


def test_main_reports_problems_and_exit_status(tmp_path, capsys):
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    (html / "index.html").write_text("<html><body>index</body></html>")
    book.copy_mathjax(html / "_static" / "mathjax")
    (html / "book" / "fig.html").write_text(
        HEAD.format(title="fig", mathjax=LOCAL_MATHJAX) + _figure(150) + TAIL)
    assert browsercheck.main([str(html)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM book/fig.html: figure" in out and "1 pages, 1 problems" in out


def test_the_book_serves_mathjax_itself():
    """_config.yml points Sphinx at the copy of MathJax that the build puts into _static."""
    import yaml

    root = Path(book.__file__).resolve().parent.parent
    config = yaml.safe_load((root / "_config.yml").read_text())
    path = config["sphinx"]["config"]["mathjax_path"]
    assert "://" not in path and not path.startswith("/")
    assert "ddgan_core.book" in config["sphinx"]["extra_extensions"]
    package = book.mathjax_package()
    assert (package / "es5" / Path(path).name).is_file()
