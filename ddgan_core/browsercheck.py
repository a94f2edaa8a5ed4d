"""Open the built book in headless Chromium and fail on what a reader would see as broken.

``python -m ddgan_core.browsercheck _build/html [--mathjax DIR] [--screenshot PAGE=OUT.png]``

For every page of the book it lets Chromium load the page (running MathJax), dumps the DOM and
checks that

- every image loads: its file exists and decodes (data URIs too);
- every math element was typeset by MathJax, without a MathJax error;
- no MyST role or directive was left unrendered (``{glue:text}``, ``{cite:p}``, ``{math}``...);
- no Python traceback or error output appears in the page.

The machines that build the book have no internet, so MathJax is served from a local copy of
the ``mathjax@3`` npm package (``--mathjax`` or ``$MATHJAX_DIR``); the pages are checked in a
temporary copy whose MathJax script points there.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-file-access-from-files", "--hide-scrollbars",
]
MATHJAX_CDN = re.compile(r'src="https://cdn\.jsdelivr\.net/npm/mathjax@3/es5/([\w.-]+\.js)"')
UNRENDERED = re.compile(r"\{(glue:text|glue:figure|glue|cite:p|cite:t|math|eq|numref|ref)\}`")
SKIP_PAGES = {"search.html", "genindex.html", "index.html"}


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(
        "headless Chromium not found: install it with `apt-get install chromium` (bash .ci/run "
        "does this)"
    )


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.math: list[dict] = []
        self._stack: list[tuple[str, bool]] = []
        self.errors_in_output: list[str] = []
        self._in_error_output = 0
        self._text: list[str] = []
        self._skip_text = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "img" and attributes.get("src"):
            self.images.append(attributes["src"])
        if tag in {"script", "style"}:
            self._skip_text += 1
        is_math = "math" in classes and tag in {"div", "span"}
        if is_math:
            self.math.append({"typeset": False, "error": False, "text": ""})
        if tag.startswith("mjx-") and self.math and self._inside_math():
            self.math[-1]["typeset"] = True
            if tag == "mjx-merror":
                self.math[-1]["error"] = True
        is_error = "traceback" in classes or ("stderr" in classes and "output" in classes)
        self._stack.append((tag, is_math, is_error))
        if is_error:
            self._in_error_output += 1

    def _inside_math(self) -> bool:
        return any(is_math for _, is_math, _ in self._stack)

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, _, is_error = self._stack.pop()
            if is_error:
                self._in_error_output -= 1
            if open_tag == tag:
                break
        if tag in {"script", "style"} and self._skip_text:
            self._skip_text -= 1

    def handle_data(self, data: str) -> None:
        if self._skip_text:
            return
        self._text.append(data)
        if self._in_error_output and data.strip():
            self.errors_in_output.append(data.strip()[:200])

    @property
    def text(self) -> str:
        return "".join(self._text)


def _check_image(page: Path, src: str) -> str | None:
    from PIL import Image

    try:
        if src.startswith("data:"):
            payload = base64.b64decode(src.split(",", 1)[1])
        else:
            parsed = urlparse(src)
            if parsed.scheme in {"http", "https"}:
                return f"remote image {src} (the book must not depend on the network)"
            path = (page.parent / unquote(parsed.path)).resolve()
            if not path.is_file():
                return f"missing image {src}"
            if path.suffix == ".svg":
                return None if path.stat().st_size > 0 else f"empty image {src}"
            payload = path.read_bytes()
        with Image.open(io.BytesIO(payload)) as image:
            image.verify()
    except Exception as err:  # noqa: BLE001 - any decoding failure is a broken image
        return f"broken image {src[:80]} ({err})"
    return None


def check_page(chromium: str, page: Path, screenshot: Path | None = None) -> list[str]:
    """Problems found on one page (empty when it renders correctly)."""
    url = page.resolve().as_uri()
    command = [chromium, *CHROMIUM_FLAGS, "--virtual-time-budget=15000"]
    with tempfile.TemporaryDirectory() as profile:
        command.append(f"--user-data-dir={profile}")
        dom = subprocess.run(command + ["--dump-dom", url], capture_output=True, text=True,
                             timeout=120).stdout
        if screenshot is not None:
            subprocess.run(command + ["--window-size=1280,2000", f"--screenshot={screenshot}",
                                      url], capture_output=True, timeout=120)
    if "<body" not in dom:
        return [f"{page.name}: Chromium returned no page"]
    parser = _PageParser()
    parser.feed(dom)
    problems = []
    for src in parser.images:
        problem = _check_image(page, src)
        if problem:
            problems.append(problem)
    for index, math in enumerate(parser.math):
        if not math["typeset"]:
            problems.append(f"math element {index} was not typeset by MathJax")
        elif math["error"]:
            problems.append(f"math element {index} has a MathJax error")
    leftovers = sorted(set(m.group(0) for m in UNRENDERED.finditer(parser.text)))
    if leftovers:
        problems.append(f"unrendered MyST roles: {leftovers}")
    if re.search(r"\|\s*(?:-{3,}|[\u2013\u2014]-*):?\s*\|", parser.text):  # smartquotes: ---
        problems.append("a Markdown table was rendered as text")
    if re.search(r"<Figure size \d+x\d+", parser.text):
        problems.append("a figure was rendered as text (<Figure size ...>), not as an image")
    if "Traceback (most recent call last)" in parser.text:
        problems.append("a Python traceback is shown in the page")
    problems += [f"error output: {text}" for text in parser.errors_in_output[:3]]
    return [f"{page.name}: {p}" for p in problems]


def prepare_copy(html_dir: Path, mathjax_dir: Path, destination: Path) -> Path:
    """Copy the built HTML and point its MathJax script at a local copy."""
    shutil.copytree(html_dir, destination)
    shutil.copytree(mathjax_dir, destination / "_static" / "mathjax-local")
    for page in destination.rglob("*.html"):
        text = page.read_text()
        depth = len(page.relative_to(destination).parts) - 1
        prefix = "../" * depth + "_static/mathjax-local/es5/"
        page.write_text(MATHJAX_CDN.sub(rf'src="{prefix}\1"', text))
    return destination


def default_mathjax_dir() -> Path | None:
    candidates = [os.environ.get("MATHJAX_DIR")]
    here = Path(__file__).resolve().parent.parent
    candidates += [here / ".cache" / "mathjax" / "node_modules" / "mathjax"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "es5" / "tex-mml-chtml.js").is_file():
            return Path(candidate)
    return None


def check_book(
    html_dir: Path, mathjax_dir: Path | None = None, screenshots: dict[str, Path] | None = None
) -> tuple[list[str], list[str]]:
    """Check every page of a built book; returns (pages checked, problems)."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise FileNotFoundError(f"{html_dir}: no index.html; build the book first (make book)")
    mathjax_dir = mathjax_dir or default_mathjax_dir()
    if mathjax_dir is None:
        raise FileNotFoundError(
            "no local MathJax 3: run `npm install --prefix .cache/mathjax mathjax@3` or set "
            "MATHJAX_DIR to a folder holding es5/tex-mml-chtml.js"
        )
    chromium = find_chromium()
    checked, problems = [], []
    with tempfile.TemporaryDirectory() as tmp:
        copy = prepare_copy(html_dir, mathjax_dir, Path(tmp) / "html")
        # the book's pages all live under book/ (see _toc.yml); stale pages elsewhere are skipped
        pages = sorted(p for p in (copy / "book").rglob("*.html") if p.name not in SKIP_PAGES)
        for page in pages:
            relative = str(page.relative_to(copy))
            shot = (screenshots or {}).get(page.stem)
            checked.append(relative)
            problems += [f"{relative}: {p.split(': ', 1)[1]}"
                         for p in check_page(chromium, page, shot)]
    return checked, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddgan_core.browsercheck")
    parser.add_argument("html_dir", type=Path, nargs="?", default=Path("_build/html"))
    parser.add_argument("--mathjax", type=Path)
    parser.add_argument("--screenshot", action="append", default=[], metavar="PAGE=OUT.png")
    args = parser.parse_args(argv)
    shots = dict(item.split("=", 1) for item in args.screenshot)
    checked, problems = check_book(args.html_dir, args.mathjax,
                                   {k: Path(v).resolve() for k, v in shots.items()})
    for page in checked:
        print(f"checked {page}")
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{len(checked)} pages, {len(problems)} problems")
    return 1 if problems or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
