"""The speed-quality frontier (chapter 7): every sampler of the book as one row, and its front.

A row is one way to draw images: a trained network and a sampler, with its network evaluations
per image (NFE), its seconds per image from one timing run (:func:`~ddgan_core.experiments.
frontier_speed`), its scores on ``sweep_samples`` images with 95% bootstrap intervals, and the
training it needed. Two groups:

* **equal compute**: chapter 4's pair, a DDPM and a DDGAN each trained for ``budget_minutes``
  on this device side by side, the DDPM sampled by several solvers, plus its progressively
  distilled students (:mod:`~ddgan_core.distillation`), whose training adds to the teacher's;
* **sweep budget**: chapter 5's DDGAN at each T of ``hp_timesteps`` and chapter 6's mixture
  kernel, trained for ``sweep_steps`` steps only (means over ``hp_seeds``, with the union of
  the seeds' intervals), on the plot for their shape, not as equals of the first group.

The front is the set of rows that no other row beats on both cost and FID
(:func:`pareto_front`). :func:`fast_sampling_rows` sets the DDGAN and two DDPM samplers beside
themselves with the network in bf16 through ``torch.compile``: same images, faster arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .cache import ResultCache

__all__ = ["GROUPS", "best_within", "fast_sampling_rows", "frontier_rows", "pareto_front"]

GROUPS = ("equal compute", "sweep budget")
_METRICS = ("fid", "kid", "precision", "recall", "coverage")
_SAMPLER_NAMES = {"ddim": "DDIM", "dpmsolver++": "DPM-Solver++(2M)",
                  "dpmsolver++3m": "DPM-Solver++(3M)", "unipc": "UniPC",
                  "ancestral": "DDPM ancestral"}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, loss) that no other point dominates (lower or equal in
    both, lower in one), in order of increasing cost. Of equal points the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def best_within(rows: Sequence[dict[str, Any]], nfe: int, key: str = "fid"
                ) -> dict[str, Any] | None:
    """The row with the lowest ``key`` among those with at most ``nfe`` network evaluations
    (ties: the cheaper in ms/image); None when there is none."""
    fitting = [row for row in rows if row["nfe"] <= nfe]
    return min(fitting, key=lambda r: (r[key], r["ms_per_image"]), default=None)


def _point_row(result, label: str, group: str) -> dict[str, Any]:
    """A row from a :func:`~ddgan_core.experiments.frontier_point` entry."""
    metrics = result.metrics
    row: dict[str, Any] = {"label": label, "group": group, "nfe": int(metrics["nfe"]),
                           "seeds": 1, "fid_floor": metrics["fid_floor"],
                           "classes_covered": metrics["classes"]["classes_covered"],
                           "classes_covered_min": metrics["classes"]["classes_covered"],
                           "classes_covered_max": metrics["classes"]["classes_covered"],
                           "n": int(metrics["n_samples"]), "result": result}
    for name in _METRICS:
        interval = metrics.get("uncertainty", {}).get(name, {})
        row[name] = metrics[name]
        row[f"{name}_lo"], row[f"{name}_hi"] = interval.get("lo"), interval.get("hi")
    return row


def _label(config: dict[str, Any]) -> str:
    """A frontier point's name from its key: "DDGAN, T = 4", "DDIM, K = 10", ..."""
    if config["method"] == "ddgan":
        return f"DDGAN, T = {config['steps']}"
    if config["method"] == "student":
        return f"distilled student, K = {config['steps']}"
    return f"{_SAMPLER_NAMES.get(config['sampler'], config['sampler'])}, K = {config['steps']}"


def _seed_rows(results: list, label: str, nfe: int) -> dict[str, Any]:
    """A row from the seeds of a sweep-budget point: means, the union of the intervals."""
    from .experiments import sweep_point_summary
    from .sweep import aggregate_seeds

    rows = [{"label": label, "seed": r.config.get("seed"), **sweep_point_summary(r)}
            for r in results]
    (agg,) = aggregate_seeds(rows, "label")
    out = {"label": label, "group": GROUPS[1], "nfe": nfe, "seeds": len(results),
           "fid_floor": agg["fid_floor"], "classes_covered": agg["classes_covered"],
           "classes_covered_min": int(agg["classes_covered_min"]),
           "classes_covered_max": int(agg["classes_covered_max"]),
           "n": int(results[0].config["n"]), "train_minutes": agg["train_minutes"],
           "results": results}
    for name in _METRICS:
        out[name], out[f"{name}_lo"], out[f"{name}_hi"] = (agg[name], agg.get(f"{name}_lo"),
                                                           agg.get(f"{name}_hi"))
    return out


def frontier_rows(profile: dict[str, Any], cache: ResultCache | None = None
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row of the frontier (module text), each with its ``ms_per_image`` and
    ``train_minutes`` (for a student: the teacher's and its own), and the context: the speed
    entry, the pair's models and the student entry."""
    from . import experiments as ex
    from .profiles import apply_overrides

    cache = cache or ResultCache()
    speed = ex.frontier_speed(profile, cache)
    timed = {(r["method"], r["sampler"], r["spacing"], int(r["steps"])): r["seconds_per_image"]
             for r in speed.metrics["rows"]}
    ddpm_model, gan_model = ex.ddpm_budget_model(profile, cache), ex.ddgan_model(profile, cache)
    student = ex.distilled_student(profile, cache)
    ddpm_minutes = ddpm_model.metrics["train_seconds"] / 60.0
    student_minutes = student.metrics["wall_time_s"] / 60.0
    gan_minutes = gan_model.metrics["train"]["wall_time_s"] / 60.0
    rows = []
    for result in ex.frontier(profile, cache):
        c = result.config
        row = _point_row(result, _label(c), GROUPS[0])
        row["train_minutes"] = {"ddgan": gan_minutes, "student": ddpm_minutes + student_minutes
                                }.get(c["method"], ddpm_minutes)
        row.update(method=c["method"], sampler=c["sampler"], family=(
            c["method"] if c["method"] != "ddpm" else f"ddpm {c['sampler']}"))
        row["ms_per_image"] = 1e3 * timed[(c["method"], c["sampler"], c["spacing"],
                                           int(c["steps"]))]
        rows.append(row)
    for T in sorted(int(t) for t in profile["hp_timesteps"]):
        results = [ex.ddgan_sweep_point(apply_overrides(dict(profile), {
            "ddgan_timesteps": T, "seed": seed}), cache) for seed in profile["hp_seeds"]]
        row = _seed_rows(results, f"DDGAN, T = {T} (sweep)", T)
        row.update(method="ddgan", sampler="ddgan", family="ddgan sweep",
                   ms_per_image=1e3 * timed[("ddgan", "ddgan", "chain", T)])
        rows.append(row)
    mixture = [result for label, _, result in ex.kernel_image_study(profile, cache)
               if label == "mixture kernel"]
    T = int(profile["ddgan_timesteps"])
    row = _seed_rows(mixture, "mixture kernel (sweep)", T)
    row.update(method="mixture", sampler="mixture", family="mixture",
               ms_per_image=1e3 * timed[("mixture", "mixture", "chain", T)])
    rows.append(row)
    return rows, {"speed": speed, "ddpm": ddpm_model, "ddgan": gan_model, "student": student}


def fast_sampling_rows(profile: dict[str, Any], cache: ResultCache | None = None
                       ) -> tuple[list[dict[str, Any]], Any]:
    """One row per sampler of :func:`~ddgan_core.experiments.fast_sampling`: ``label``, ``nfe``;
    ``ms``, milliseconds per image in each (precision, compile) of
    :data:`~ddgan_core.experiments.NETWORK_MODES` and ``first_call_s``, the first call's
    seconds in each (both from :func:`~ddgan_core.experiments.fast_sampling_speed`);
    ``compile_s``, how much longer the first bf16 compiled call took than a timed one;
    ``speedup``, float32 eager over bf16 compiled; ``fp32`` and ``bf16``, the scored rows
    (:func:`frontier_rows`' fields) of its float32 frontier point and of the same point drawn
    in bf16 through ``torch.compile``. Returns (rows, the timing entry)."""
    from . import experiments as ex

    cache = cache or ResultCache()
    speed = ex.fast_sampling_speed(profile, cache)
    timed: dict[tuple, dict[tuple[str, bool], dict[str, Any]]] = {}
    for r in speed.metrics["rows"]:
        point = (r["method"], r["sampler"], r["spacing"], int(r["steps"]))
        timed.setdefault(point, {})[r["precision"], bool(r["compile"])] = r
    rows = []
    for fast in ex.fast_sampling(profile, cache):
        c = fast.config
        method, sampler = c["method"], c["sampler"] if c["method"] == "ddpm" else ""
        plain = ex.frontier_point(profile, method, sampler, int(c["steps"]),
                                  c["spacing"] if method == "ddpm" else "trailing", cache)
        modes = timed[(method, c["sampler"], c["spacing"], int(c["steps"]))]
        ms = {mode: 1e3 * r["seconds_per_image"] for mode, r in modes.items()}
        compiled = modes["bf16", True]
        rows.append({"label": _label(c), "nfe": int(fast.metrics["nfe"]), "ms": ms,
                     "first_call_s": {mode: r["first_call_seconds"] for mode, r in modes.items()},
                     "compile_s": compiled["first_call_seconds"] - compiled["seconds_total"],
                     "speedup": ms["fp32", False] / ms["bf16", True],
                     "fp32": _point_row(plain, _label(c), GROUPS[0]),
                     "bf16": _point_row(fast, _label(c), GROUPS[0])})
    return rows, speed
