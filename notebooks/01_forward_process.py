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
# # Data and the forward process
#
# ````{admonition} Rerun this chapter
# :class: tip
#
# This page shows the {glue:text}`chapter_profile` profile (its parameters:
# `python -m ddgan_core profiles`). To
# execute it again, alone, with a profile key changed, or over a grid of values (every
# parameter of a chapter is a profile key):
#
# ```bash
# python -m ddgan_core book --profile cpu --only 01_forward_process
# papermill notebooks/01_forward_process.ipynb out.ipynb \
#     -p profile cpu -p forward_timesteps 200
# python -m ddgan_core sweep notebooks/01_forward_process \
#     -p forward_timesteps 100 1000 --profile cpu
# ```
#
# **Cost.** The dataset statistics were {glue:text}`stats_source` (computing them took
# {glue:text}`stats_seconds:.1f` s on {glue:text}`stats_device`); the figures are drawn from the
# data each time. Executing this page took {glue:text}`chapter_seconds:.0f` s on
# {glue:text}`chapter_device`. Nothing here uses a GPU, and one would not make it faster.
# ````
#
# Every model in this book learns to undo one fixed process: the forward diffusion that turns a
# FashionMNIST image into Gaussian noise {cite:p}`sohldickstein2015deep,ho2020ddpm`. This chapter
# looks at the data, then at what the forward process does to it under the three noise schedules
# used later: the linear schedule of DDPM {cite:p}`ho2020ddpm`, the cosine schedule of
# {cite:t}`nichol2021improved`, and the short discrete variance-preserving (VP) schedule of
# Denoising Diffusion GAN {cite:p}`xiao2022ddgan`.

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
forward_timesteps = None
forward_vp_timesteps = None

# %% tags=["hide-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from myst_nb import glue

from ddgan_core.data import CLASS_NAMES, load_fashion_mnist
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule
from ddgan_core.experiments import dataset_statistics
from ddgan_core.plotting import (
    cost,
    device_label,
    figure_png,
    machine_label,
    provenance,
    show_grid,
    use_book_style,
)
from ddgan_core.profiles import get_profile, overrides_from

chapter_start = time.perf_counter()
cfg = get_profile(profile, **overrides_from(globals()))  # every profile key papermill passed
torch.manual_seed(cfg["seed"])
use_book_style()  # line plots as SVG; image grids are glued as high-resolution PNG
glue("chapter_profile", cfg["profile"], display=False)

# %% [markdown]
# ## FashionMNIST
#
# FashionMNIST {cite:p}`xiao2017fashionmnist` has 60,000 training and 10,000 test images of
# 28x28 grey pixels in ten classes of clothing. The library reads the official files offline and
# checks their MD5 sums; the statistics below are computed from them and stored in the result
# cache.

# %% tags=["hide-input"]
stats = dataset_statistics(cfg)
train_stats, test_stats = stats.metrics["train"], stats.metrics["test"]
glue("n_train", int(train_stats["n_images"]), display=False)
glue("n_test", int(test_stats["n_images"]), display=False)
glue("pixel_mean", float(train_stats["pixel_mean"]), display=False)
glue("pixel_std", float(train_stats["pixel_std"]), display=False)
for split, split_stats in (("train", train_stats), ("test", test_stats)):
    counts = set(split_stats["class_counts"])  # the official splits are exactly balanced
    assert len(counts) == 1, f"{split}: class counts {sorted(counts)} differ from the official"
    glue(f"{split}_per_class", int(counts.pop()), display=False)
glue("stats_provenance", provenance(stats), display=False)
glue("stats_seconds", float(stats.manifest["wall_time_s"]), display=False)
glue("stats_device", device_label(stats.manifest), display=False)
glue("stats_source", cost([stats])["source"], display=False)

# %% [markdown]
# The training split holds {glue:text}`n_train:,d` images and the test split
# {glue:text}`n_test:,d`. Its classes are balanced: {glue:text}`train_per_class:,d` training and
# {glue:text}`test_per_class:,d` test images per class. Pixel
# intensities in [0, 1] have mean {glue:text}`pixel_mean:.4f` and standard deviation
# {glue:text}`pixel_std:.4f`: most of each image is black background. The models see pixels
# rescaled to [-1, 1]. (Statistics from the result cache:
# {glue:text}`stats_provenance`.)

# %% tags=["hide-input"]
images, labels = load_fashion_mnist("train")
per_class = cfg["forward_examples"]
generator = torch.Generator().manual_seed(cfg["seed"])
rows = []
for c in range(10):
    index = torch.nonzero(labels == c).flatten()
    pick = index[torch.randperm(len(index), generator=generator)[:per_class]]
    rows.append(images[pick])
fig, ax = plt.subplots(figsize=(per_class * 0.75 + 1.6, 7.5))
show_grid(torch.cat(rows), nrow=per_class, ax=ax)
for c, name in enumerate(CLASS_NAMES):
    ax.text(-4, 2 + 30 * c + 14, name, ha="right", va="center", fontsize=8)
fig.tight_layout()
glue("fig_classes", figure_png(fig), display=False)  # a sample grid: PNG at twice the dpi

# %% [markdown]
# ```{glue:figure} fig_classes
# :name: fig-classes
#
# Random training images, one row per class.
# ```
#
# ## The forward process
#
# The forward process adds Gaussian noise in $T$ steps with variances
# $\beta_1, \dots, \beta_T \in (0, 1)$ {cite:p}`ho2020ddpm`:
#
# ```{math}
# :label: eq-forward-step
# q(x_t \mid x_{t-1}) = \mathcal{N}\!\left(x_t;\ \sqrt{1-\beta_t}\, x_{t-1},\ \beta_t I\right).
# ```
#
# With $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$, a product of
# Gaussian steps is Gaussian, so any $x_t$ can be drawn from $x_0$ in one step:
#
# ```{math}
# :label: eq-forward-marginal
# q(x_t \mid x_0) = \mathcal{N}\!\left(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1-\bar\alpha_t) I\right),
# \qquad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\, \varepsilon,\quad
# \varepsilon \sim \mathcal{N}(0, I).
# ```
#
# The library's `GaussianDiffusion.q_sample` implements {eq}`eq-forward-marginal` and
# `q_step` implements {eq}`eq-forward-step`; a unit test checks that $t$ applications of the
# second match the first in mean and variance. (In code, steps are numbered from 0, as in
# improved-diffusion and diffusers: code step `t` is the paper's step $t+1$.)
#
# How fast the signal fades is read off the signal-to-noise ratio
#
# ```{math}
# :label: eq-snr
# \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}.
# ```
#
# ## Three schedules
#
# - **Linear** {cite:p}`ho2020ddpm`: $\beta_t$ grows linearly from $10^{-4}$ to $0.02$ over
#   $T = 1000$ steps (both ends scaled by $1000/T$ for other $T$).
# - **Cosine** {cite:p}`nichol2021improved`: $\bar\alpha_t = f(t)/f(0)$ with
#   $f(t) = \cos^2\!\big(\tfrac{t/T + s}{1+s}\tfrac{\pi}{2}\big)$, $s = 0.008$, and $\beta_t$
#   capped at 0.999. It destroys information more evenly over $t$.
# - **Discrete VP** {cite:p}`xiao2022ddgan`: the continuous VP SDE's marginal variance
#   $\sigma^2(\tau) = 1 - e^{-\tau^2(\beta_{\max}-\beta_{\min})/2 - \tau\beta_{\min}}$
#   ($\beta_{\min} = 0.1$, $\beta_{\max} = 20$) read off at $T+1$ equally spaced times
#   $\tau_i = \tfrac{i}{T}(1-10^{-3}) + 10^{-3}$. Denoising Diffusion GAN uses it with as few as
#   $T = 4$ steps, each of which removes a large share of the noise.

# %% tags=["hide-input"]
T = cfg["forward_timesteps"]
T_vp = cfg["forward_vp_timesteps"]
schedules = {
    f"linear (T={T})": GaussianDiffusion(make_beta_schedule("linear", T)),
    f"cosine (T={T})": GaussianDiffusion(make_beta_schedule("cosine", T)),
    f"VP (T={T_vp})": GaussianDiffusion(make_beta_schedule("vp", T_vp)),
}
vp = schedules[f"VP (T={T_vp})"]
glue("T", int(T), display=False)
glue("T_vp", int(T_vp), display=False)
glue("vp_betas", ", ".join(f"{b:.3f}" for b in vp.betas), display=False)
glue("vp_abar_T", float(vp.alphas_cumprod[-1]), display=False)
for label, key in (("linear", f"linear (T={T})"), ("cosine", f"cosine (T={T})")):
    d = schedules[key]
    snr = d.alphas_cumprod / (1 - d.alphas_cumprod)
    glue(f"{label}_abar_T", float(d.alphas_cumprod[-1]), display=False)
    glue(f"{label}_snr1_frac", float((np.argmax(snr < 1) + 1) / T), display=False)
    glue(f"{label}_frac_snr_below_001", float(np.mean(snr < 1e-2)), display=False)

# %% [markdown]
# With $T = $ {glue:text}`T_vp` the VP schedule has $\beta = $ ({glue:text}`vp_betas`): the first
# step already removes about half of the signal's variance. At the last step
# $\bar\alpha_T = $ {glue:text}`vp_abar_T:.1e` for VP, {glue:text}`linear_abar_T:.1e` for linear
# and {glue:text}`cosine_abar_T:.1e` for cosine (with $T = $ {glue:text}`T`), so $x_T$ is standard
# normal to a very good approximation in all three.

# %% tags=["hide-input"]
x0 = images[torch.randperm(len(images), generator=generator)[: cfg["forward_examples"]]]
noise = torch.randn(x0.shape, generator=generator)
fractions = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
columns_shown = {}
fig, axes = plt.subplots(3, 1, figsize=(len(fractions) * 1.1 + 1, 3 * (len(x0) * 0.55 + 0.6)))
for ax, (name, diffusion) in zip(axes, schedules.items()):
    steps = sorted({min(diffusion.num_timesteps - 1, round(f * diffusion.num_timesteps))
                    for f in fractions})
    columns_shown[name] = len(steps)
    columns = [x0]
    for step in steps:
        t = torch.full((len(x0),), step, dtype=torch.long)
        columns.append(diffusion.q_sample(x0, t, noise))
    grid = torch.stack(columns, dim=1).reshape(-1, 1, 28, 28)
    show_grid(grid, nrow=len(columns), ax=ax)
    ax.set_title(name, fontsize=10)
    ticks = ["$x_0$"] + [f"t={s + 1}" for s in steps]
    for j, tick in enumerate(ticks):
        ax.text(2 + 30 * j + 14, 30 * len(x0) + 12, tick, ha="center", va="top", fontsize=7)
fig.tight_layout()
glue("fig_noising", figure_png(fig), display=False)
glue("vp_noising_columns", int(columns_shown[f"VP (T={T_vp})"]), display=False)

# %% [markdown]
# ```{glue:figure} fig_noising
# :name: fig-noising
#
# Samples of $q(x_t \mid x_0)$ {eq}`eq-forward-marginal` for the same images and the same noise
# $\varepsilon$ under each schedule; the step $t$ (paper numbering, $t = 1..T$) is printed under
# every column. Linear and cosine ($T = $ {glue:text}`T`): the clean image, then $x_t$ at about
# 0, 10, 25, 50, 75 and 100 % of the chain. VP ($T = $ {glue:text}`T_vp`): the chain is too
# short for those fractions, so its panel shows the clean image and its
# {glue:text}`vp_noising_columns` distinct steps.
# ```
#
# The linear schedule has erased most of the image by a quarter of its chain: its SNR drops
# below 1 at {glue:text}`linear_snr1_frac:.2f` of the chain, against
# {glue:text}`cosine_snr1_frac:.2f` for the cosine schedule, and a share
# {glue:text}`linear_frac_snr_below_001:.2f` of its steps (vs
# {glue:text}`cosine_frac_snr_below_001:.2f` for cosine) operate at SNR below 0.01, where little of
# the image is left to denoise.

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.4, 3.6))
for name, diffusion in schedules.items():
    steps = np.unique(np.linspace(0, diffusion.num_timesteps - 1,
                                  min(cfg["forward_snr_points"], diffusion.num_timesteps))
                      .round().astype(int))
    abar = diffusion.alphas_cumprod[steps]
    marker = "o-" if diffusion.num_timesteps < 20 else "-"
    ax.semilogy((steps + 1) / diffusion.num_timesteps, abar / (1 - abar), marker, label=name)
ax.axhline(1.0, color="grey", lw=0.8, ls="--")
ax.set_xlabel("t / T")
ax.set_ylabel(r"SNR$(t) = \bar\alpha_t / (1 - \bar\alpha_t)$")
ax.legend(frameon=False)
fig.tight_layout()
glue("fig_snr", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_snr
# :name: fig-snr
#
# Signal-to-noise ratio {eq}`eq-snr` against the fraction of the chain, log scale. The dashed
# line marks SNR = 1.
# ```
#
# A reverse process has to climb back up this curve. DDPM does it in many small steps, each a
# Gaussian; Denoising Diffusion GAN does it in the four large steps of the VP schedule, and the
# next chapters show why a Gaussian reverse step cannot be that large.

# %% tags=["hide-input"]
# what executing this page cost (shown in the box at the top)
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
