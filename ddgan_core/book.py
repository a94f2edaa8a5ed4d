"""Build the executable book: jupytext -> papermill (profile + overrides) -> Jupyter Book.

``python -m ddgan_core.book --profile cpu`` executes every chapter of ``_toc.yml`` in order, from
its jupytext source ``notebooks/<name>.py`` into ``book/executed/<name>.ipynb``, then runs a strict
``jupyter-book build . -W -n --keep-going``. The executed notebooks read the result cache, so with
the committed reference results rendering takes minutes.

Every parameter override is checked (its name, and its type against the notebook's default and
the profile) before the first chapter runs. A chapter executes into a hidden file beside its
output and is renamed into place only on success: a failing notebook stops the run before the
build, prints the notebook, the cell and the error, keeps the last good executed notebook and
leaves the partial one as ``book/executed/<name>.failed.ipynb`` (git-ignored, never rendered).
On a terminal papermill shows a progress bar of the cells; otherwise one line per chapter.

The module is also the book's Sphinx extension (:func:`setup`): it serves MathJax from the book
itself, so formulas render offline, and points the chapters' buttons at their sources.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .cache import ENV_VAR as CACHE_ENV_VAR
from .cache import atomic_write_bytes, repo_root
from .profiles import PROFILES, get_profile, keys

EXECUTED = Path("book") / "executed"
KERNEL = "python3"
BOOK_FILES = ("_config.yml", "_toc.yml", "book")


class NotebookFailed(RuntimeError):
    """A chapter raised while executing; the message names the notebook, the cell and the error."""


def chapters(root: Path | None = None) -> list[str]:
    """Chapter names (``01_forward_process``, ...) in table-of-contents order."""
    import yaml

    root = root or repo_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            file = node.get("file")
            if isinstance(file, str) and Path(file).parent == EXECUTED:
                names.append(Path(file).name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return names


def notebook_source(name: str, root: Path | None = None) -> Path:
    path = (root or repo_root()) / "notebooks" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"chapter {name!r}: jupytext source {path} not found")
    return path


def notebook_parameters(source: Path) -> dict[str, Any]:
    """Names and default values of the cell tagged ``parameters`` in a jupytext notebook."""
    import jupytext

    notebook = jupytext.read(source)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            values: dict[str, Any] = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    values[node.targets[0].id] = ast.literal_eval(node.value)
            return values
    raise ValueError(f"{source}: no code cell tagged 'parameters' (papermill needs one)")


def check_parameters(source: Path, parameters: dict[str, Any]) -> None:
    """Check a chapter's parameters before it runs (one ``ValueError`` line).

    One namespace: every parameter is a profile key (``python -m ddgan_core profiles`` lists
    them), checked by name, type and range with :func:`profiles.get_profile`; a chapter reads
    every profile key it is given (``overrides_from(globals())``), declared in its parameters
    cell or not. The only other names allowed are those its parameters cell declares.
    """
    known = notebook_parameters(source)
    profile = parameters.get("profile", known.get("profile"))
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown; valid profiles: {sorted(PROFILES)}")
    profile_keys = set(keys())
    unknown = sorted(k for k in parameters if k not in profile_keys and k not in known)
    if unknown:
        raise ValueError(
            f"{source.name}: unknown parameter name(s) {unknown}; valid names: the profile keys "
            "(python -m ddgan_core profiles)"
        )
    try:
        get_profile(profile, **{k: v for k, v in parameters.items() if k in profile_keys})
    except ValueError as err:
        raise ValueError(f"{source.name}: {err}") from None


def failed_path(output: Path) -> Path:
    """Where a failed run of ``output`` (``<name>.ipynb``) is left: ``<name>.failed.ipynb``."""
    return output.with_name(f"{output.stem}.failed.ipynb")


def _running_path(output: Path) -> Path:
    """The hidden file papermill writes while ``output`` executes."""
    return output.with_name(f".{output.stem}.running.ipynb")


def _git_ignored(path: Path) -> bool:
    """Whether git ignores ``path`` (``False`` outside a repository or without git)."""
    try:
        done = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=path.parent,
                              capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def execute_notebook(
    source: Path,
    output: Path,
    parameters: dict[str, Any],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Execute one jupytext notebook with papermill into ``output``; tag the injected cell for
    the book.

    papermill writes into a hidden ``.<name>.running.ipynb`` beside ``output``, which replaces
    ``output`` only when every cell succeeded (and a stale ``<name>.failed.ipynb`` is removed).
    When a cell fails, :class:`NotebookFailed` names the notebook, the cell and the error, the
    previous ``output`` (the last good one) is left as it was, and the partial notebook is kept
    as ``<name>.failed.ipynb``. ``progress`` shows papermill's cell progress bar; by default
    when stdout is a terminal.
    """
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    check_parameters(source, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    running, failed = _running_path(output), failed_path(output)
    notebook = jupytext.read(source)
    notebook.metadata.setdefault(
        "kernelspec", {"name": KERNEL, "language": "python", "display_name": "Python 3"}
    )
    old_env = dict(os.environ)
    os.environ.update(env or {})
    try:
        papermill.execute_notebook(
            notebook,
            str(running),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(cwd or repo_root()),
            progress_bar=sys.stdout.isatty() if progress is None else progress,
            log_output=False,
        )
    except BaseException as err:
        if running.exists():
            os.replace(running, failed)
        if isinstance(err, PapermillExecutionError):
            raise NotebookFailed(_failure_message(source, output, failed, err)) from None
        raise
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    executed = nbformat.read(running, as_version=4)
    for cell in executed.cells:
        tags = cell.metadata.setdefault("tags", [])
        if ("injected-parameters" in tags or "parameters" in tags) and "hide-input" not in tags:
            tags.append("hide-input")
    text = nbformat.writes(executed)
    atomic_write_bytes(output, (text if text.endswith("\n") else text + "\n").encode())
    running.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    return output


def _failure_message(source: Path, output: Path, failed: Path, err: Any) -> str:
    """What failed where, and which notebooks are left (the partial one, the last good one)."""
    ignored = " (git-ignored, never rendered)" if _git_ignored(failed) else ""
    kept = (f"the last good {output.name} is kept unchanged" if output.exists()
            else f"{output.name} has no good version yet")
    return (
        f"notebook {source} failed in cell {err.cell_index} "
        f"(execution count {err.exec_count}):\n{err.source}\n{err.ename}: {err.evalue}\n"
        f"The partly executed notebook is {failed}{ignored}; {kept}."
    )


def copy_book_sources(destination: Path, root: Path | None = None) -> Path:
    """Copy the book's own pages and configuration (not executed chapters) to ``destination``."""
    root = root or repo_root()
    destination.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        source = root / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("executed", "__pycache__"),
            )
        else:
            shutil.copy2(source, destination / name)
    return destination


def build_book(book_dir: Path, strict: bool = True) -> Path:
    """Run ``jupyter-book build`` (``-W -n --keep-going`` when strict); returns the HTML folder.

    The book serves MathJax itself (see :func:`setup`), so the local MathJax package must be
    there; without it this fails at once, before Sphinx starts."""
    mathjax_package()
    executable = Path(sys.executable).with_name("jupyter-book")
    command = [str(executable) if executable.exists() else "jupyter-book", "build", str(book_dir)]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    print("$", " ".join(command), flush=True)
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed with exit code {completed.returncode}")
    return book_dir / "_build" / "html"


def run(
    profile: str = "cpu",
    overrides: dict[str, Any] | None = None,
    only: list[str] | None = None,
    book_dir: Path | None = None,
    cache_dir: Path | None = None,
    build: bool = True,
) -> Path:
    """Execute the chapters with ``profile`` and build the book; returns the HTML folder.

    ``book_dir`` (default: the repository) is where the executed chapters and ``_build`` go; a
    folder other than the repository receives a copy of the book's pages first. One namespace:
    ``overrides`` are profile keys and every chapter gets all of them (a chapter ignores keys it
    does not use), so ``--set ddpm_train_steps=500`` changes the DDPM of every chapter that uses
    one. They are checked (name, type, range) before the first chapter runs; the first failing
    chapter stops the run before the build (see :func:`execute_notebook`).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown; valid profiles: {sorted(PROFILES)}")
    root = repo_root()
    names = chapters(root)
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise ValueError(f"--only {missing}: not chapters of _toc.yml; chapters: {names}")
        names = [n for n in names if n in only]
    overrides = dict(overrides or {})
    sources = [notebook_source(name, root) for name in names]
    declared = [set(notebook_parameters(source)) for source in sources]
    profile_keys = set(keys())
    unknown = sorted(set(overrides) - profile_keys - set().union(*declared))
    if unknown:  # checked before any long work starts
        raise ValueError(f"unknown parameter name(s) {unknown}; valid names: the profile keys "
                         "(python -m ddgan_core profiles)")
    # profile keys go to every chapter; a name that is no profile key only where it is declared
    chapter_parameters = [
        {"profile": profile, **{k: v for k, v in overrides.items()
                                if k in profile_keys or k in accepted}}
        for accepted in declared
    ]
    for source, values in zip(sources, chapter_parameters):  # every value, before any chapter
        check_parameters(source, values)
    book_dir = Path(book_dir) if book_dir is not None else root
    if book_dir.resolve() != root.resolve():
        copy_book_sources(book_dir, root)
    env = {CACHE_ENV_VAR: str(cache_dir)} if cache_dir else {}
    for index, (name, source, values) in enumerate(zip(names, sources, chapter_parameters), 1):
        start = time.perf_counter()
        print(f"[{index}/{len(names)}] {name} (profile {profile}) ...", flush=True)
        execute_notebook(source, book_dir / EXECUTED / f"{name}.ipynb", values, cwd=root,
                         env=env)
        print(f"[{index}/{len(names)}] {name} done in {time.perf_counter() - start:.1f} s",
              flush=True)
    if not build:
        return book_dir / "_build" / "html"
    return build_book(book_dir)


# --- The Sphinx extension of the book (``sphinx: extra_extensions`` in _config.yml) ----------
#
# 1. MathJax offline: ``mathjax_path`` in _config.yml is relative (``mathjax/tex-mml-chtml.js``,
#    relative to ``_static``), and the parts of the ``mathjax`` npm package that the page needs
#    (the combined component, the TeX extensions it may autoload, the CHTML fonts, the menu and
#    accessibility parts) are copied into ``_build/html/_static/mathjax/``, so the built pages
#    typeset their formulas from ``file://`` with no network.
# 2. Chapters: the executed notebook (``book/executed/<name>.ipynb``) is not in the repository;
#    its source is ``notebooks/<name>.py`` (jupytext) paired with ``notebooks/<name>.ipynb``. The
#    edit button points at the jupytext source, Binder and Colab open the paired notebook, and the
#    download menu offers the jupytext source beside the executed notebook.

MATHJAX_VERSION = "3.2.2"
MATHJAX_INSTALL = f"npm install --prefix .cache/mathjax mathjax@{MATHJAX_VERSION}"
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output/chtml", "ui", "a11y", "sre")


def mathjax_package(root: Path | None = None) -> Path:
    """The ``mathjax`` npm package to serve: ``$MATHJAX_DIR`` or ``.cache/mathjax``'s copy."""
    root = root or repo_root()
    candidates = [os.environ.get("MATHJAX_DIR"),
                  root / ".cache" / "mathjax" / "node_modules" / "mathjax"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "es5" / "tex-mml-chtml.js").is_file():
            return Path(candidate)
    raise FileNotFoundError(
        f"MathJax {MATHJAX_VERSION} not found (the book serves it to read offline): run "
        f"`{MATHJAX_INSTALL}` (make book does), or set MATHJAX_DIR to a mathjax package folder")


def copy_mathjax(destination: Path, package: Path | None = None) -> Path:
    """Copy what the book's pages need of the MathJax package into ``destination``."""
    package = package or mathjax_package()
    for part in MATHJAX_PARTS:
        source = package / "es5" / part
        target = destination / part
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    if (package / "LICENSE").is_file():
        shutil.copy2(package / "LICENSE", destination / "LICENSE")
    return destination


def _install_mathjax(app: Any) -> None:
    """``builder-inited``: serve MathJax from ``_static`` when ``mathjax_path`` is relative."""
    from sphinx.errors import ExtensionError

    path = str(getattr(app.config, "mathjax_path", "") or "")
    if app.builder.format != "html" or not path or "://" in path or path.startswith("/"):
        return
    try:
        package = mathjax_package()
    except FileNotFoundError as err:
        raise ExtensionError(str(err)) from None
    copy_mathjax(Path(app.outdir) / "_static" / Path(path).parent, package)


def _walk_buttons(buttons: list[dict], group: str = "") -> Any:
    for button in buttons:
        yield group, button
        if button.get("type") == "group":
            yield from _walk_buttons(button.get("buttons", []), button.get("label", ""))


def _chapter_buttons(app: Any, pagename: str, templatename: str, context: dict,
                     doctree: Any) -> None:
    """``html-page-context`` (after sphinx-book-theme): chapter buttons point at the sources."""
    if Path(pagename).parent != EXECUTED:
        return
    name = Path(pagename).name
    jupytext_source = repo_root() / "notebooks" / f"{name}.py"
    executed, source, paired = (f"{pagename}.ipynb", f"notebooks/{name}.py",
                                f"notebooks/{name}.ipynb")
    buttons = context.get("header_buttons") or []
    for group, button in _walk_buttons(buttons):
        url = button.get("url")
        if not isinstance(url, str) or executed not in url or group == "download-buttons":
            continue
        # Binder and Colab open the paired notebook; edit and view the jupytext source
        button["url"] = url.replace(executed, paired if group == "launch-buttons" else source)
    edit = context.get("get_edit_provider_and_url")
    if callable(edit):
        def edit_source() -> tuple[str, str]:
            provider, url = edit()
            return provider, url.replace(executed, source)

        context["get_edit_provider_and_url"] = edit_source
    if not jupytext_source.is_file():
        return
    target = Path(app.outdir) / "_sources" / source
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(jupytext_source, target)
    for button in buttons:
        if button.get("label") == "download-buttons":
            for item in button["buttons"]:
                if str(item.get("url", "")).endswith(executed):
                    item["tooltip"] = "Download the executed notebook (with its outputs)"
            button["buttons"].insert(1, {
                "type": "link",
                "url": f"{context['pathto']('_sources', 1)}/{source}",
                "text": ".py",
                "tooltip": "Download the notebook's source (jupytext percent format)",
                "icon": "fas fa-file-code",
                "label": "download-jupytext-button",
            })


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: MathJax served by the book, chapter buttons on the sources."""
    app.connect("builder-inited", _install_mathjax)
    app.connect("html-page-context", _chapter_buttons, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    """``python -m ddgan_core.book [options]``: the command line's ``book`` command
    (:mod:`ddgan_core.cli` defines its options once); exit 1 when a chapter or the build fails,
    2 on a malformed command line."""
    from .cli import main as cli_main

    return cli_main(["book", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
