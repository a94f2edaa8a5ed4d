"""Build the executable book: jupytext -> papermill (profile + overrides) -> Jupyter Book.

``python -m ddgan_core.book --profile cpu`` executes every chapter of ``_toc.yml`` in order, from
its jupytext source ``notebooks/<name>.py`` into ``book/executed/<name>.ipynb``, then runs a strict
``jupyter-book build . -W -n --keep-going``. A failing notebook stops the build and prints the
notebook, the cell and the error. The executed notebooks read the result cache, so with the
committed reference results rendering takes minutes.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .cache import ENV_VAR as CACHE_ENV_VAR
from .cache import repo_root
from .profiles import PROFILES, parse_assignments

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
    """Reject parameter names the notebook does not declare, listing the ones it does."""
    known = notebook_parameters(source)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(
            f"{source.name}: unknown parameter name(s) {unknown}; valid names: {sorted(known)}"
        )
    profile = parameters.get("profile", known.get("profile"))
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown; valid profiles: {sorted(PROFILES)}")


def execute_notebook(
    source: Path,
    output: Path,
    parameters: dict[str, Any],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """Execute one jupytext notebook with papermill; tag the injected cell for the book."""
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    check_parameters(source, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    notebook.metadata.setdefault(
        "kernelspec", {"name": KERNEL, "language": "python", "display_name": "Python 3"}
    )
    old_env = dict(os.environ)
    os.environ.update(env or {})
    try:
        papermill.execute_notebook(
            notebook,
            str(output),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(cwd or repo_root()),
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as err:
        raise NotebookFailed(
            f"notebook {source} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}):\n{err.source}\n{err.ename}: {err.evalue}\n"
            f"The partly executed notebook is {output}."
        ) from None
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    executed = nbformat.read(output, as_version=4)
    for cell in executed.cells:
        tags = cell.metadata.setdefault("tags", [])
        if ("injected-parameters" in tags or "parameters" in tags) and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(executed, output)
    return output


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
    """Run ``jupyter-book build`` (``-W -n --keep-going`` when strict); returns the HTML folder."""
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
    folder other than the repository receives a copy of the book's pages first.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown; valid profiles: {sorted(PROFILES)}")
    root = repo_root()
    book_dir = Path(book_dir) if book_dir is not None else root
    if book_dir.resolve() != root.resolve():
        copy_book_sources(book_dir, root)
    names = chapters(root)
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise ValueError(f"--only {missing}: not chapters of _toc.yml; chapters: {names}")
        names = [n for n in names if n in only]
    parameters = {"profile": profile, **(overrides or {})}
    sources = [notebook_source(name, root) for name in names]
    declared = [notebook_parameters(source) for source in sources]
    unknown = sorted(set(overrides or {}) - set().union(*declared))
    if unknown:  # checked before any long work starts
        valid = sorted(set().union(*declared) - {"profile"})
        raise ValueError(f"unknown parameter name(s) {unknown}; valid names: {valid}")
    env = {CACHE_ENV_VAR: str(cache_dir)} if cache_dir else {}
    for index, (name, source, accepted) in enumerate(zip(names, sources, declared), 1):
        start = time.perf_counter()
        print(f"[{index}/{len(names)}] {name} (profile {profile}) ...", flush=True)
        execute_notebook(
            source,
            book_dir / EXECUTED / f"{name}.ipynb",
            {k: v for k, v in parameters.items() if k in accepted},
            cwd=root,
            env=env,
        )
        print(f"[{index}/{len(names)}] {name} done in {time.perf_counter() - start:.1f} s",
              flush=True)
    if not build:
        return book_dir / "_build" / "html"
    return build_book(book_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddgan_core.book",
        description="Execute every chapter with papermill, then build the book strictly.",
    )
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="notebook parameter override (repeatable)")
    parser.add_argument("--only", action="append", metavar="CHAPTER",
                        help="execute only this chapter (repeatable)")
    parser.add_argument("--book-dir", type=Path, help="build elsewhere (a copy of the pages)")
    parser.add_argument("--cache-dir", type=Path, help="result cache (default: results/)")
    parser.add_argument("--no-build", action="store_true", help="execute notebooks only")
    args = parser.parse_args(argv)
    try:
        html = run(args.profile, parse_assignments(args.overrides), args.only, args.book_dir,
                   args.cache_dir, build=not args.no_build)
    except (NotebookFailed, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"book: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
