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
# # The DDPM baseline and FID against the number of reverse steps
#
# ````{admonition} Rerun this chapter
# :class: tip
#
# This page shows the {glue:text}`chapter_profile` profile (its parameters:
# `python -m ddgan_core profiles`). To execute it again, alone, with a profile key changed, or
# over a grid of values (every parameter of a chapter is a profile key; a value whose results
# are not in the cache is computed, on a GPU when there is one):
#
# ```bash
# python -m ddgan_core book --profile cpu --only 03_ddpm
# papermill notebooks/03_ddpm.ipynb out.ipynb \
#     -p profile cpu -p ddpm_grid_samples 200
# python -m ddgan_core sweep notebooks/03_ddpm \
#     -p ddpm_grid_samples 200 500 --profile cpu
# ```
#
# **Cost.** This page's results were {glue:text}`ddpm_source`: executing it took
# {glue:text}`chapter_seconds:.0f` s on {glue:text}`chapter_device`. Its numbers were computed
# {glue:text}`ddpm_where`: the model was trained on {glue:text}`ddpm_device` in
# {glue:text}`ddpm_train_wall_s:.0f` s, and the {glue:text}`fig1_points` points of
# {numref}`fig-fid-vs-steps` were sampled and evaluated on {glue:text}`fig1_device` in
# {glue:text}`fig1_wall_s:.0f` s. On the 2-core CPU, where the DDGAN chapter times this
# network, one network evaluation costs {glue:text}`cpu_ms_per_nfe:.1f` ms per image, so the
# grid's sampling alone ({glue:text}`fig1_image_nfe:,d` image-evaluations) takes about
# {glue:text}`fig1_cpu_hours:.1f` h there, before training. The
# {glue:text}`solver_points_n` points of {numref}`fig-solvers` (fast samplers) were sampled and
# evaluated on {glue:text}`solver_device` in {glue:text}`solver_wall_min:.0f` minutes of run
# time.
# ````
#
# Everything that follows is measured against this chapter's model: a denoising diffusion
# probabilistic model {cite:p}`ho2020ddpm` trained on FashionMNIST, sampled with fewer and
# fewer reverse steps. The seed paper's only figure, FID against the number of steps
# {cite:p}`okhotnikov_seed`, is reproduced here for two samplers: the ancestral sampler of DDPM on
# a respaced chain {cite:p}`nichol2021improved` and the deterministic DDIM sampler
# {cite:p}`song2021ddim`.

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
seed = None
ddpm_train_steps = None
ddpm_grid_samples = None

# %% tags=["hide-cell"]
import json
import time
import warnings

import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue
from tqdm import TqdmWarning

from ddgan_core.cache import ResultCache, repo_root
from ddgan_core.checkpoint import find_model_file
from ddgan_core.experiments import ddpm_fig1, ddpm_model, solver_grid
from ddgan_core.plotting import (
    cost,
    device_label,
    grid_image,
    machine_label,
    provenance,
    use_book_style,
)
from ddgan_core.profiles import get_profile, overrides_from

chapter_start = time.perf_counter()
cfg = get_profile(profile, **overrides_from(globals()))  # every profile key papermill passed
use_book_style()  # line plots as SVG; sample grids are glued as PNG at twice their size
glue("chapter_profile", cfg["profile"], display=False)

# %% [markdown]
# ## The model and its training
#
# The network $\varepsilon_\theta(x_t, t)$ is a UNet at resolutions 28, 14 and 7 with residual
# blocks, group normalisation, self-attention at 7x7 and a sinusoidal time embedding
# (`ddgan_core.nets.unet.UNet`). It is trained with the "simple" objective of
# {cite:t}`ho2020ddpm`, the unweighted form of the previous chapter's weighted MSE: draw $x_0$,
# $t$ uniform and $\varepsilon \sim \mathcal{N}(0, I)$, form
# $x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$ and regress
# $\varepsilon_\theta(x_t, t)$ on $\varepsilon$. AdamW with a short warm-up and cosine decay,
# gradient clipping and an exponential moving average (EMA) of the weights, which is what is
# sampled. The linear schedule has $T = 1000$ steps.

# %% tags=["hide-input"]
model_result = ddpm_model(cfg)
train = model_result.metrics
manifest = model_result.manifest
glue("ddpm_params", int(train["parameters"]), display=False)
glue("ddpm_params_millions", float(train["parameters"] / 1e6), display=False)
glue("ddpm_channels", "/".join(str(c) for c in cfg["ddpm_channels"]), display=False)
glue("ddpm_steps", int(train["train_steps"]), display=False)
glue("ddpm_batch", int(cfg["ddpm_batch_size"]), display=False)
glue("ddpm_images_seen", int(train["images_seen"]), display=False)
glue("ddpm_epochs", float(train["epochs"]), display=False)
glue("ddpm_train_minutes", float(train["train_seconds"] / 60), display=False)
glue("ddpm_train_rate", float(train["images_per_s"]), display=False)
glue("ddpm_device", device_label(manifest), display=False)
glue("ddpm_train_wall_s", float(manifest["wall_time_s"]), display=False)
glue("ddpm_final_loss", float(train["final_loss"]), display=False)
glue("ddpm_provenance", provenance(model_result), display=False)

# %% [markdown]
# With channel widths {glue:text}`ddpm_channels` the network has
# {glue:text}`ddpm_params_millions:.2f` M parameters. It saw {glue:text}`ddpm_images_seen:,d`
# training images ({glue:text}`ddpm_steps:,d` steps of {glue:text}`ddpm_batch`,
# {glue:text}`ddpm_epochs:.1f` epochs) in {glue:text}`ddpm_train_minutes:.1f` minutes at
# {glue:text}`ddpm_train_rate:.0f` images/s on {glue:text}`ddpm_device`. (Result cache:
# {glue:text}`ddpm_provenance`.)

# %% tags=["hide-input"]
history = train["history"]
fig, ax = plt.subplots(figsize=(6.4, 3.4))
steps = [h["step"] for h in history]
ax.plot(steps, [h["loss"] for h in history])
ax.set_yscale("log")
ax.set_xlabel("training step")
ax.set_ylabel(r"$\|\varepsilon - \varepsilon_\theta(x_t, t)\|^2$ (mean per pixel)")
fig.tight_layout()
glue("fig_ddpm_training", fig, display=False)
plt.close(fig)
# the 8 x 8 grid the cache stored, at twice its size: each 28-pixel image 56 px wide
glue("fig_ddpm_samples", grid_image(model_result.file("samples.png"), scale=2), display=False)

# %% [markdown]
# ```{glue:figure} fig_ddpm_training
# :name: fig-ddpm-training
#
# The training loss (averaged between log points).
# ```
#
# ```{glue:figure} fig_ddpm_samples
# :name: fig-ddpm-samples
#
# 64 samples of the EMA model with 100 ancestral steps, shown at twice their size.
# ```
#
# ## FID against the number of reverse steps
#
# A trained $\varepsilon_\theta$ serves any subset of the $T$ timesteps: keeping $K$ of them,
# evenly spaced and always including the first and the last, and recomputing
# $\beta_i = 1 - \bar\alpha_{s_i} / \bar\alpha_{s_{i-1}}$ gives a shorter chain with the same
# marginals $q(x_{s_i} \mid x_0)$ {cite:p}`nichol2021improved`. Each sampler then costs $K$
# network evaluations (NFE) per image:
#
# - **ancestral**: $x_{s_{i-1}} \sim \mathcal{N}(\tilde\mu(x_{s_i}, \hat x_0), \tilde\beta_i I)$,
#   the Gaussian reverse kernel with the posterior variance of the respaced chain;
# - **DDIM** ($\eta = 0$): the deterministic update of {cite:t}`song2021ddim`, which follows the
#   same marginals without injecting noise.
#
# Quality is measured by FID on the penultimate features of a FashionMNIST classifier
# (`ddgan_core.metrics`) rather than of Inception, so that the book can be rebuilt offline
# without fetching Inception's weights, and on grey 28x28 images whose features Inception was
# not trained for. KID, precision and recall stand beside it. The *floor* is the same FID computed for held-out test images:
# no generator can be expected to score below it at this sample count.

# %% tags=["hide-input"]
points = ddpm_fig1(cfg)
rows = []
for result in points:
    m = result.metrics
    rows.append({
        "sampler": result.config["sampler"], "K": result.config["steps"], "nfe": m["nfe"],
        "fid": m["fid"], "kid": m["kid"], "precision": m["precision"], "recall": m["recall"],
        "density": m["density"], "coverage": m["coverage"], "floor": m["fid_floor"],
        "n": m["n_samples"], "spi": m["seconds_per_image"], "date": result.manifest["date"],
    })
n_eval = rows[0]["n"]
floor = rows[0]["floor"]
by = {(r["sampler"], r["K"]): r for r in rows}
glue("fig1_n", int(n_eval), display=False)
glue("fig1_floor", float(floor), display=False)
fig1_cost = cost(points)
glue("fig1_device", fig1_cost["devices"], display=False)
glue("fig1_wall_s", float(fig1_cost["seconds"]), display=False)
glue("fig1_points", len(points), display=False)
# the first point computed also timed the device's start-up (no warm-up before it): it is left
# out of the timing plot and marked in the table
cold = min(rows, key=lambda r: r["date"])
warm_k1 = [r for r in rows if r["K"] == cold["K"] and r is not cold]
glue("cold_sampler", cold["sampler"], display=False)
glue("cold_k", int(cold["K"]), display=False)
glue("cold_ms", float(cold["spi"] * 1e3), display=False)
glue("warm_k1_ms", float(warm_k1[0]["spi"] * 1e3) if warm_k1 else float("nan"),
     display=False)
grid = sorted({r["K"] for r in rows})
for sampler in ("ancestral", "ddim"):
    for k in (10, 100, 1000):
        point = by.get((sampler, k))
        if point:  # the number, for sweeps; only where K is in this profile's grid
            glue(f"fid_{sampler}_{k}", float(point["fid"]), display=False)
        # the prose's text: the number, or why there is none
        glue(f"fid_{sampler}_{k}_text",
             f"{point['fid']:.2f}" if point else f"n/a (K={k} is not in this profile's grid)",
             display=False)
best = min(rows, key=lambda r: r["fid"])
glue("fid_best", float(best["fid"]), display=False)
glue("fid_best_sampler", best["sampler"], display=False)
glue("fid_best_k", int(best["K"]), display=False)
glue("fid_k1", float(by[("ancestral", grid[0])]["fid"]), display=False)
for sampler in ("ancestral", "ddim"):
    own = [r for r in rows if r["sampler"] == sampler]
    own_best = min(r["fid"] for r in own)
    within = [r["K"] for r in own if r["fid"] <= 1.1 * own_best]
    glue(f"best_{sampler}", float(own_best), display=False)
    glue(f"k_within10_{sampler}", int(min(within)), display=False)
ddim_better = [k for k in grid if by[("ddim", k)]["fid"] < by[("ancestral", k)]["fid"]]
anc_better = [k for k in grid if by[("ancestral", k)]["fid"] < by[("ddim", k)]["fid"]]
glue("ddim_better_ks", ", ".join(map(str, ddim_better)) or "none", display=False)
glue("anc_better_ks", ", ".join(map(str, anc_better)) or "none", display=False)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
for sampler, marker in (("ancestral", "o-"), ("ddim", "s-")):
    sel = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["K"])
    axes[0].plot([r["K"] for r in sel], [r["fid"] for r in sel], marker, label=sampler)
    timed = [r for r in sel if r is not cold]  # the cold first point is left out
    axes[1].plot([r["K"] for r in timed], [r["spi"] * 1e3 for r in timed], marker,
                 label=sampler)
axes[0].axhline(floor, color="grey", ls="--", lw=1, label=f"floor (test images, n={n_eval})")
axes[0].set_xscale("log")
axes[0].set_yscale("log")
axes[0].set_xlabel("reverse steps K (= NFE)")
axes[0].set_ylabel("FID (FashionMNIST-classifier features)")
axes[0].legend(frameon=False, fontsize=8)
axes[1].set_xscale("log")
axes[1].set_yscale("log")
axes[1].set_xlabel("reverse steps K (= NFE)")
axes[1].set_ylabel("ms per image")
axes[1].legend(frameon=False, fontsize=8)
fig.tight_layout()
glue("fig_fid_vs_steps", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_fid_vs_steps
# :name: fig-fid-vs-steps
#
# The seed's Fig. 1, reproduced. Left: FID of {glue:text}`fig1_n:,d` samples against the number of
# reverse steps for both samplers; the dashed line is the real-data floor at the same sample
# count. Right: sampling time per image on {glue:text}`fig1_device`, measured once while
# sampling each evaluation set, without a separate warm-up. The first point computed
# ({glue:text}`cold_sampler`, K = {glue:text}`cold_k`) is left out: its
# {glue:text}`cold_ms:.2f` ms per image include the device's start-up, against
# {glue:text}`warm_k1_ms:.2f` ms for the other sampler at the same K, which costs the same
# network evaluations.
# ```
#
# FID falls steeply with the number of steps, as in the seed. With one step the model can only
# output its estimate of $\mathbb{E}[x_0 \mid x_T]$, a blur (FID {glue:text}`fid_k1:.1f`). At
# K = 10 the ancestral sampler reaches FID {glue:text}`fid_ancestral_10_text` and DDIM
# {glue:text}`fid_ddim_10_text`; at K = 100, {glue:text}`fid_ancestral_100_text` and
# {glue:text}`fid_ddim_100_text`; with all 1000 steps, {glue:text}`fid_ancestral_1000_text` and
# {glue:text}`fid_ddim_1000_text`. The best value, {glue:text}`fid_best:.2f`, comes from
# {glue:text}`fid_best_sampler` with K = {glue:text}`fid_best_k`; the floor is
# {glue:text}`fig1_floor:.2f`.
#
# The two samplers trade places. DDIM has the lower FID at K = {glue:text}`ddim_better_ks`:
# with few, large steps a Gaussian kernel with the posterior variance adds noise the model
# cannot correct, while the deterministic update does not have to represent the kernel's spread
# at all. The ancestral sampler is better at K = {glue:text}`anc_better_ks`: with many small
# steps its kernel is close to the truth, and its noise corrects errors made earlier in the
# chain. Each sampler is within 10 % of its own best FID (ancestral
# {glue:text}`best_ancestral:.2f`, DDIM {glue:text}`best_ddim:.2f`) from
# K = {glue:text}`k_within10_ancestral` and K = {glue:text}`k_within10_ddim` respectively.
# Either way, good samples still cost tens to hundreds of network evaluations per image, and
# the time per image grows linearly with K: the network evaluations are the whole cost. This is
# the cost Denoising Diffusion GAN attacks.
#
# The full table, with KID and the diversity metrics
# {cite:p}`kynkaanniemi2019precision,naeem2020density`:

# %% tags=["hide-input"]
lines = ["| sampler | K | FID | KID ×10³ | prec. | recall | dens. | cover. | ms |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in sorted(rows, key=lambda r: (r["sampler"], r["K"])):
    ms = f"{r['spi'] * 1e3:.2f}" + ("*" if r is cold else "")
    lines.append(
        f"| {r['sampler']} | {r['K']} | {r['fid']:.1f} | {r['kid'] * 1e3:.1f} | "
        f"{r['precision']:.2f} | {r['recall']:.2f} | {r['density']:.2f} | {r['coverage']:.2f} "
        f"| {ms} |"
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# K: reverse steps, equal to the NFE. KID ×10³: KID times 1000. prec., dens., cover.: precision,
# density, coverage. ms: sampling time per image in milliseconds on {glue:text}`fig1_device`;
# \* the first point computed, whose time includes the device's start-up.

# %% [markdown]
# ## Faster samplers for the same network
#
# Since DDGAN appeared, the usual way to sample a trained diffusion model in a few steps has
# been to keep $\varepsilon_\theta$ as it is and solve the probability-flow ODE of the chain
# with a higher-order method: DPM-Solver {cite:p}`lu2022dpmsolver` and its multistep
# data-prediction form DPM-Solver++ {cite:p}`lu2022dpmsolverpp` (second order, "2M", and third,
# "3M"), and the predictor-corrector UniPC {cite:p}`zhao2023unipc`. Each reuses the network
# evaluations of earlier steps, so one step still costs one NFE. They run here through
# diffusers' schedulers, given this model's own betas (`ddgan_core.solvers`).
#
# Which $K$ timesteps a sampler visits matters as much at small $K$. The respacing above
# (`linspace`) always keeps $t = 0$, so with $K = 2$ one of the two evaluations is spent on a
# step that only removes the last bit of noise. The `trailing` spacing
# {cite:p}`lin2024common` keeps $t = T-1$ and steps of $T/K$ below it, so every evaluation does
# a share of the work. Every sampler below is scored exactly as Fig. 1's points, on
# {glue:text}`solver_n:,d` samples of the same model. To draw from it with any of them, or to
# compute the whole grid (`MODEL` is this chapter's model file,
# {glue:text}`ddpm_model_file`):
#
# ```bash
# python -m ddgan_core sample --checkpoint $MODEL --sampler dpmsolver++ \
#     --spacing trailing --steps 10 --n 64 --out samples.npz
# python -m ddgan_core reproduce --profile cpu --only solver_grid
# ```

# %% tags=["hide-input"]
with warnings.catch_warnings():  # diffusers' progress bars want ipywidgets in a notebook
    warnings.simplefilter("ignore", TqdmWarning)
    solver_points = solver_grid(cfg)
model_file = find_model_file(model_result.path, "ddpm")
glue("ddpm_model_file", str(model_file.relative_to(repo_root())
                            if model_file.is_relative_to(repo_root()) else model_file),
     display=False)
solver_rows = [{"sampler": r.config["sampler"], "spacing": r.config.get("spacing", "linspace"),
                "K": r.config["steps"], "fid": r.metrics["fid"], "recall": r.metrics["recall"],
                "coverage": r.metrics["coverage"], "n": r.metrics["n_samples"]}
               for r in solver_points]
glue("solver_n", int(solver_rows[0]["n"]), display=False)
solver_cost = cost(solver_points)
glue("solver_points_n", len(solver_points), display=False)
glue("solver_device", solver_cost["devices"], display=False)
glue("solver_wall_min", float(solver_cost["seconds"] / 60), display=False)
pairs = list(dict.fromkeys((r["sampler"], r["spacing"]) for r in solver_rows))
solver_ks = sorted({r["K"] for r in solver_rows})
at = {(r["sampler"], r["spacing"], r["K"]): r for r in solver_rows}
STYLES = {"linspace": "--", "trailing": "-"}
fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.5))
for index, (sampler, spacing) in enumerate(pairs):
    sel = [at[(sampler, spacing, k)] for k in solver_ks if (sampler, spacing, k) in at]
    for ax, metric in zip(axes, ("fid", "recall")):
        ax.plot([r["K"] for r in sel], [r[metric] for r in sel], STYLES[spacing],
                marker="o", ms=3, color=f"C{index}", label=f"{sampler}, {spacing}")
axes[0].axhline(floor, color="grey", ls=":", lw=1, label="floor (test images)")
axes[0].set_yscale("log")
axes[0].set_ylabel("FID (FashionMNIST-classifier features)")
axes[1].set_ylabel("recall")
for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("NFE per image (K)")
axes[0].legend(frameon=False, fontsize=7)
fig.tight_layout()
glue("fig_solvers", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_solvers
# :name: fig-solvers
#
# FID (left) and recall (right) of every sampler against its network evaluations per image,
# {glue:text}`solver_n:,d` samples each; dashed: the `linspace` spacing of Fig. 1, solid:
# `trailing`. The dotted line is the test-image floor.
# ```

# %% tags=["hide-input"]
def solver_table() -> str:
    """The best sampler at each K, against DDIM with Fig. 1's spacing."""
    lines = ["| K | best sampler (all within 0.05 FID of the best) | FID | recall "
             "| DDIM, linspace | DDIM, trailing |", "|---:|---|---:|---:|---:|---:|"]
    for k in solver_ks:
        here = [r for r in solver_rows if r["K"] == k]
        best = min(here, key=lambda r: r["fid"])
        tied = [r for r in here if r["fid"] - best["fid"] < 0.05]
        cells = [f"{at[('ddim', sp, k)]['fid']:.1f}" if ("ddim", sp, k) in at else "–"
                 for sp in ("linspace", "trailing")]
        names = "; ".join(f"{r['sampler']}, {r['spacing']}" for r in tied)
        lines.append(f"| {k} | {names} | {best['fid']:.1f} "
                     f"| {best['recall']:.3f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def solver_verdict() -> str:
    """Sentences computed from the grid: spacing at K = 2, and the solvers at 10 NFE."""
    parts = []
    for sampler in ("ddim", "ancestral"):
        lin, trail = at.get((sampler, "linspace", 2)), at.get((sampler, "trailing", 2))
        if lin and trail:
            parts.append(f"At K = 2, {sampler} scores FID {lin['fid']:.1f} with `linspace` and "
                         f"{trail['fid']:.1f} with `trailing`.")
    for k in (5, 10, 20):
        here = [r for r in solver_rows if r["K"] == k]
        ddim = at.get(("ddim", "trailing", k))
        if here and ddim:
            best = min(here, key=lambda r: r["fid"])
            parts.append(f"At {k} NFE the lowest FID is {best['sampler']}'s "
                         f"({best['spacing']}), "
                         f"{best['fid']:.1f}, against {ddim['fid']:.1f} for DDIM with the same "
                         f"spacing.")
    return " ".join(parts)


display(Markdown(solver_table()))
if solver_verdict():  # empty when the profile's grid has none of the K it quotes
    display(Markdown(solver_verdict()))

# %% [markdown]
# One sample set per point: these FIDs carry the same sampling noise as Fig. 1's, and two
# values within about one FID unit of each other at this sample count are not told apart here.
# The solvers integrate an ODE whose exactness depends on $\varepsilon_\theta$ being the true
# score; on a model as small as this profile's the ranking can differ from published ones on
# larger models.

# %% [markdown]
# ## What this profile is
#
# Numbers in this chapter come from the result cache, computed with the
# {glue:text}`chapter_profile` profile {glue:text}`ddpm_where`. A profile fixes the sizes
# (networks, training images, sample counts), not the device: the `cpu` profile is small enough
# for a 2-core CPU, and the box at the top says which of this page's entries were computed
# where. The sizes of each
# profile are in `ddgan_core/profiles.py` (`python -m ddgan_core profiles`). FID values depend on the feature extractor and on the
# sample count, so they are comparable within this book, not with FIDs published for other
# extractors; the floor gives the scale.

# %% tags=["hide-input"]
# what this page and its results cost (shown in the box at the top). The CPU estimate uses the
# committed CPU timing of this network's architecture (the DDGAN chapter's speed comparison
# times a UNet of this profile's widths on the CPU), if any.
cache = ResultCache()
cpu_speed = None
for root in cache.read_roots:
    for config_file in sorted((root / "speed_comparison").glob("*/config.json")):
        config = json.loads(config_file.read_text())
        if config.get("profile") == cfg["profile"] and config.get("device") == "cpu":
            cpu_speed = cpu_speed or cache.load("speed_comparison", config)  # verified
everything = cost([model_result, *points, *solver_points])
glue("ddpm_where", everything["where"], display=False)
glue("ddpm_source", everything["source"], display=False)
image_nfe = sum(r["K"] * r["n"] for r in rows)
glue("fig1_image_nfe", int(image_nfe), display=False)
if cpu_speed is not None:
    longest = max((v for k, v in cpu_speed.metrics["timed"].items() if k != "ddgan"),
                  key=lambda v: v["nfe"])
    ms_per_nfe = 1e3 * longest["seconds_per_image"] / longest["nfe"]
else:  # no CPU timing committed: the box says "nan"
    ms_per_nfe = float("nan")
glue("cpu_ms_per_nfe", float(ms_per_nfe), display=False)
glue("fig1_cpu_hours", float(image_nfe * ms_per_nfe / 1e3 / 3600), display=False)
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
