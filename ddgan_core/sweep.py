"""Parameter sweeps over a chapter: papermill per grid point, every glued number into one CSV.

``python -m ddgan_core sweep notebooks/01_forward_process -p forward_timesteps 100 1000 --profile
cpu`` executes the notebook once per value (several ``-p`` make a grid; names are profile keys),
reads every value the notebook glued (``myst_nb.glue``: raw numbers, formatted in the prose), and
writes ``results.csv``, ``plot.png`` and ``sweep.json`` (notebook, profile, grid, commit, and per
point the cache entries it computed or loaded) into the output folder.

A cached experiment can be swept the same way, without a notebook: ``python -m ddgan_core sweep
ddgan_sweep_point -p ddgan_nz 0 4 16 64 --profile cpu`` computes (or loads) one
:func:`~ddgan_core.experiments.ddgan_sweep_point` entry per point and writes its summary row
(every metric with its bootstrap interval) to the same three files. The hyper-parameter chapter
reads the same entries (:func:`experiment_rows`), so a point a reader adds from the command line
is one the chapter finds in the cache.

Every value of the grid is checked against the notebook's parameters (name, and type against
the notebook's default and the profile) before the first point runs, so a typo fails at once
in one line. Every file is written aside and renamed into place: the executed notebooks (see
:func:`book.execute_notebook`; a failed point is left as ``point_NNN.failed.ipynb``), the CSV and
the plot.
"""

from __future__ import annotations

import ast
import csv
import datetime as _dt
import io
import itertools
import json
from pathlib import Path
from typing import Any

from .book import check_parameters, execute_notebook
from .cache import LOG_ENV_VAR, atomic_write_bytes, git_commit, repo_root, write_json_atomic


def glued_values(notebook_path: Path) -> dict[str, Any]:
    """Every value glued in an executed notebook, numbers as floats where they parse."""
    notebook = json.loads(Path(notebook_path).read_text())
    values: dict[str, Any] = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if not name:
                continue
            # hidden glue prefixes the MIME types ("application/papermill.record/text/plain")
            data = {key.rsplit("/", 2)[-2] + "/" + key.rsplit("/", 1)[-1]: value
                    for key, value in output.get("data", {}).items()}
            text = data.get("text/plain")
            figure = any(k.startswith("image/") or k == "text/html" for k in data)
            if figure or text is None:
                values[name] = "<figure>" if figure else None
                continue
            text = "".join(text) if isinstance(text, list) else text
            values[name] = _parse_number(text)
    return values


def _parse_number(text: str) -> Any:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(value, str):
        try:
            return float(value.replace(",", ""))
        except ValueError:
            return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value  # a count stays an integer
    if isinstance(value, float):
        return value
    return value


def resolve_notebook(path: str | Path) -> Path:
    """The jupytext source ``.py`` of ``path`` (with or without suffix, from the working
    directory or the repository); else one ``FileNotFoundError`` line listing the chapters."""
    path = Path(path)
    root = repo_root()
    candidates = [path, path.with_suffix(".py"), root / path, (root / path).with_suffix(".py")]
    for candidate in candidates:
        if candidate.suffix == ".py" and candidate.is_file():
            return candidate
    tried = ", ".join(dict.fromkeys(str(c) for c in candidates if c.suffix == ".py"))
    available = ", ".join(f"notebooks/{p.stem}" for p in sorted(root.glob("notebooks/*.py")))
    raise FileNotFoundError(
        f"notebook {path}: no jupytext source found (tried {tried}); available: "
        f"{available or 'none'}"
    )


def sweep_experiments() -> dict[str, tuple[Any, Any]]:
    """The experiments ``sweep`` runs without a notebook: name -> (experiment, row of a result)."""
    from . import experiments

    return {"ddgan_sweep_point": (experiments.ddgan_sweep_point,
                                  experiments.sweep_point_summary),
            "image_kernel_point": (experiments.image_kernel_point,
                                   experiments.sweep_point_summary)}


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every point of ``grid`` (the product of its value lists), in order."""
    if not grid:
        raise ValueError("a sweep needs at least one -p NAME VALUE [VALUE ...]")
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def experiment_rows(name: str, profile: dict[str, Any], grid: dict[str, list[Any]],
                    cache=None, verbose: bool = True,
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of experiment ``name`` (see :func:`sweep_experiments`) at every point of
    ``grid`` around the resolved ``profile``, computing missing entries; returns (rows, records
    of the cache entry each point used). Every point is checked before the first one runs; each
    is announced on one line unless ``verbose`` is false."""
    from .cache import ResultCache
    from .profiles import apply_overrides

    experiments = sweep_experiments()
    if name not in experiments:
        raise ValueError(f"{name!r} is no sweepable experiment; valid: {sorted(experiments)}")
    run, summary = experiments[name]
    points = grid_points(grid)
    resolved = [apply_overrides(dict(profile), point) for point in points]
    cache = cache or ResultCache()
    rows, records = [], []
    for index, (point, config) in enumerate(zip(points, resolved)):
        if verbose:
            label = ", ".join(f"{k}={v}" for k, v in point.items())
            print(f"[{index + 1}/{len(points)}] {name}: {label}", flush=True)
        result = run(config, cache)
        rows.append({"profile": profile["profile"], **point, **summary(result)})
        records.append({"parameters": point, "cache_entries": [
            {"name": name, "key": result.key, "computed": result.computed}]})
    return rows, records


def run_sweep(
    notebook: str | Path,
    grid: dict[str, list[Any]],
    profile: str = "smoke",
    out_dir: Path | None = None,
) -> tuple[Path, Path]:
    """Execute ``notebook`` at every point of ``grid``; returns (CSV path, plot path).

    Every point's names and values are checked (:func:`book.check_parameters`) before the first
    one runs; the first failing point stops the sweep. ``notebook`` may instead name an
    experiment of :func:`sweep_experiments` (see the module docstring).
    """
    if str(notebook) in sweep_experiments():
        return run_experiment_sweep(str(notebook), grid, profile, out_dir)
    source = resolve_notebook(notebook)
    points = grid_points(grid)
    for point in points:  # every name and the profile checked before any notebook runs
        check_parameters(source, {"profile": profile, **point})
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out_dir or repo_root() / "sweeps" / source.stem / stamp)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    for index, point in enumerate(points):
        label = ", ".join(f"{k}={v}" for k, v in point.items())
        print(f"[{index + 1}/{len(points)}] {source.stem}: {label}", flush=True)
        log = out_dir / f"point_{index:03d}.cache.jsonl"
        log.unlink(missing_ok=True)
        executed = execute_notebook(
            source, out_dir / f"point_{index:03d}.ipynb", {"profile": profile, **point},
            env={LOG_ENV_VAR: str(log)},
        )
        rows.append({"profile": profile, **point, **glued_values(executed)})
        records.append({"parameters": point, "notebook": executed.name,
                        "cache_entries": _read_log(log)})
        log.unlink(missing_ok=True)
    notebook = str(source.relative_to(repo_root()) if source.is_relative_to(repo_root())
                   else source)
    return write_outputs(out_dir, rows, grid, {"notebook": notebook, "profile": profile},
                         records)


def run_experiment_sweep(name: str, grid: dict[str, list[Any]], profile: str = "smoke",
                         out_dir: Path | None = None, cache=None) -> tuple[Path, Path]:
    """:func:`experiment_rows` of the named profile into ``results.csv``, ``plot.png`` and
    ``sweep.json`` (default folder ``sweeps/<name>/<date-time>``)."""
    from .profiles import get_profile

    rows, records = experiment_rows(name, get_profile(profile), grid, cache)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(out_dir or repo_root() / "sweeps" / name / stamp)
    return write_outputs(out_dir, rows, grid, {"experiment": name, "profile": profile},
                         records)


def write_outputs(out_dir: Path, rows: list[dict[str, Any]], grid: dict[str, list[Any]],
                  what: dict[str, Any], records: list[dict[str, Any]]) -> tuple[Path, Path]:
    """A sweep's three files in ``out_dir``: ``results.csv`` (the rows), ``plot.png``
    (:func:`plot_sweep`) and ``sweep.json`` (``what`` was swept, the grid, commit, date and
    each point's cache entries); prints their paths and returns (CSV path, plot path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, out_dir / "results.csv")
    plot_path = plot_sweep(rows, list(grid), out_dir / "plot.png")
    write_json_atomic(out_dir / "sweep.json", {
        **what, "grid": grid, "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "points": records,
    })
    print(f"sweep: {csv_path}\nsweep: {plot_path}\nsweep: {out_dir / 'sweep.json'}")
    return csv_path, plot_path


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The cache entries a point used (name, key, computed or loaded), in order, once each."""
    if not path.exists():
        return []
    seen, entries = set(), []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if (record["name"], record["key"]) not in seen:
            seen.add((record["name"], record["key"]))
            entries.append({k: record[k] for k in ("name", "key", "computed")})
    return entries


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """``rows`` as CSV (columns in order of first appearance), written atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def plot_sweep(rows: list[dict[str, Any]], swept: list[str], path: Path) -> Path:
    """One small panel per glued number against the first swept parameter (written atomically
    as PNG); a value with ``<name>_lo``/``<name>_hi`` columns gets its interval as error bars,
    and a parameter whose values are not all numbers (a list of channels) is plotted by label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_name = swept[0]
    metrics = [
        key for key in rows[0]
        if key not in swept and key != "profile" and not key.endswith(("_lo", "_hi"))
        and all(isinstance(r.get(key), float) for r in rows)
    ]
    numeric = all(isinstance(r[x_name], (int, float)) and not isinstance(r[x_name], bool)
                  for r in rows)
    labels = list(dict.fromkeys(str(r[x_name]) for r in rows))
    ncols = min(4, max(1, len(metrics)))
    nrows = max(1, -(-len(metrics) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    others = swept[1:]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in others), []).append(row)
    for ax, metric in zip(axes.flat, metrics):
        for group, members in groups.items():
            xs = [m[x_name] if numeric else labels.index(str(m[x_name])) for m in members]
            ys = [m[metric] for m in members]
            label = ", ".join(f"{k}={v}" for k, v in zip(others, group)) or None
            lo, hi = (f"{metric}_lo", f"{metric}_hi")
            if all(isinstance(m.get(lo), float) and isinstance(m.get(hi), float)
                   for m in members):
                # a bias-corrected interval need not contain the estimate: clip at 0
                errors = [[max(0.0, y - m[lo]) for y, m in zip(ys, members)],
                          [max(0.0, m[hi] - y) for y, m in zip(ys, members)]]
                ax.errorbar(xs, ys, yerr=errors, fmt="o-", capsize=2, label=label)
            else:
                ax.plot(xs, ys, "o-", label=label)
        if not numeric:
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel(x_name)
        ax.set_title(metric, fontsize=9)
        if others:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_axis_off()
    if not metrics:
        axes.flat[0].text(0.5, 0.5, "no numeric glued values", ha="center")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def aggregate_seeds(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Rows of a sweep grouped by the value of ``by`` (in order of first appearance), one
    aggregate per value over its seeds: for every numeric column the mean over seeds
    (``<name>``), the smallest and largest seed value (``<name>_min``/``<name>_max``); for a
    column with bootstrap intervals (``<name>_lo``/``<name>_hi``) also the union of the seeds'
    intervals (``<name>_lo``/``<name>_hi``: the lowest lower end, the highest upper end), the
    widest statement of uncertainty the runs support. ``seeds`` lists the rows' seeds and
    ``runs`` the rows themselves."""
    groups: dict[str, list[dict[str, Any]]] = {}
    values: dict[str, Any] = {}
    for row in rows:
        label = json.dumps(row[by])
        groups.setdefault(label, []).append(row)
        values[label] = row[by]
    out = []
    for label, members in groups.items():
        agg: dict[str, Any] = {by: values[label], "seeds": [m.get("seed") for m in members],
                               "runs": members}
        for key in members[0]:
            if key in (by, "seed", "profile") or key.endswith(("_lo", "_hi")):
                continue
            numbers = [m.get(key) for m in members]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
                continue
            agg[key] = sum(numbers) / len(numbers)
            agg[f"{key}_min"], agg[f"{key}_max"] = min(numbers), max(numbers)
            lows = [m.get(f"{key}_lo") for m in members]
            highs = [m.get(f"{key}_hi") for m in members]
            if all(isinstance(v, (int, float)) for v in lows + highs):
                agg[f"{key}_lo"], agg[f"{key}_hi"] = min(lows), max(highs)
        out.append(agg)
    return out


def intervals_overlap(a: dict[str, Any], b: dict[str, Any], metric: str) -> bool:
    """Whether the ``<metric>_lo``..``<metric>_hi`` intervals of two aggregates overlap (then
    the data do not separate the two settings on that metric)."""
    return not (a[f"{metric}_hi"] < b[f"{metric}_lo"] or b[f"{metric}_hi"] < a[f"{metric}_lo"])
