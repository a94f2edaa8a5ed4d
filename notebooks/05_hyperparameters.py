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
# # How DDGAN's hyper-parameters move speed, quality and diversity
#
# ````{admonition} Rerun this chapter, or extend one of its figures
# :class: tip
#
# This page shows the {glue:text}`chapter_profile` profile. Every point of every figure is one
# cached run of `ddgan_sweep_point`: the DDGAN recipe of the previous chapter with one setting
# changed, trained for {glue:text}`sweep_steps:,d` generator steps and scored. The command line
# computes the same entries, so a point you add there is one this page finds; points already
# in the cache take seconds:
#
# ```bash
# python -m ddgan_core sweep ddgan_sweep_point --profile cpu \
#     -p ddgan_timesteps 1 2 4 8 -p seed 0 1
# python -m ddgan_core sweep ddgan_sweep_point --profile cpu \
#     -p ddgan_nz 0 4 16 64 128 -p seed 0 1
# ```
#
# Each writes `results.csv` (every metric with its interval), `plot.png` and `sweep.json` (the
# cache entry of each point) under `sweeps/`. Each factor's own command is under its table.
# To execute this page again, with longer runs, or over several run lengths (each value of
# `sweep_steps` trains the whole grid again: hours on a CPU). The grid is a set of profile
# keys (`hp_timesteps`, `hp_nz`, `hp_r1_gamma`, `hp_d_steps`, `hp_channels`, `hp_seeds`)
# around the centre recipe (the `ddgan_` keys):
#
# ```bash
# python -m ddgan_core book --profile cpu --only 05_hyperparameters \
#     --set 'hp_nz=[0, 4, 16, 64, 128]'
# papermill notebooks/05_hyperparameters.ipynb out.ipynb \
#     -p profile cpu -p sweep_steps 300
# python -m ddgan_core sweep notebooks/05_hyperparameters \
#     -p sweep_steps 150 300 --profile cpu
# python -m ddgan_core reproduce --profile cpu --only hyperparameter_study
# ```
#
# **Cost.** The {glue:text}`grid_runs` runs of this page were {glue:text}`grid_source`, computed
# {glue:text}`grid_where`: {glue:text}`grid_cpu_min:,.0f` minutes of run time in all, two runs
# side by side with one thread each, in {glue:text}`grid_span_min:,.0f` minutes of wall time
# with at least one run computing (each run's start taken as its end less its run time); the
# speed measurement {glue:text}`speed_seconds:.0f` s. Executing this
# page took {glue:text}`chapter_seconds:.0f` s on
# {glue:text}`chapter_device`.
# ````
#
# The seed asks how the hyper-parameters of Denoising Diffusion GAN move its three
# properties: speed, quality and diversity. This chapter answers one factor at a time. Each
# factor is varied around the recipe of the previous chapter while everything else stays
# fixed: the number of denoising steps $T$, the size of the latent $z$, the weight of the R1
# penalty, how many discriminator updates each generator update gets, and the generator's
# width. Each point is trained once per seed ({glue:text}`n_seeds` seeds). It is then scored on quality (FID, KID,
# precision, density), on diversity (recall, coverage, and which classes the samples fall in)
# and on speed (milliseconds per image). The discriminator's state during training is
# recorded too.

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
hp_seeds = None
hp_timesteps = None
hp_nz = None
hp_r1_gamma = None
hp_d_steps = None
hp_channels = None
sweep_steps = None

# %% tags=["hide-cell"]
import datetime as dt
import json
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from myst_nb import glue

from ddgan_core.cache import ResultCache
from ddgan_core.experiments import (
    HYPERPARAMETER_FACTORS,
    cached_ddgan_model,
    hyperparameter_speed,
    hyperparameter_study,
)
from ddgan_core.plotting import cost, device_label, figure_png, machine_label, use_book_style
from ddgan_core.profiles import get_profile, overrides_from
from ddgan_core.sweep import aggregate_seeds, experiment_rows, intervals_overlap
from ddgan_core.tables import interval_cell, range_cell

chapter_start = time.perf_counter()
cfg = get_profile(profile, **overrides_from(globals()))  # every profile key papermill passed
use_book_style()
glue("chapter_profile", cfg["profile"], display=False)
cache = ResultCache()
runs = hyperparameter_study(cfg, cache)  # every point, computed only when missing
speed = hyperparameter_speed(cfg, cache)  # sampling time of each setting, one harness
glue("sweep_steps", int(cfg["sweep_steps"]), display=False)
glue("n_seeds", len(cfg["hp_seeds"]), display=False)

# %% [markdown]
# ## What one point is
#
# A point is the previous chapter's DDGAN with one setting changed, trained for
# {glue:text}`sweep_steps:,d` generator steps of batch {glue:text}`hp_batch` (about
# {glue:text}`hp_images:,d` real images, {glue:text}`centre_minutes:.1f` minutes on one CPU
# thread for the centre recipe), with an EMA of decay {glue:text}`hp_ema`. That is a
# fraction of the previous chapter's budgeted run, so this chapter measures how each setting
# moves the *early* part of training, where the whole grid fits in a few hours on this CPU. The
# centre recipe has $T$ = {glue:text}`centre_T`, a latent of {glue:text}`centre_nz` dimensions,
# R1 weight $\gamma$ = {glue:text}`centre_gamma` (convention {glue:text}`centre_convention`:
# $\gamma/2$ on every {glue:text}`centre_lazy`-th discriminator update),
# {glue:text}`centre_dsteps` discriminator updates per generator update and generator channels
# {glue:text}`centre_channels`, the width of chapter 3's UNet. The centre's FID after this
# short run is {glue:text}`centre_fid:.1f`. {glue:text}`ch4_sentence`
#
# Every point is scored on {glue:text}`hp_n:,d` samples from its EMA generator.
# - **Quality and diversity:** FID, KID, precision, recall, density and coverage under the
#   pinned extractor, each with a 95% bootstrap interval over the samples
#   ({glue:text}`hp_boot` resamples).
# - **Classes:** the class histogram of the samples by the same classifier. FashionMNIST has
#   ten classes in equal shares, which gives the data set's version of the StackedMNIST mode
#   count. We report the classes covered (a class counts when it holds at least 2.5% of the
#   samples, a quarter of its share) and the KL divergence of the histogram from uniform, in
#   nats. The classifier errs on about 8% of real images, so real test images are not at 0
#   either: their KL is {glue:text}`kl_floor:.3f`, the floor.
# - **Speed:** sampling and training time, measured for every setting in one run with one
#   harness on {glue:text}`speed_device`: milliseconds per image (batches of {glue:text}`speed_batch`, a warm-up, the median of five
#   repeats) and seconds per training step (the mean of {glue:text}`timed_steps` steps after a
#   warm-up). Time does not depend on the weights, so the harness times freshly initialised
#   networks. The runs' own times are not used for the comparison: two ran side by side, and
#   at times beside other jobs of the same machine.
# - **The discriminator's state:** the median logit gap $D(\text{real}) - D(\text{fake})$ over
#   the logged intervals, and the share of intervals in which the D loss sat within 0.03 of
#   $2\ln 2$, the loss of a discriminator at chance.
#
# Each table gives the mean over the seeds. The interval is the union of the
# seeds' bootstrap intervals: the lowest lower end and the highest upper end. It covers
# both the sampling noise of one run and the difference between the runs. Two settings are
# called different only when these intervals do not overlap.

# %% tags=["hide-input"]
centre = next(r for r in runs if all(r.config[k] == cfg[k] for k, _ in HYPERPARAMETER_FACTORS)
              and r.config["seed"] == cfg["hp_seeds"][0])
chapter4 = cached_ddgan_model(cfg, cache)  # the previous chapter's run, when it is cached
if chapter4 is not None:
    glue("ch4_sentence", "The previous chapter's run of the same recipe, trained for "
         f"{chapter4.metrics['train']['train_steps']:,d} steps, reached FID "
         f"{chapter4.metrics['final']['fid']:.1f} (with "
         f"{chapter4.metrics['final']['n_samples']:,d} samples).", display=False)
else:
    glue("ch4_sentence", "The previous chapter's budgeted run of this recipe is not in the "
         "cache, so it is not compared here.", display=False)
glue("hp_batch", int(cfg["ddgan_batch_size"]), display=False)
glue("hp_images", int(cfg["sweep_steps"] * cfg["ddgan_batch_size"]), display=False)
glue("hp_ema", float(centre.config["ddgan_ema_decay"]), display=False)
glue("hp_n", int(centre.config["n"]), display=False)
glue("hp_boot", int(centre.config["bootstrap"]), display=False)
glue("speed_batch", int(speed.config["batch"]), display=False)
glue("speed_device", device_label(speed.manifest), display=False)
glue("timed_steps", int(speed.config["timed_train_steps"]), display=False)
glue("centre_minutes", float(centre.metrics["train_minutes"]), display=False)
glue("centre_T", int(cfg["ddgan_timesteps"]), display=False)
glue("centre_nz", int(cfg["ddgan_nz"]), display=False)
glue("centre_gamma", cfg["ddgan_r1_gamma"], display=False)
glue("centre_convention", cfg["ddgan_r1_convention"], display=False)
glue("centre_lazy", int(cfg["ddgan_lazy_r1"]), display=False)
glue("centre_dsteps", int(cfg["ddgan_d_steps"]), display=False)
glue("centre_channels", "/".join(str(c) for c in cfg["ddgan_channels"]), display=False)
glue("centre_fid", float(centre.metrics["final"]["fid"]), display=False)
glue("kl_floor", float(centre.metrics["final"]["classes_floor"]["kl_to_uniform"]),
     display=False)


# %% tags=["hide-input"]
def value_label(key: str, value) -> str:
    """A factor's value in words, for tables and axes."""
    if key == "ddgan_timesteps":
        return f"T = {value}" + (" (a GAN)" if value == 1 else "")
    if key == "ddgan_nz":
        return "no z" if value == 0 else f"nz = {value}"
    if key == "ddgan_r1_gamma":
        return "no R1" if value == 0 else f"γ = {value:g}"
    if key == "ddgan_d_steps":
        return f"{value} D : 1 G"
    if key == "ddgan_channels":
        ratio = value[0] / cfg["ddpm_channels"][0]
        return "/".join(str(c) for c in value) + f" ({ratio:g}× UNet)"
    return str(value)


SPEED = {(row["factor"], json.dumps(row["value"])): row for row in speed.metrics["rows"]}


def ms_per_image(key: str, value) -> float:
    """The harness's milliseconds per image for a setting (the centre's generator for the
    factors that change training only)."""
    row = SPEED.get((key, json.dumps(value)), {})
    if "seconds_per_image" not in row:  # R1 weight, D steps: the centre's generator
        row = SPEED[("ddgan_timesteps", json.dumps(cfg["ddgan_timesteps"]))]
    return 1e3 * float(row["seconds_per_image"])


def factor_rows(key: str, values_key: str) -> list[dict]:
    """One aggregate per value of the factor (means and intervals over seeds), from the same
    cache entries `python -m ddgan_core sweep ddgan_sweep_point` reads."""
    values = list(cfg[values_key])
    if cfg[key] not in values:  # the centre is always shown
        values.append(cfg[key])
        values.sort(key=lambda v: v if not isinstance(v, list) else v[0])
    rows, _ = experiment_rows("ddgan_sweep_point", cfg,
                              {key: values, "seed": list(cfg["hp_seeds"])}, cache,
                              verbose=False)
    aggs = aggregate_seeds(rows, key)
    for agg in aggs:
        agg["ms_per_image"] = ms_per_image(key, agg[key])
        agg["s_per_step"] = float(SPEED[(key, json.dumps(agg[key]))]["train_seconds_per_step"])
    return aggs


def parameters_text(key: str, value) -> str:
    """`` (2.04 M)``: the generator's parameters, for the factors that change them."""
    row = SPEED.get((key, json.dumps(value)))
    return f" ({row['parameters'] / 1e6:.2f} M)" if row and key != "ddgan_timesteps" else ""


def factor_table(key: str, aggs: list[dict]) -> str:
    """The factor's table: mean over seeds with the union of the seeds' 95% intervals."""
    head = ("| setting | FID | recall | coverage | classes | class KL | ms / image "
            "| s / step | D gap |")
    lines = [head, "|---|" + "---:|" * 8]
    for agg in aggs:
        centre_mark = " (centre)" if agg[key] == cfg[key] else ""
        lines.append(
            f"| {value_label(key, agg[key])}{parameters_text(key, agg[key])}{centre_mark} "
            f"| {interval_cell(agg, 'fid', '.1f')} "
            f"| {interval_cell(agg, 'recall', '.3f')} | {agg['coverage']:.3f} "
            f"| {range_cell(agg, 'classes_covered')} | {agg['kl_to_uniform']:.3f} "
            f"| {agg['ms_per_image']:.1f} | {agg['s_per_step']:.2f} "
            f"| {agg['gap_median']:.2f} |")
    return "\n".join(lines)


PANELS = (("fid", "FID (lower is better)", 1.0), ("recall", "recall", 1.0),
          ("coverage", "coverage", 1.0), ("kl_to_uniform", "class KL to uniform (nats)", 1.0),
          ("ms_per_image", "ms per image (harness)", 1.0),
          ("gap_median", "D logit gap (median)", 1.0))


def factor_figure(key: str, aggs: list[dict]):
    """Five panels against the factor: each seed's value (with its bootstrap interval where it
    has one) and the mean over seeds (line)."""
    fig, axes = plt.subplots(2, 3, figsize=(9.0, 5.4))
    axes = axes.ravel()
    xs = np.arange(len(aggs))
    seeds = sorted({s for agg in aggs for s in agg["seeds"]})
    for ax, (name, title, scale) in zip(axes, PANELS):
        ax.plot(xs, [agg[name] * scale for agg in aggs], "-", color="0.6", lw=1, zorder=1)
        if name == "ms_per_image":  # one measurement per setting, not per seed
            ax.plot(xs, [agg[name] for agg in aggs], "o", ms=3.5, color="0.3", zorder=2)
            ax.set_xticks(xs, [value_label(key, agg[key]).replace(" (", "\n(") for agg in aggs],
                          fontsize=7)
            ax.set_title(title, fontsize=9)
            continue
        for j, seed in enumerate(seeds):
            offset = (j - (len(seeds) - 1) / 2) * 0.12
            pts = [(i, run) for i, agg in enumerate(aggs) for run in agg["runs"]
                   if run["seed"] == seed]
            ys = np.array([run[name] * scale for _, run in pts])
            px = np.array([i + offset for i, _ in pts])
            if pts and run_has_interval(pts[0][1], name):
                lo = np.array([run[f"{name}_lo"] * scale for _, run in pts])
                hi = np.array([run[f"{name}_hi"] * scale for _, run in pts])
                ax.errorbar(px, ys, yerr=[np.maximum(ys - lo, 0), np.maximum(hi - ys, 0)],
                            fmt="o", ms=3.5, capsize=2, label=f"seed {seed}", zorder=2)
            else:
                ax.plot(px, ys, "o", ms=3.5, label=f"seed {seed}", zorder=2)
        if name == "kl_to_uniform":
            ax.axhline(float(aggs[0]["kl_to_uniform_floor"]), color="0.4", ls=":", lw=1,
                       label="test images")
        ax.set_xticks(xs, [value_label(key, agg[key]).replace(" (", "\n(") for agg in aggs],
                      fontsize=7)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    plt.close(fig)  # shown once, where the page places it
    return fig


def run_has_interval(run: dict, name: str) -> bool:
    return isinstance(run.get(f"{name}_lo"), float) and isinstance(run.get(f"{name}_hi"), float)


def verdict(key: str, aggs: list[dict]) -> str:
    """What the factor's rows show, in one or two sentences computed from them."""
    best = min(aggs, key=lambda a: a["fid"])
    centre_agg = next(a for a in aggs if a[key] == cfg[key])
    seeds = (f"seeds from {best['fid_min']:.1f} to {best['fid_max']:.1f}"
             if len(best["seeds"]) > 1 else "one seed")
    text = (f"The lowest mean FID, {best['fid']:.1f} ({seeds}), is at "
            f"{value_label(key, best[key])}")
    if best is centre_agg:
        text += ", the centre recipe. "
    else:
        separated = not intervals_overlap(best, centre_agg, "fid")
        text += (f", against {centre_agg['fid']:.1f} at the centre: "
                 + ("the intervals do not overlap. " if separated else
                    "the intervals overlap, so the data do not separate the two. "))
    most = max(aggs, key=lambda a: a["recall"])
    if most["recall"] >= 0.01:
        text += f"Recall is highest, {most['recall']:.3f}, at {value_label(key, most[key])}. "
    else:
        text += ("Recall is below 0.01 at every setting: after so few steps no sample set yet "
                 "reaches the spread of the data under the nearest-neighbour test, so coverage "
                 "and the class histogram are the diversity measures that move. ")
    widest = max(aggs, key=lambda a: a["coverage"])
    flattest = min(aggs, key=lambda a: a["kl_to_uniform"])
    text += (f"Coverage is highest at {value_label(key, widest[key])} "
             f"({widest['coverage']:.3f}), and the class histogram is closest to uniform at "
             f"{value_label(key, flattest[key])} (KL {flattest['kl_to_uniform']:.2f} nats, "
             f"against a floor of {flattest['kl_to_uniform_floor']:.3f} for test images).")
    return text


def command(key: str, aggs: list[dict]) -> str:
    values = " ".join(json.dumps(a[key]).replace(" ", "") for a in aggs)
    seeds = " ".join(str(s) for s in cfg["hp_seeds"])
    return (f"python -m ddgan_core sweep ddgan_sweep_point --profile {cfg['profile']} \\\n"
            f"    -p {key} {values} -p seed {seeds}")


factors = {key: factor_rows(key, values_key) for key, values_key in HYPERPARAMETER_FACTORS}
glue("width_values", " and ".join(f"{a['ddgan_channels'][0] / cfg['ddpm_channels'][0]:g}×"
                                   for a in factors["ddgan_channels"]), display=False)
SHORT = {"ddgan_timesteps": "timesteps", "ddgan_nz": "nz", "ddgan_r1_gamma": "gamma",
         "ddgan_d_steps": "dsteps", "ddgan_channels": "channels"}  # figure names
for key, aggs in factors.items():
    glue(f"fig_{SHORT[key]}", factor_figure(key, aggs), display=False)


def show(key: str) -> None:
    """The factor's table, then the command that computes (or reads) its points."""
    display(Markdown(factor_table(key, factors[key])))
    display(Markdown(f"Mean over seeds; under FID and recall, the union of the seeds' 95% "
                     f"bootstrap intervals. In brackets after a setting: the generator's "
                     f"parameters, where the factor changes them. "
                     f"Classes: classes covered, the range over seeds; "
                     f"class KL: KL to uniform in nats; ms / image and s / step: sampling "
                     f"and training time from the harness; D gap: the median logit gap. The same "
                     f"points from the command line:\n\n```bash\n{command(key, factors[key])}"
                     f"\n```\n\n{verdict(key, factors[key])}"))

# %% [markdown]
# ## The number of denoising steps $T$
#
# $T$ sets both the speed and the difficulty of each step. Sampling costs $T$ generator calls,
# so the time per image grows linearly with $T$. A smaller $T$ means larger steps, whose true
# kernels are further from Gaussian but which an implicit generator can still represent. At
# $T = 1$ the model is a plain conditional GAN that maps pure noise to an image in one call:
# the paper's own baseline, and the limit where the diffusion adds nothing.
#
# ```{glue:figure} fig_timesteps
# :name: fig-hp-timesteps
#
# The number of denoising steps $T$. Each dot is one seed, with its 95% bootstrap interval
# over the samples; the grey line joins the means over seeds. The dotted line in the class
# panel is the same statistic for real test images.
# ```

# %% tags=["hide-input"]
show("ddgan_timesteps")

# %% [markdown]
# ## The latent $z$
#
# The latent is what makes the kernel multimodal. Without it ($n_z = 0$) the generator is a
# deterministic function of $x_t$. The kernel
# $q(x_{t-1} \mid x_t, x_0 = G(x_t, t))$ is then a single Gaussian, as in DDPM, but with DDGAN's
# large steps. Its network also loses the mapping network and the adaptive group norms, so it
# has fewer parameters. Any $n_z \geq 1$ lets $p_\theta(x_0 \mid x_t)$ spread over several
# images.
#
# ```{glue:figure} fig_nz
# :name: fig-hp-nz
#
# The size of the latent, $n_z$; "no z" is the deterministic generator. Dots, intervals and
# lines as in {numref}`fig-hp-timesteps`.
# ```

# %% tags=["hide-input"]
show("ddgan_nz")

# %% [markdown]
# ## The R1 penalty
#
# R1 {cite:p}`mescheder2018r1` penalises the discriminator's gradient on real pairs, which keeps
# it smooth near the data. Too weak, and the discriminator can sharpen until its gradients stop
# guiding the generator. Too strong, and it flattens until it cannot tell real from fake. The
# weights below span a factor of 100, plus no penalty at all. They all use the convention of
# the centre recipe and of the DDGAN code: $\gamma/2$ on every
# {glue:text}`centre_lazy`-th discriminator update.
#
# ```{glue:figure} fig_gamma
# :name: fig-hp-r1
#
# The R1 weight $\gamma$ (convention `ddgan`); "no R1" trains without the penalty. Dots,
# intervals and lines as in {numref}`fig-hp-timesteps`.
# ```

# %% tags=["hide-input"]
show("ddgan_r1_gamma")

# %% [markdown]
# ## The balance of discriminator and generator
#
# The previous chapter found a discriminator that often sits near chance. More discriminator
# updates per generator update let it pull ahead, at the price of time per step.
#
# ```{glue:figure} fig_dsteps
# :name: fig-hp-dsteps
#
# Discriminator updates per generator update. Dots, intervals and lines as in
# {numref}`fig-hp-timesteps`. More updates per step lengthen each training step, not
# sampling: the time per image is the generator's alone.
# ```

# %% tags=["hide-input"]
show("ddgan_d_steps")

# %% [markdown]
# ## The generator's width
#
# The generator's channels as a multiple of chapter 3's UNet's: the widths of
# {glue:text}`width_values`. The discriminator is the same at every width. A wider generator
# costs more per image and more per training step; in a short run it also has more parameters
# to fit in the same number of steps.
#
# ```{glue:figure} fig_channels
# :name: fig-hp-width
#
# The generator's channels per resolution, and their ratio to the DDPM UNet's. Dots,
# intervals and lines as in {numref}`fig-hp-timesteps`.
# ```

# %% tags=["hide-input"]
show("ddgan_channels")

# %% [markdown]
# ## What the samples look like
#
# ```{glue:figure} fig_hp_samples
# :name: fig-hp-samples
#
# The first 64 evaluation samples of seed {glue:text}`samples_seed` at each number of steps
# (top) and each latent size (bottom), at the same scale.
# ```

# %% tags=["hide-input"]
def sample_grid(key: str, value):
    """The sample grid PNG of the point (key = value, first seed) as an array in [0, 1]."""
    from PIL import Image

    point = {**cfg, key: value, "seed": cfg["hp_seeds"][0]}
    result = next(r for r in runs if all(r.config[k] == point[k]
                                         for k, _ in HYPERPARAMETER_FACTORS)
                  and r.config["seed"] == point["seed"])
    with Image.open(result.file("samples.png")) as image:
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


shown = [("ddgan_timesteps", [a["ddgan_timesteps"] for a in factors["ddgan_timesteps"]]),
         ("ddgan_nz", [a["ddgan_nz"] for a in factors["ddgan_nz"]])]
columns = max(len(values) for _, values in shown)
fig, axes = plt.subplots(len(shown), columns, figsize=(2.3 * columns, 2.55 * len(shown)),
                         squeeze=False)
for row, (key, values) in zip(axes, shown):
    for ax, value in zip(row, values):
        ax.imshow(sample_grid(key, value), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(value_label(key, value), fontsize=9)
    for ax in row:
        ax.set_axis_off()
fig.tight_layout()
glue("fig_hp_samples", figure_png(fig), display=False)  # figure_png closes the figure
glue("samples_seed", int(cfg["hp_seeds"][0]), display=False)

# %% [markdown]
# ## Against the DDGAN paper's ablations on CIFAR-10
#
# {cite:t}`xiao2022ddgan` ablate the number of steps and the latent on CIFAR-10 (their Table 3;
# FID on 50,000 samples, Inception features, after full training, with $T = 4$ as the
# reference). The table puts their numbers beside this chapter's. The absolute values cannot be
# compared: another data set, another extractor, and a few minutes of training against days.
# What can be compared is the direction: does the change make the model better or worse than
# $T = 4$ with a latent, and is the difference resolved here?

# %% tags=["hide-input"]
#: Xiao et al. (2022), Table 3, CIFAR-10: FID and recall (None where the paper gives none).
PAPER = {("ddgan_timesteps", 1): (14.6, 0.19), ("ddgan_timesteps", 2): (4.08, None),
         ("ddgan_timesteps", 4): (3.75, 0.57), ("ddgan_timesteps", 8): (4.36, 0.56),
         ("ddgan_nz", 0): (20.6, 0.42)}
reference = next((a for a in factors["ddgan_timesteps"] if a["ddgan_timesteps"] == 4), None)
lines = ["| setting | CIFAR-10 FID | CIFAR-10 recall | FashionMNIST FID | FashionMNIST recall "
         "| direction against T = 4 |", "|---|---:|---:|---:|---:|---|"]
agreements = []
for (key, value), (fid, recall) in PAPER.items():
    ours = next((a for a in factors[key] if a[key] == value), None)
    label = "no latent z (T = 4)" if key == "ddgan_nz" else value_label(key, value)
    paper_cells = f"{fid:.2f} | {'' if recall is None else f'{recall:.2f}'}"
    if ours is None or reference is None:
        lines.append(f"| {label} | {paper_cells} | not run | | |")
        continue
    if ours is reference:
        lines.append(f"| {label} | {paper_cells} | {interval_cell(ours, 'fid', '.1f')} "
                     f"| {ours['recall']:.3f} | the reference |")
        continue
    paper_worse = fid > PAPER[("ddgan_timesteps", 4)][0]
    if intervals_overlap(ours, reference, "fid"):
        direction = "not resolved (intervals overlap)"
    else:
        ours_worse = ours["fid"] > reference["fid"]
        direction = ("worse, as on CIFAR-10" if ours_worse and paper_worse else
                     "better, unlike CIFAR-10" if paper_worse else
                     "worse, unlike CIFAR-10" if ours_worse else "better, as on CIFAR-10")
    agreements.append((label, direction))
    lines.append(f"| {label} | {paper_cells} | {interval_cell(ours, 'fid', '.1f')} "
                 f"| {ours['recall']:.3f} | {direction} |")
# the paper's third ablation, the generator's parameterisation, is not a factor of this grid
for label, fid in (("G predicts $x_{t-1}$ directly", 6.03), ("G predicts the noise", 8.04)):
    lines.append(f"| {label} | {fid:.2f} | | not run | | |")
display(Markdown("\n".join(lines)))
agree = [label for label, d in agreements if d.endswith("as on CIFAR-10")]
differ = [label for label, d in agreements if d.endswith("unlike CIFAR-10")]
open_ = [label for label, d in agreements if d.startswith("not resolved")]
parts = []
if agree:
    parts.append(f"The direction agrees with CIFAR-10 for {', '.join(agree)}")
if differ:
    parts.append(f"it is the opposite for {', '.join(differ)}")
if open_:
    parts.append(f"these runs do not resolve {', '.join(open_)}")
glue("paper_verdict", ("; ".join(parts) + ".") if parts else
     "This profile's grid has none of the paper's settings.", display=False)

# %% [markdown]
# FashionMNIST intervals: the union of the seeds' 95% bootstrap intervals, as above. The
# paper's third ablation, how the generator is parameterised (it predicts $x_0$ in DDGAN; the
# paper also tried $x_{t-1}$ directly and the noise), is not a factor of this grid: this
# project's generator predicts $x_0$ only. {glue:text}`paper_verdict`
#
# Three differences in setting bear on the comparison. First, these runs are short, so a
# setting that learns faster looks better here even if it would end worse. A single step
# ($T = 1$) or no latent asks less of the generator early on: one mapping instead of four, or a
# mean instead of a distribution. Second, FashionMNIST's images are simpler and its classes
# fewer than CIFAR-10's, so the true reverse kernels have fewer modes to cover. Third, the
# paper reports Inception features on 50,000 samples, and this chapter a FashionMNIST
# classifier on {glue:text}`hp_n:,d`, whose FID is biased upwards at small $n$ by an amount
# that is the same for every point.
#
# ## Recommended settings and what they cost
#
# For each factor, the value with the lowest mean FID in this grid, with its recall, its speed
# and its training time (seconds per step from the harness times the
# {glue:text}`sweep_steps:,d` steps of a run). Each was measured with the other factors at the
# centre. The combination of all of them was not trained here.

# %% tags=["hide-input"]
lines = ["| factor | best value | FID | recall | classes covered | ms / image "
         "| training min |", "|---|---|---:|---:|---:|---:|---:|"]
names = {"ddgan_timesteps": "steps $T$", "ddgan_nz": "latent size", "ddgan_r1_gamma": "R1 weight",
         "ddgan_d_steps": "D updates per G update", "ddgan_channels": "generator width"}
for key, aggs in factors.items():
    best = min(aggs, key=lambda a: a["fid"])
    lines.append(f"| {names[key]} | {value_label(key, best[key])} "
                 f"| {interval_cell(best, 'fid', '.1f')} | {best['recall']:.3f} "
                 f"| {best['classes_covered_min']:.0f}–{best['classes_covered_max']:.0f} "
                 f"| {best['ms_per_image']:.1f} "
                 f"| {best['s_per_step'] * cfg['sweep_steps'] / 60:.1f} |")
display(Markdown("\n".join(lines)))

# %% tags=["hide-input"]
# what this page cost (the box at the top)
spent = cost([*runs, speed])
ends = [dt.datetime.fromisoformat(r.manifest["date"]) for r in runs]
starts = [end - dt.timedelta(seconds=float(r.manifest["wall_time_s"]))
          for end, r in zip(ends, runs)]
glue("grid_runs", len(runs), display=False)
glue("speed_seconds", float(speed.manifest["wall_time_s"]), display=False)
glue("grid_source", spent["source"], display=False)
glue("grid_where", spent["where"], display=False)
glue("grid_device", spent["devices"], display=False)
glue("grid_cpu_min", float(cost(runs)["seconds"] / 60), display=False)
busy, last_end = 0.0, None  # wall time with at least one run computing (the runs' union)
for start, end in sorted(zip(starts, ends)):
    if last_end is None or start > last_end:
        busy += (end - start).total_seconds()
        last_end = end
    elif end > last_end:
        busy += (end - last_end).total_seconds()
        last_end = end
glue("grid_span_min", float(busy / 60), display=False)
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
