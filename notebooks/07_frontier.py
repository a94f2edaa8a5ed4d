# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The speed-quality frontier
#
# ````{admonition} Rerun this chapter
# :class: tip
#
# This page shows the {glue:text}`chapter_profile` profile. Every point is one cached
# `frontier_point` (or a sweep point of chapters 5 and 6); the students are one
# `distilled_student` entry and the timing one `frontier_speed` run. Missing entries are
# computed when the page is executed:
#
# ```bash
# python -m ddgan_core book --profile cpu --only 07_frontier
# python -m ddgan_core reproduce --profile cpu --only distilled_student \
#     --only frontier --only frontier_speed --only fast_sampling --only fast_sampling_speed
# papermill notebooks/07_frontier.ipynb out.ipynb -p profile cpu -p distill_start_steps 4
# python -m ddgan_core sweep notebooks/07_frontier -p distill_lr 0.0001 0.0002 --profile cpu
# ```
#
# **Cost.** The {glue:text}`fr_points` points and the two timing runs were
# {glue:text}`fr_source`, computed {glue:text}`fr_where` in {glue:text}`fr_eval_min:.0f`
# minutes; the distillation trained for {glue:text}`fr_student_min:.0f` minutes on top of the
# teacher's {glue:text}`fr_teacher_min:.0f`. Executing this page took
# {glue:text}`chapter_seconds:.0f` s on {glue:text}`chapter_device`.
# ````
#
# The book's question is a trade-off: how good can the samples be for a given number of network
# evaluations, or milliseconds, per image? The earlier chapters answer it one method at a time.
# This chapter puts every method on one plot, scored the same way on the same number of images
# and timed in one run on one device, and marks the front: the methods that nothing else beats
# on both speed and quality. Besides DDGAN and the training-free solvers of chapter 3 it adds
# the other way to make a diffusion model fast, distillation, so that DDGAN is measured
# against what a practitioner would choose instead of it today.

# %% tags=["hide-cell"]
# Opened on Colab or Binder, where this project is not installed: install it and the data first.
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("ddgan_core") is None and (
    "google.colab" in sys.modules or "BINDER_SERVICE_HOST" in os.environ
):
    repository = "git+https://github.com/ddgan-executable-paper/ddgan-book"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"ddgan-core[book] @ {repository}"],
                   check=True)
    subprocess.run([sys.executable, "-m", "ddgan_core", "data", "--download"], check=True)

# %% tags=["parameters", "hide-input"]
profile = "cpu"
distill_start_steps = None    # steps of the first student (a power of two)
distill_lr = None
distill_batch_size = None
sweep_samples = None          # images per point (the sweep points' n)

# %% tags=["hide-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from myst_nb import glue
from PIL import Image

from ddgan_core.cache import ResultCache
from ddgan_core.distillation import distill_rounds
from ddgan_core.frontier import (
    GROUPS,
    best_within,
    fast_sampling_rows,
    frontier_rows,
    pareto_front,
)
from ddgan_core.plotting import cost, figure_png, machine_label, use_book_style
from ddgan_core.profiles import get_profile, overrides_from
from ddgan_core.sweep import intervals_overlap
from ddgan_core.tables import interval_cell, range_cell

chapter_start = time.perf_counter()
cfg = get_profile(profile, **overrides_from(globals()))  # every profile key papermill passed
use_book_style()
glue("chapter_profile", cfg["profile"], display=False)
rows, context = frontier_rows(cfg, ResultCache())  # every point and the timing run; cached
equal = [row for row in rows if row["group"] == GROUPS[0]]
student = context["student"]
budget = context["ddpm"].config.get("budget_minutes")
glue("fr_n", int(cfg["sweep_samples"]), display=False)
glue("fr_budget", f"{budget:.0f} minutes" if budget else "the profile's step counts",
     display=False)
glue("fr_teacher_min", float(context["ddpm"].metrics["train_seconds"] / 60), display=False)
glue("fr_student_min", float(student.metrics["wall_time_s"] / 60), display=False)
glue("fr_gan_min", float(context["ddgan"].metrics["train"]["wall_time_s"] / 60),
     display=False)
glue("fr_rounds", ", ".join(str(k) for k in distill_rounds(cfg["distill_start_steps"])),
     display=False)
glue("fr_start", int(cfg["distill_start_steps"]), display=False)
glue("fr_teacher_steps", 2 * int(cfg["distill_start_steps"]), display=False)
glue("fr_distill_steps", int(student.metrics["train_steps"]), display=False)
glue("fr_round_steps", int(min(student.metrics["round_steps"])), display=False)
glue("fr_distill_batch", int(cfg["distill_batch_size"]), display=False)
glue("fr_distill_lr", float(cfg["distill_lr"]), display=False)
glue("fr_sweep_steps", int(cfg["sweep_steps"]), display=False)
glue("fr_seeds", len(cfg["hp_seeds"]), display=False)
ancestral_ks = sorted(int(k) for s_, _, k in cfg["frontier_ddpm"] if s_ == "ancestral")
glue("fr_ancestral", " and ".join(f"{k:,d}" for k in ancestral_ks) or "none (not in this "
     "profile)", display=False)
plan = student.metrics.get("budget")
student_min = student.metrics["wall_time_s"] / 60
if not plan:
    budget_note = "the steps are the profile's `distill_train_steps`"
elif student_min <= plan["budget_s"] / 60:
    budget_note = (f"the step count was calibrated to the pair's budget of "
                   f"{plan['budget_s'] / 60:.0f} minutes, and training took "
                   f"{student_min:.0f}")
else:
    budget_note = (f"the step count was calibrated to the pair's budget of "
                   f"{plan['budget_s'] / 60:.0f} minutes ({plan['seconds_per_step']:.2f} s per "
                   f"step measured before training), but steps ran slower beside other work on "
                   f"the same CPU, and training took {student_min:.0f} minutes: the students "
                   f"had {student_min / (plan['budget_s'] / 60):.2f} times the pair's time")
glue("fr_budget_note", budget_note, display=False)
glue("fr_speed_threads", int(context["speed"].metrics["threads"]), display=False)
glue("fr_speed_batch", int(context["speed"].config["batch"]), display=False)

# %% [markdown]
# ## The methods
#
# Two groups of models share the plot.
#
# **Equal compute.** Chapter 4's pair: a DDPM and a DDGAN of the same UNet width, each trained
# for {glue:text}`fr_budget` on this device with one thread, side by side
# (the DDPM for {glue:text}`fr_teacher_min:.0f` minutes of training time, the DDGAN for
# {glue:text}`fr_gan_min:.0f`). The DDPM is sampled by three samplers:
#
# - DDIM with "trailing" spacing (chapter 3 showed it beats the book's linspace spacing at
#   small $K$);
# - DPM-Solver++(3M), the best of chapter 3's solvers at most $K$;
# - the ancestral sampler at $K$ = {glue:text}`fr_ancestral`: chapter 4's reference and, at
#   $K$ = $T$, the full chain the model was trained for.
#
# DDGAN samples with its own chain.
#
# The third member of the group is a **distilled student** of that DDPM, described in the next
# section. Its training time adds to its teacher's.
#
# **Sweep budget.** Chapter 5's DDGAN at each $T$ and chapter 6's mixture kernel (its best
# kernel without a discriminator) were trained for only {glue:text}`fr_sweep_steps` steps, so
# they are drawn hollow, with the mean and the union of the intervals of
# {glue:text}`fr_seeds` seeds. They show how $T$ moves a model along the cost axis; they are
# not equals of the first group.
#
# Every point is scored on {glue:text}`fr_n:,d` samples, the sweep points' $n$, with 95%
# bootstrap intervals over the samples. Milliseconds per image come from one run of one
# harness on freshly initialised networks (time does not depend on the weights):
# {glue:text}`fr_speed_threads` thread, batch {glue:text}`fr_speed_batch`, a warm-up batch,
# then the median of repeats.
#
# ## Progressive distillation
#
# Progressive distillation {cite}`salimans2022progressive` turns a sampler of $2N$ DDIM steps
# into a network that takes $N$, then repeats. A student step is trained to land where two
# teacher steps land, so each round is a regression with a fixed target, with no adversary and
# no second network. Every round's student is itself a sampler, so rounds of
# {glue:text}`fr_rounds` steps give the frontier a point at each power of two. Consistency
# distillation {cite}`song2023consistency` reaches one step too. It was not chosen here because
# it needs an EMA target network and many more updates than this CPU budget holds.
#
# With $\alpha_t = \sqrt{\bar\alpha_t}$, $\sigma_t = \sqrt{1 - \bar\alpha_t}$ and the DDIM step
# $z_s = \alpha_s \hat x(z_t) + \sigma_s \hat\varepsilon(z_t)$, the student at grid time $t$
# regresses onto
#
# $$
# \tilde x = \frac{z'' - (\sigma''/\sigma_t)\, z_t}{\alpha'' - (\sigma''/\sigma_t)\,\alpha_t},
# $$
#
# the image for which one DDIM step from $z_t$ reaches $z''$, the point two teacher steps
# reach. The loss is $\max(\alpha_t^2/\sigma_t^2, 1)\,\lVert \tilde x - \hat x \rVert^2$.
#
# The book's DDPM predicts the noise, and its $\hat x = (z_t - \sigma_t \hat\varepsilon) /
# \alpha_t$ multiplies the network's error by $\sigma_t / \alpha_t$, about 160 at $t = T$. A
# one-step student cannot work that way; chapter 6 met the same effect. So the student predicts
# $v = \alpha_t \varepsilon - \sigma_t x$, from which $\hat x = \alpha_t z_t - \sigma_t v$ is
# well conditioned at every $t$ {cite}`salimans2022progressive`. It starts from the teacher's
# weights.
#
# The first teacher is the DDPM with {glue:text}`fr_teacher_steps` DDIM steps. There are
# {glue:text}`fr_distill_steps:,d` steps in all (at least {glue:text}`fr_round_steps:,d` per
# round), with batch {glue:text}`fr_distill_batch`, and Adam at {glue:text}`fr_distill_lr:g`
# decayed linearly to zero in each round. That is far fewer updates than the paper's;
# {glue:text}`fr_budget_note`. The code is `ddgan_core.distillation`.

# %% tags=["hide-input"]
by_label = {row["label"]: row for row in rows}
history = student.metrics["history"]
lines = ["| student steps | training steps | last logged loss | FID | recall "
         "| DDIM (trailing) FID at the same K | classes |", "|---:|" + "---:|" * 6]
for k, steps in zip(student.metrics["rounds"], student.metrics["round_steps"]):
    row = by_label[f"distilled student, K = {k}"]
    losses = [h["loss"] for h in history if h["student_steps"] == k]
    ddim = by_label.get(f"DDIM, K = {k}")
    lines.append(f"| {k} | {steps:,d} | {losses[-1]:.4f} | {interval_cell(row, 'fid', '.1f')} "
                 f"| {interval_cell(row, 'recall', '.3f')} "
                 f"| {interval_cell(ddim, 'fid', '.1f') if ddim else '–'} "
                 f"| {row['classes_covered']} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# Every round of the distillation: the student's training steps, the mean loss of its last
# logged interval, its FID and recall with 95% bootstrap intervals, the teacher DDPM's DDIM with
# the same number of steps, and the classes holding at least 2.5% of the samples.

# %% tags=["hide-input"]
FAMILIES = {  # family: (legend label, colour, marker, filled)
    "ddpm ddim": ("DDPM, DDIM (trailing)", "C0", "o", True),
    "ddpm dpmsolver++3m": ("DDPM, DPM-Solver++(3M)", "C1", "s", True),
    "ddpm ancestral": ("DDPM, ancestral", "C4", "v", True),
    "student": ("distilled student", "C2", "D", True),
    "ddgan": ("DDGAN (equal compute)", "C3", "*", True),
    "ddgan sweep": ("DDGAN, T = 1, 2, 4, 8 (sweep budget)", "C3", "o", False),
    "mixture": ("mixture kernel (sweep budget)", "C5", "^", False),
}


def plot_panel(ax, metric: str, axis: str, lower_better: bool) -> list[int]:
    """One panel: every family with its intervals, the front of all points as a step line."""
    for family, (label, colour, marker, filled) in FAMILIES.items():
        members = sorted((r for r in rows if r["family"] == family), key=lambda r: r[axis])
        if not members:
            continue
        xs = [r[axis] for r in members]
        ys = [r[metric] for r in members]
        err = [[max(r[metric] - r[f"{metric}_lo"], 0) for r in members],
               [max(r[f"{metric}_hi"] - r[metric], 0) for r in members]]
        ax.errorbar(xs, ys, yerr=err, color=colour, marker=marker, ms=7 if marker == "*" else 4.5,
                    mfc=colour if filled else "white", lw=0.8, capsize=2, label=label,
                    ls="-" if len(members) > 1 else "none", zorder=3)
    points = [(r[axis], r[metric] if lower_better else -r[metric]) for r in rows]
    front = pareto_front(points)
    fx = [rows[i][axis] for i in front]
    fy = [rows[i][metric] for i in front]
    ax.step(fx, fy, where="post", color="0.35", lw=1.6, ls="--", zorder=2, label="front")
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    return front


def frontier_figure(metric: str, label: str, lower_better: bool, log_y: bool):
    """Two panels (against NFE, against ms per image) and one legend under them."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6), sharey=True)
    fronts = [plot_panel(ax, metric, axis, lower_better)
              for ax, axis in zip(axes, ("nfe", "ms_per_image"))]
    if log_y:  # the data's range, not the floor's: the floor is in the caption
        low = min(r[f"{metric}_lo"] for r in rows)
        high = max(r[f"{metric}_hi"] for r in rows)
        axes[0].set_yscale("log")
        axes[0].set_ylim(0.85 * low, 1.15 * high)
    axes[0].set_xlabel("network evaluations per image (NFE)")
    axes[1].set_xlabel("milliseconds per image (this CPU, one thread)")
    axes[0].set_ylabel(label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7.5, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    plt.close(fig)
    return fig, fronts


fig, (front_nfe, front_ms) = frontier_figure("fid", "FID (lower is better)", True, True)
glue("fig_frontier_fid", figure_png(fig), display=False)
glue("fr_floor", float(rows[0]["fid_floor"]), display=False)
fig, _ = frontier_figure("recall", "recall (higher is better)", False, False)
glue("fig_frontier_recall", figure_png(fig), display=False)

# %% [markdown]
# ## The frontier
#
# ```{glue:figure} fig_frontier_fid
# :name: fig-frontier-fid
#
# FID against network evaluations (left) and against milliseconds per image (right) for every
# method, with 95% bootstrap intervals over {glue:text}`fr_n:,d` samples. Filled markers:
# models of the equal-compute pair and the distilled students. Hollow markers: models trained
# for the sweep budget only. Dashed: the front, the points that no other point beats on both
# axes. The FID of as many test images, the floor, is {glue:text}`fr_floor:.2f`.
# ```
#
# ```{glue:figure} fig_frontier_recall
# :name: fig-frontier-recall
#
# The same for recall, the share of real images that fall inside the generated samples'
# nearest-neighbour balls: the diversity side of the trade-off.
# ```

# %% tags=["hide-input"]
on_nfe_front = {rows[i]["label"] for i in front_nfe}
lines = ["| method | group | NFE | ms / image | FID | recall | classes | training min "
         "| on the NFE front |", "|---|---|" + "---:|" * 6 + "---|"]
for i in front_ms:
    row = rows[i]
    lines.append(f"| {row['label']} | {row['group']} | {row['nfe']} "
                 f"| {row['ms_per_image']:.1f} | {interval_cell(row, 'fid', '.1f')} "
                 f"| {interval_cell(row, 'recall', '.3f')} | {range_cell(row, 'classes_covered')} "
                 f"| {row['train_minutes']:.0f} "
                 f"| {'yes' if row['label'] in on_nfe_front else 'no'} |")
display(Markdown("\n".join(lines)))
glue("fr_front_size", len(front_ms), display=False)
glue("fr_total", len(rows), display=False)

# %% [markdown]
# The front in milliseconds per image: {glue:text}`fr_front_size` of the
# {glue:text}`fr_total` points, from the fastest to the best, each with its 95% bootstrap
# interval. For the sweep-budget rows the values are means over seeds, with the union of their
# intervals. "Training min" is the model's training wall time; a student's includes its
# teacher's. "Classes" counts the classes holding at least 2.5% of the samples.

# %% tags=["hide-input"]
def verdict(rows: list[dict], budgets=(1, 4, 10, 100)) -> str:
    """For each NFE budget, the best FID among the equal-compute points within it, whether
    its interval separates it from the runner-up of another family, and its cost."""
    text = []
    for nfe in budgets:
        best = best_within(rows, nfe)
        if best is None:
            continue
        others = [r for r in rows if r["nfe"] <= nfe and r["family"] != best["family"]]
        runner = min(others, key=lambda r: r["fid"], default=None)
        sentence = (f"**At most {nfe} NFE:** {best['label']}, FID {best['fid']:.1f} "
                    f"[{best['fid_lo']:.1f}, {best['fid_hi']:.1f}], recall "
                    f"{best['recall']:.2f}, {best['ms_per_image']:.0f} ms per image")
        if runner is not None:
            sentence += (f"; the best of another family is {runner['label']} at "
                         f"{runner['fid']:.1f}, "
                         + ("and the intervals do not overlap." if not intervals_overlap(
                             best, runner, "fid") else "and the intervals overlap."))
        else:
            sentence += "."
        text.append(sentence)
    students = [r for r in rows if r["family"] == "student"]
    gans = [r for r in rows if r["family"] == "ddgan"]
    if students and gans:
        s_min, g_min = students[0]["train_minutes"], gans[0]["train_minutes"]
        text.append(f"Training is not counted in these rankings. With its teacher, each student "
                    f"trained for {s_min:.0f} minutes, {s_min / g_min:.1f} times the DDGAN's "
                    f"{g_min:.0f}; whether a student distilled in the DDGAN's time would still "
                    "be ahead is not measured here.")
    return "\n\n".join(text)


display(Markdown(verdict(equal)))

# %% [markdown]
# The best equal-compute sampler for each budget of network evaluations, computed from the
# table; a student's training time is its teacher's plus its own.

# %% tags=["hide-input"]
shown = [f"distilled student, K = {k}" for k in student.metrics["rounds"]]
shown += [row["label"] for row in equal if row["family"] == "ddgan"]
shown += [f"DPM-Solver++(3M), K = {k}" for k in (4, 10)]
shown = [label for label in shown if label in by_label]
cols = 3
rows_n = -(-len(shown) // cols)
fig, axes = plt.subplots(rows_n, cols, figsize=(2.6 * cols, 2.85 * rows_n), squeeze=False)
for ax in axes.ravel():
    ax.axis("off")
for ax, label in zip(axes.ravel(), shown):
    with Image.open(by_label[label]["result"].file("samples.png")) as image:
        ax.imshow(np.asarray(image.convert("L")), cmap="gray", vmin=0, vmax=255)
    ax.set_title(label, fontsize=8)
fig.tight_layout(pad=0.3)
plt.close(fig)
glue("fig_frontier_samples", figure_png(fig), display=False)

# %% [markdown]
# ```{glue:figure} fig_frontier_samples
# :name: fig-frontier-samples
#
# The first 64 samples of each student, of the equal-compute DDGAN and of the teacher DDPM
# with DPM-Solver++(3M) at 4 and 10 steps.
# ```

# %% [markdown]
# ## Faster arithmetic, the same samplers
#
# Every time above is the samplers' default: float32, run eagerly, the network in the
# channels-last layout. Two changes leave the models, the samplers and their seeds alone and
# change only how each network evaluation is computed. **bf16 autocast** runs convolutions and
# matrix products in bfloat16 (8 bits of mantissa instead of 23), which CPUs with AVX-512 BF16
# instructions, such as this one, or AMX execute faster than float32 (`benchmarks/bench_unet.py`
# prints the square-matmul peak of both). **`torch.compile`** traces the network once and
# generates fused code for it: group norm, SiLU and the residual additions in one pass over
# memory instead of several. Both are options of every sampler (`precision="bf16"`,
# `compile=True`; `--precision bf16 --compile` on the command line). The question is what they
# cost in quality, so the DDGAN and two DDPM samplers were drawn again with both on: the same
# model, seeds and {glue:text}`fr_n:,d` images, and the same extractor as their frontier
# points.

# %% tags=["hide-input"]
fast_rows, fast_speed = fast_sampling_rows(cfg, ResultCache())
modes = [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]
lines = ["| sampler | NFE | fp32 | bf16 | fp32, compiled | bf16, compiled | speed-up |",
         "|---|" + "---:|" * 6]
for row in fast_rows:
    lines.append(f"| {row['label']} | {row['nfe']} | "
                 + " | ".join(f"{row['ms'][mode]:.1f}" for mode in modes)
                 + f" | {row['speedup']:.2f}x |")
display(Markdown("\n".join(lines)))
threads = int(fast_speed.metrics["threads"])
glue("fast_threads", f"{threads} thread" + ("s" if threads != 1 else ""), display=False)
glue("fast_batch", int(fast_speed.config["batch"]), display=False)

# %% [markdown]
# Milliseconds per image at batch {glue:text}`fast_batch` on {glue:text}`fast_threads`, timed
# in one run on freshly initialised networks, as the frontier's times are. The speed-up is
# float32 eager over bf16 compiled.

# %% tags=["hide-input"]
lines = ["| sampler | FID, fp32 | FID, bf16 compiled | recall, fp32 | recall, bf16 compiled |",
         "|---|" + "---:|" * 4]
for row in fast_rows:
    lines.append(f"| {row['label']} | {interval_cell(row['fp32'], 'fid', '.2f')} "
                 f"| {interval_cell(row['bf16'], 'fid', '.2f')} "
                 f"| {interval_cell(row['fp32'], 'recall', '.3f')} "
                 f"| {interval_cell(row['bf16'], 'recall', '.3f')} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# The scores of the same samplers on {glue:text}`fr_n:,d` images, with their 95% bootstrap
# intervals; the float32 scores are the frontier's points.

# %% tags=["hide-input"]
def fast_verdict(rows: list[dict]) -> str:
    """The speed-up range, bf16 alone, whether bf16 moved FID beyond its interval, and the
    compilation's one-off cost."""
    ups = [row["speedup"] for row in rows]
    eager = [row["ms"]["bf16", False] / row["ms"]["fp32", False] for row in rows]
    same = [row["label"] for row in rows if intervals_overlap(row["fp32"], row["bf16"], "fid")]
    moved = [row["label"] for row in rows if row["label"] not in same]
    text = (f"bf16 through `torch.compile` drew the same samplers {min(ups):.2f} to "
            f"{max(ups):.2f} times faster per image. Neither change does it alone: bf16 run "
            f"eagerly took {min(eager):.2f} to {max(eager):.2f} times the float32 time, since "
            "every call converts activations and weights to bf16 and back, and compiled "
            "float32 ran "
            + ", ".join(f"{row['ms']['fp32', False] / row['ms']['fp32', True]:.2f}"
                        for row in rows[:-1])
            + f" and {rows[-1]['ms']['fp32', False] / rows[-1]['ms']['fp32', True]:.2f} times "
            "as fast as eager float32, in the table's order. ")
    if not moved:
        shift = max(abs(r["bf16"]["fid"] - r["fp32"]["fid"]) for r in rows)
        text += ("For every sampler the two FID intervals overlap, so these images cannot tell "
                 f"the arithmetic apart (the largest shift is {shift:.2f} FID).")
    else:
        text += (f"The FID intervals overlap for {'; '.join(same) or 'none'} and do not for "
                 f"{'; '.join(moved)}: there bf16 changed the result.")
    slowest = max(rows, key=lambda r: r["compile_s"])
    text += (f" Compiling is paid once per network and batch shape: the first compiled call "
             f"took up to {slowest['compile_s']:.0f} s longer than the timed ones "
             f"({slowest['label']}), so it pays over thousands of network evaluations, not over "
             "one batch.")
    return text


display(Markdown(fast_verdict(fast_rows)))

# %% tags=["hide-input"]
# what this page cost (the box at the top)
entries = ([row["result"] for row in equal] + [context["speed"], fast_speed]
           + [row["bf16"]["result"] for row in fast_rows])
spent = cost(entries)
glue("fr_points", len(equal) + len(fast_rows), display=False)
glue("fr_source", spent["source"], display=False)
glue("fr_where", spent["where"], display=False)
glue("frontier_device", spent["devices"], display=False)
glue("fr_eval_min", float(spent["seconds"] / 60), display=False)
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
