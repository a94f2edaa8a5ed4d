"""Print the built book to one PDF, offline: ``make pdf`` (after ``make book``).

    python tools/print_pdf.py [_build/html] [-o _build/book.pdf] [--toc _toc.yml]
    python tools/print_pdf.py --pages a.html b.html -o out.pdf

Headless Chromium (the network switched off, as in the browser check) opens every page of the
book in the order of ``_toc.yml`` (the root page, then each chapter and appendix), waits for
MathJax to typeset it, prints it with the theme's print style sheet (the DevTools protocol's
``Page.printToPDF``, the same printing as ``chromium --print-to-pdf``, but only once MathJax has
finished), and pypdf joins the pages into one file with a bookmark per page.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddgan_core.browsercheck import Browser, find_chromium  # noqa: E402


def toc_files(toc: Path) -> list[str]:
    """The documents of a Jupyter Book ``_toc.yml`` in reading order (root first)."""
    import yaml

    data = yaml.safe_load(toc.read_text())
    files = [data["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                files.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return files


def book_pages(html_dir: Path, toc: Path) -> list[Path]:
    pages = []
    for name in toc_files(toc):
        page = html_dir / f"{Path(name).with_suffix('')}.html"
        if not page.is_file():
            raise FileNotFoundError(f"{page}: not built (run `make book` first)")
        pages.append(page)
    return pages


def print_pages(pages: list[Path], output: Path) -> int:
    """Print ``pages`` in order into one PDF at ``output``; returns its page count."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    with Browser(find_chromium()) as browser:
        for page in pages:
            session = browser.open(page.resolve().as_uri())
            try:
                state = browser.wait_for_mathjax(session)
                if state not in {"typeset", "absent"}:
                    raise RuntimeError(f"{page}: MathJax did not typeset the page ({state})")
                title = browser.evaluate(session, "document.title") or page.stem
                pdf = browser.print_pdf(session)
            finally:
                browser.close_page(session)
            first = len(writer.pages)
            writer.append(PdfReader(io.BytesIO(pdf)))
            writer.add_outline_item(title=title.split(" — ")[0].strip() or page.stem,
                                    page_number=first)
            print(f"{page}: {len(writer.pages) - first} page(s)", flush=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".tmp")
    with open(partial, "wb") as handle:
        writer.write(handle)
    partial.replace(output)
    return len(writer.pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/print_pdf.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html_dir", type=Path, nargs="?", default=ROOT / "_build" / "html")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "_build" / "book.pdf")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    parser.add_argument("--pages", type=Path, nargs="+", help="print these pages instead")
    args = parser.parse_args(argv)
    try:
        pages = args.pages or book_pages(args.html_dir, args.toc)
        missing = [str(p) for p in pages if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"no such page(s): {missing}")
        count = print_pages(pages, args.output)
    except (FileNotFoundError, RuntimeError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.output}: {count} pages from {len(pages)} HTML pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
