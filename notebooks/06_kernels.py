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
# # Other multimodal reverse kernels and other divergences
#
# ````{admonition} Rerun this chapter
# :class: tip
#
# This page shows the {glue:text}`chapter_profile` profile. Every toy method is one cached
# run of `toy_kernel_run` per mixture and seed (about a minute each on one CPU thread); every
# FashionMNIST method one `ddgan_sweep_point` or `image_kernel_point` per seed (2 to 10
# minutes each). Missing runs are computed when the page is executed:
#
# ```bash
# python -m ddgan_core book --profile cpu --only 06_kernels
# papermill notebooks/06_kernels.ipynb out.ipynb -p profile cpu -p toy_study_steps 2000
# python -m ddgan_core sweep notebooks/06_kernels \
#     -p toy_study_steps 500 1000 2000 --profile cpu
# python -m ddgan_core reproduce --profile cpu --only toy_kernel_study \
#     --only kernel_image_study --only kernel_speed
# ```
#
# **Cost.** The {glue:text}`toy_runs` toy runs were {glue:text}`toy_source`, computed
# {glue:text}`toy_where` in {glue:text}`toy_cpu_min:.0f` minutes of run time in all; the
# {glue:text}`img_runs` FashionMNIST runs and their timing were {glue:text}`img_source`,
# computed {glue:text}`img_where` in {glue:text}`img_cpu_min:.0f` minutes.
# Executing this page took {glue:text}`chapter_seconds:.0f` s on {glue:text}`chapter_device`.
# ````
#
# DDGAN makes the reverse kernel multimodal with a latent variable and fits it with an
# adversarial divergence. The seed's programme ends with two questions about that choice:
# would another divergence fit the kernel as well, and would another kind of multimodal kernel,
# one that is not adversarial at all, do as well? This chapter answers both twice: first on
# 2-D toys, where the data density and every true reverse kernel are known in closed form, then
# on FashionMNIST at the hyper-parameter chapter's budget. Every method gets the same forward
# process, the same number of steps $T$, the same number of training updates and the same
# evaluation.

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
toy_study_steps = None
toy_study_T = None
toy_study_seeds = None
sweep_steps = None            # FashionMNIST: steps of every run (chapter 5's sweep budget)
hp_seeds = None
kernel_study_losses = None
image_kernel_components = None

# %% tags=["hide-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from ddgan_core import toy
from ddgan_core.cache import ResultCache
from ddgan_core.ddgan import make_ddgan_diffusion
from ddgan_core.experiments import (
    kernel_image_study,
    kernel_speed,
    sweep_point_summary,
    toy_kernel_study,
)
from ddgan_core.plotting import cost, figure_png, machine_label, use_book_style
from ddgan_core.profiles import get_profile, overrides_from
from ddgan_core.sweep import aggregate_seeds, intervals_overlap
from ddgan_core.tables import interval_cell, range_cell
from ddgan_core.toy_kernels import TOY_METHODS, TOY_SETTINGS

chapter_start = time.perf_counter()
cfg = get_profile(profile, **overrides_from(globals()))  # every profile key papermill passed
use_book_style()
glue("chapter_profile", cfg["profile"], display=False)
runs = toy_kernel_study(cfg, ResultCache())  # every method, mixture and seed; cached
glue("toy_T", int(cfg["toy_study_T"]), display=False)
glue("toy_steps", int(cfg["toy_study_steps"]), display=False)
glue("toy_batch", int(TOY_SETTINGS["batch_size"]), display=False)
glue("toy_seeds", len(cfg["toy_study_seeds"]), display=False)
glue("toy_components", int(TOY_SETTINGS["mixture_components"]), display=False)
glue("toy_n", int(TOY_SETTINGS["n_eval"]), display=False)
glue("toy_points", int(TOY_SETTINGS["kernel_points"]), display=False)
glue("toy_draws", int(TOY_SETTINGS["kernel_draws"]), display=False)

# %% [markdown]
# ## Other divergences
#
# Chapter 4 fits every step's kernel by minimising an adversarial divergence between the true
# kernel $q(x_{t-1} \mid x_t)$ and the model's $p_\theta(x_{t-1} \mid x_t)$ (its
# {eq}`eq-ddgan-objective`). Which divergence is set by the losses of the discriminator (or
# critic) $D$ and the generator. With $v_r = D(x_{t-1}, x_t, t)$ on real pairs and $v_f$ on the
# generator's pairs, each loss averaged over its batch:
#
# | `ddgan_loss` | divergence | discriminator minimises | generator minimises | stabiliser |
# |---|---|---|---|---|
# | `ns` | Jensen-Shannon {cite:p}`goodfellow2014gan` | $\mathrm{softplus}(-v_r) + \mathrm{softplus}(v_f)$ | $\mathrm{softplus}(-v_f)$ | R1 |
# | `hinge` | hinge {cite:p}`lim2017geometric` | $\max(0, 1 - v_r) + \max(0, 1 + v_f)$ | $-v_f$ | R1 |
# | `lsgan` | least squares, Pearson $\chi^2$ {cite:p}`mao2017lsgan` | $\tfrac12 (v_r - 1)^2 + \tfrac12 v_f^2$ | $\tfrac12 (v_f - 1)^2$ | R1 |
# | `wgan-gp` | Wasserstein-1 {cite:p}`arjovsky2017wgan,gulrajani2017wgangp` | $v_f - v_r + 10\,\mathrm{GP} + 10^{-3} v_r^2$ | $-v_f$ | gradient penalty, drift |
# | `kl` | $\mathrm{KL}(q \,\Vert\, p_\theta)$, f-GAN {cite:p}`nowozin2016fgan` | $-v_r + e^{v_f - 1}$ | $-v_f$ | R1, clamped logits |
# | `reverse-kl` | $\mathrm{KL}(p_\theta \,\Vert\, q)$, f-GAN | $e^{-v_r} + v_f - 1$ | $e^{-v_f}$ | R1, clamped logits |
#
# The f-GAN losses are the variational bound $\mathbb{E}_q[g(v)] - \mathbb{E}_{p_\theta}
# [f^*(g(v))] \le D_f(q \,\Vert\, p_\theta)$ with the output activation $g$ and the convex
# conjugate $f^*$ of each divergence. The generator maximises $\mathbb{E}_{p_\theta}[g(v)]$,
# the f-GAN paper's practical choice. GP is the penalty $\mathbb{E}(\lVert \nabla_x D \rVert - 1)^2$
# at random interpolates of real and fake $x_{t-1}$; the drift term keeps the critic's values
# near zero {cite:p}`karras2018progressive`. Inside the exponentials the logits are clamped to
# $[-15, 15]$. Every loss is the same option of the same trainer (`ddgan_core.ddgan.losses`);
# the tests check that each discriminator loss is minimised at its known optimum, where it
# equals its divergence.
#
# ## Other kernels
#
# Three kernels are not DDGAN's:
#
# - **No latent** (`no-latent`). DDGAN's generator without $z$: $x_0 = G_\theta(x_t, t)$ is
#   deterministic, so $p_\theta(x_{t-1} \mid x_t) = q(x_{t-1} \mid x_t, x_0 = G_\theta(x_t, t))$
#   is one Gaussian, fitted adversarially.
# - **Gaussian** (`gaussian`). The DDPM kernel at the same small $T$: $G_\theta(x_t, t)$ is
#   trained by squared error to predict $x_0$. It learns $\mathbb{E}[x_0 \mid x_t]$, and the
#   kernel is the Gaussian posterior around it with DDPM's variance. This is the direct test of
#   the paper's claim that the Gaussian kernel is what fails at large steps.
# - **Mixture** (`mixture`). A network outputs the weights $w_k$, means $\mu_k$ and scales
#   $s_k$ of $p_\theta(x_{t-1} \mid x_t) = \sum_k w_k\, \mathcal{N}(\mu_k, s_k^2 I)$ with
#   $K$ = {glue:text}`toy_components` components, trained by maximum likelihood on forward
#   pairs $(x_{t-1}, x_t) \sim q$. It is multimodal and likelihood-based, with no adversary. On
#   a mixture of Gaussians the true kernel is itself a mixture, so $K$ matters: the ring has 8
#   modes, the grid 25.
#
# Every method has a chain of $T$ = {glue:text}`toy_T` steps of DDGAN's VP schedule, and is
# trained for {glue:text}`toy_steps:,d` updates of batch {glue:text}`toy_batch` with the same
# network width, optimiser and EMA. The adversarial methods also train a discriminator, two
# updates per generator update. Each method runs once per seed, with {glue:text}`toy_seeds`
# seeds.
#
# ## How each method is scored
#
# - **Modes covered.** A mode counts when at least 20 of {glue:text}`toy_n:,d` samples lie
#   within 3 standard deviations of its centre. The share of samples near some mode measures
#   quality.
# - **Distance to the data.** The sliced Wasserstein-2 distance between the samples and as many
#   data points: the root mean of the squared 1-D Wasserstein distances over random
#   directions. Its floor is the same distance between two data samples.
# - **Kernel error.** At {glue:text}`toy_points` points $x_t \sim q(x_t)$ per step, the sliced
#   Wasserstein distance between {glue:text}`toy_draws` draws of the method's kernel and as
#   many of the true kernel's. Its floor is the distance between two draws of the true kernel.
#   This is the error the paper's argument is about, step by step.
#
# Every method of one seed is scored against the same data, points and true-kernel draws.

# %% tags=["hide-input"]
MIXTURE_NAMES = {"8gaussians": "8-Gaussian ring", "25gaussians": "25-Gaussian grid"}
by = {}
for r in runs:
    by.setdefault((r.config["mixture"], r.config["method"]), []).append(r)
mixtures = list(dict.fromkeys(r.config["mixture"] for r in runs))
first_seed = cfg["toy_study_seeds"][0]


def seed_run(mixture: str, method: str, seed: int):
    return next(r for r in by[(mixture, method)] if r.config["seed"] == seed)


cols = 5  # data and the nine methods in two rows per mixture
fig, axes = plt.subplots(2 * len(mixtures), cols, figsize=(8.6, 3.9 * len(mixtures)),
                         squeeze=False, sharex=True, sharey=True)
for index, mixture in enumerate(mixtures):
    data = toy.sample_mixture(mixture, 1000, torch.Generator().manual_seed(0))
    panels = [(f"data ({MIXTURE_NAMES[mixture]})", data.numpy())]
    for method in TOY_METHODS:
        with np.load(seed_run(mixture, method, first_seed).file("draws.npz")) as draws:
            panels.append((method, draws["chain"][:1000]))
    for ax, (title, points) in zip(axes[2 * index: 2 * index + 2].ravel(), panels):
        ax.scatter(points[:, 0], points[:, 1], s=0.6, alpha=0.5, rasterized=True)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=8)
fig.tight_layout(pad=0.3)
glue("fig_toy_samples", figure_png(fig), display=False)

# %% [markdown]
# ```{glue:figure} fig_toy_samples
# :name: fig-toy-samples
#
# 1,000 samples of every method (seed {glue:text}`first_seed`) on the two mixtures, beside
# data. Each chain has $T$ = {glue:text}`toy_T` steps.
# ```

# %% tags=["hide-input"]
glue("first_seed", int(first_seed), display=False)


def aggregate(mixture: str, method: str) -> dict:
    members = by[(mixture, method)]
    values = {key: [float(r.metrics[key]) for r in members]
              for key in ("modes", "near_mode_share", "sw_data", "sw_data_floor",
                          "kernel_error_mean", "kernel_error_floor_mean", "train_seconds")}
    out = {key: float(np.mean(v)) for key, v in values.items()}
    out["modes_min"], out["modes_max"] = min(values["modes"]), max(values["modes"])
    out["sw_min"], out["sw_max"] = min(values["sw_data"]), max(values["sw_data"])
    out["last_step"] = float(np.mean([r.metrics["kernel_error"][0] for r in members]))
    out["last_floor"] = float(np.mean([r.metrics["kernel_error_floor"][0] for r in members]))
    out["n_modes"] = members[0].metrics["n_modes"]
    out["finite"] = all(r.metrics["finite"] for r in members)
    return out


tables = {m: {method: aggregate(m, method) for method in TOY_METHODS} for m in mixtures}


def range_text(low: float, high: float, fmt: str) -> str:
    return format(low, fmt) if low == high else f"{format(low, fmt)}–{format(high, fmt)}"


def toy_table(mixture: str) -> str:
    rows = tables[mixture]
    floor = next(iter(rows.values()))
    lines = ["| method | modes | near a mode | distance to data | kernel error | last step "
             "| training s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for method, a in rows.items():
        lines.append(
            f"| `{method}` | {range_text(a['modes_min'], a['modes_max'], '.0f')} of "
            f"{a['n_modes']} | {a['near_mode_share']:.0%} | {a['sw_data']:.3f} "
            f"| {a['kernel_error_mean']:.3f} | {a['last_step']:.3f} | {a['train_seconds']:.0f} |")
    lines.append(f"| floor | | | {floor['sw_data_floor']:.3f} | {floor['kernel_error_floor_mean']:.3f} "
                 f"| {floor['last_floor']:.3f} | |")
    return "\n".join(lines)


def toy_verdict(mixture: str) -> str:
    rows = tables[mixture]
    best_sw = min(rows, key=lambda m: rows[m]["sw_data"])
    best_k = min(rows, key=lambda m: rows[m]["kernel_error_mean"])
    ns = rows["ns"]
    text = (f"On the {MIXTURE_NAMES[mixture]}, the samples closest to the data come from "
            f"`{best_sw}` (distance {rows[best_sw]['sw_data']:.3f} against "
            f"{ns['sw_data']:.3f} for DDGAN's `ns`; floor {ns['sw_data_floor']:.3f}), and the "
            f"smallest kernel error from `{best_k}` ({rows[best_k]['kernel_error_mean']:.3f} "
            f"against {ns['kernel_error_mean']:.3f}; floor "
            f"{ns['kernel_error_floor_mean']:.3f}). ")
    gauss = rows["gaussian"]
    text += (f"The Gaussian kernel covers {gauss['modes']:.1f} of {gauss['n_modes']} modes on "
             f"average, with {gauss['near_mode_share']:.0%} of its samples near a mode, against "
             f"{ns['modes']:.1f} and {ns['near_mode_share']:.0%} for `ns`. ")
    kl, rkl = rows["kl"], rows["reverse-kl"]
    if rkl["modes"] < kl["modes"]:
        text += (f"The two KL divergences differ as their direction predicts: `kl`, which "
                 f"penalises missing mass, covers {kl['modes']:.1f} modes, and `reverse-kl`, "
                 f"which penalises mass where the data have none and is therefore "
                 f"mode-seeking, {rkl['modes']:.1f}. ")
    else:
        text += (f"`kl` covers {kl['modes']:.1f} modes and `reverse-kl` {rkl['modes']:.1f}: "
                 "here the mode-seeking direction does not lose modes. ")
    most = max(rows.values(), key=lambda a: a["modes"])
    if most["modes"] < most["n_modes"] / 2:
        text += (f"No method covers half of the {most['n_modes']} modes at this budget, so on "
                 f"this mixture the ranking rests on the distances, not on the modes.")
    return text


for mixture in mixtures:
    display(Markdown(f"**{MIXTURE_NAMES[mixture]}**, {len(by[(mixture, 'ns')])} seed(s), "
                     "means over seeds (modes: the range)"))
    display(Markdown(toy_table(mixture)))
    display(Markdown(toy_verdict(mixture)))

# %% [markdown]
# Distances are sliced Wasserstein-2. Kernel error: the mean over the $T$ steps; last step: the
# step $x_1 \to x_0$, where the true kernel is most multimodal. Floors: the same statistic
# between two samples of the truth. Training seconds are wall time on a CPU shared with other
# runs: they say which methods are cheap (no discriminator) rather than by how much.
#
# ## The kernel at one point
#
# The figure shows each method's last step, $x_1 \to x_0$, at the centre of the ring, the
# point where chapter 4 showed the true kernel spread over all eight modes. At this step the
# posterior $q(x_0 \mid x_1, x_0)$ has no noise, so the `gaussian` and `no-latent` kernels put
# every draw on one point, their $x_0$ prediction; for `gaussian` that is the mean of the
# modes, under the red cross. Only a latent or a mixture can spread the draws.

# %% tags=["hide-input"]
mixture = mixtures[0]
diffusion = make_ddgan_diffusion(int(cfg["toy_study_T"]))
true = toy.true_reverse_samples(mixture, diffusion, torch.zeros(2), 0, 1000,
                                torch.Generator().manual_seed(0))
panels = [("true kernel", true.numpy(), toy.kernel_modes(true, mixture))]
for method in TOY_METHODS:
    with np.load(seed_run(mixture, method, first_seed).file("draws.npz")) as draws:
        points = draws["kernel"]
    panels.append((method, points, toy.kernel_modes(torch.from_numpy(points), mixture)))
cols = 5
fig, axes = plt.subplots(2, cols, figsize=(8.6, 3.9), sharex=True, sharey=True)
for ax, (title, points, stats) in zip(axes.ravel(), panels):
    ax.scatter(points[:, 0], points[:, 1], s=0.8, alpha=0.5, rasterized=True)
    ax.scatter([0], [0], marker="x", color="red", s=25)
    ax.set_title(f"{title}\n{stats['modes']} of {stats['n_modes']} modes, "
                 f"{stats['near']:.0%} near", fontsize=8)
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout(pad=0.3)
glue("fig_toy_kernels", figure_png(fig), display=False)
glue("kernel_mixture", MIXTURE_NAMES[mixture], display=False)

# %% [markdown]
# ```{glue:figure} fig_toy_kernels
# :name: fig-toy-kernels
#
# The last reverse step of every method at $x_1 = 0$ (red cross) on the
# {glue:text}`kernel_mixture`, 1,000 draws each (seed {glue:text}`first_seed`), against the
# true kernel. Under each title: the modes hit (at least 1% of the draws within 3 standard
# deviations) and the share of draws near a mode.
# ```
#
# ## On FashionMNIST
#
# The same question on images, where no true kernel is known and the samples are scored as in
# chapter 5: every method is one run per seed at that chapter's sweep budget,
# {glue:text}`img_steps:,d` steps of batch {glue:text}`img_batch` on a chain of
# $T$ = {glue:text}`img_T` steps, then {glue:text}`img_n:,d` samples scored with bootstrap
# intervals and the class histogram, {glue:text}`img_seeds` seeds. The methods:
#
# - the six divergences, each as `ddgan_loss` of the same DDGAN (`ns` is chapter 5's centre
#   run; `wgan-gp` without R1, its gradient penalty taking R1's place);
# - **no latent**: chapter 5's `ddgan_nz = 0` run, one Gaussian per step fitted adversarially;
# - **Gaussian kernel (noise)**: DDPM's kernel on the same $T$-step chain, a UNet of the
#   generator's width trained with the simple noise-prediction loss and sampled ancestrally
#   with the posterior variance $\tilde\beta_t$. With $T = 4$ the $x_0$ it implies,
#   $(x_t - \sqrt{1 - \bar\alpha_t}\,\varepsilon_\theta) / \sqrt{\bar\alpha_t}$, multiplies the
#   noise predictor's error by $\sqrt{(1 - \bar\alpha_t) / \bar\alpha_t}$:
#   {glue:text}`img_amplification:.0f` at the first reverse step;
# - **Gaussian kernel (x0)**: the same Gaussian kernel with the network predicting $x_0$ by
#   squared error, so the kernel is the posterior around $\mathbb{E}[x_0 \mid x_t]$. This is
#   the toys' `gaussian`, and the no-latent generator trained by regression instead of
#   adversarially;
# - **mixture kernel**: $K$ = {glue:text}`img_components` Gaussians per step, fitted by
#   maximum likelihood on forward pairs. On images a network cannot output $K$ free means and
#   scales cheaply, so each component is a posterior: the network predicts $K$ images
#   $\hat x_0^{(k)}$, weights $w_k$ and scale offsets $s_k$, and
#   $p_\theta(x_{t-1} \mid x_t) = \sum_k w_k\, \mathcal{N}\big(\tilde\mu_t(x_t, \hat x_0^{(k)}),
#   e^{s_k} \tilde\beta_t I\big)$ (at $t = 0$, where the posterior has no noise,
#   $\tilde\beta_1$ in its place). With $K = 1$ and $s = 0$ it is the Gaussian kernel (x0).
#
# The three kernels use the generator's backbone without the latent's mapping network, its Adam
# settings, learning-rate schedule and EMA, and the same number of steps. A kernel step trains
# one network; a DDGAN step also makes {glue:text}`img_d_steps` discriminator updates. The
# second table gives both costs.
# The code is `ddgan_core.image_kernels`; each method is reachable from a sweep:
#
# ```bash
# python -m ddgan_core sweep ddgan_sweep_point --profile cpu \
#     -p ddgan_loss ns hinge lsgan kl reverse-kl -p seed 0 1
# python -m ddgan_core sweep ddgan_sweep_point --profile cpu \
#     -p ddgan_loss wgan-gp -p ddgan_r1_gamma 0 -p seed 0 1
# python -m ddgan_core sweep image_kernel_point --profile cpu \
#     -p image_kernel gaussian gaussian-x0 mixture -p seed 0 1
# ```

# %% tags=["hide-input"]
image_runs = kernel_image_study(cfg, ResultCache())  # (label, seed, entry); cached
speed = kernel_speed(cfg, ResultCache())
speed_rows = {row["label"]: row for row in speed.metrics["rows"]}
sampler_ms = {row["sampler"]: 1e3 * row["seconds_per_image"] for row in speed_rows.values()
              if "seconds_per_image" in row}
image_rows = []
for label, seed, result in image_runs:
    row = {"method": label, "seed": seed, **sweep_point_summary(result)}
    row["finished"] = float(result.metrics["train"]["train_steps"]
                            == result.config["ddgan_train_steps"])
    share = row["near_parity_share"]
    row["stalled"] = float(share is not None and share >= 0.5)
    image_rows.append(row)
image_aggs = aggregate_seeds(image_rows, "method")
for agg in image_aggs:
    timed = speed_rows[agg["method"]]
    agg["ms_per_image"] = sampler_ms[timed["sampler"]]
    agg["s_per_step"] = float(timed["train_seconds_per_step"])
centre = image_aggs[0]  # DDGAN with the ns loss: chapter 5's centre
glue("img_steps", int(cfg["sweep_steps"]), display=False)
glue("img_batch", int(cfg["ddgan_batch_size"]), display=False)
glue("img_T", int(cfg["ddgan_timesteps"]), display=False)
glue("img_n", int(cfg["sweep_samples"]), display=False)
glue("img_seeds", len(cfg["hp_seeds"]), display=False)
glue("img_components", int(cfg["image_kernel_components"]), display=False)
glue("img_d_steps", int(cfg["ddgan_d_steps"]), display=False)
abar_first = float(make_ddgan_diffusion(int(cfg["ddgan_timesteps"])).alphas_cumprod[-1])
glue("img_amplification", float(np.sqrt((1 - abar_first) / abar_first)), display=False)
glue("img_finished", int(sum(row["finished"] for row in image_rows)), display=False)
glue("img_total", len(image_rows), display=False)


def image_table(aggs: list[dict]) -> str:
    """Quality and diversity: mean over seeds with the union of the seeds' intervals."""
    lines = ["| method | FID | KID ×10³ | precision | recall | coverage | classes | class KL |",
             "|---|" + "---:|" * 7]
    for agg in aggs:
        lines.append(
            f"| {agg['method']} | {interval_cell(agg, 'fid', '.1f')} | {interval_cell(agg, 'kid', '.1f', 1e3)} "
            f"| {interval_cell(agg, 'precision', '.3f')} | {interval_cell(agg, 'recall', '.3f')} "
            f"| {interval_cell(agg, 'coverage', '.3f')} | {range_cell(agg, 'classes_covered')} "
            f"| {agg['kl_to_uniform']:.3f} |")
    floor = aggs[0]
    lines.append(f"| test images | {floor['fid_floor']:.1f} | | | | | 10 "
                 f"| {floor['kl_to_uniform_floor']:.3f} |")
    return "\n".join(lines)


def cost_table(aggs: list[dict]) -> str:
    """Cost and stability of every method."""
    lines = ["| method | parameters | ms / image | s / step | training min | D gap "
             "| D loss near chance | stalled runs |", "|---|" + "---:|" * 7]
    for agg in aggs:
        adversarial = agg.get("gap_median") is not None
        lines.append(
            f"| {agg['method']} | {agg['generator_parameters'] / 1e6:.2f} M "
            f"| {agg['ms_per_image']:.1f} | {agg['s_per_step']:.2f} "
            f"| {agg['train_minutes']:.1f} "
            + (f"| {agg['gap_median']:.2f} | {agg['near_parity_share']:.0%} "
               f"| {int(round(agg['stalled'] * len(agg['runs'])))} of {len(agg['runs'])} |"
               if adversarial else "| – | – | – |"))
    return "\n".join(lines)


display(Markdown(image_table(image_aggs)))
display(Markdown(cost_table(image_aggs)))

# %% [markdown]
# Means over seeds; under each FID, KID, precision, recall and coverage the union of the seeds'
# 95% bootstrap intervals (over samples); classes: the range over seeds of the classes holding at
# least 2.5% of the samples, by the project's classifier; class KL: the histogram's KL
# divergence to uniform in nats. The test-image row is the floor: FID of as many test images,
# and their class KL. Milliseconds per image and seconds per step come from one harness run
# on fresh networks (`kernel_speed`, one thread); training minutes are the runs' own wall
# time, two runs side by side. Parameters: the generator's (or the kernel network's). D gap:
# the median logit gap between real and generated pairs; D loss near chance: the share of
# logged intervals whose D loss sat within 0.03 of its chance value; stalled runs: those where
# that share is at least half. {glue:text}`img_finished` of the {glue:text}`img_total` runs
# finished all their steps (a run whose loss or weights became NaN or infinite would have
# stopped with an error and left no entry).

# %% tags=["hide-input"]
IMAGE_PANELS = (("fid", "FID (lower is better)"), ("recall", "recall"),
                ("coverage", "coverage"), ("kl_to_uniform", "class KL to uniform (nats)"))
fig, axes = plt.subplots(1, len(IMAGE_PANELS), figsize=(10.0, 3.6), sharey=False)
ys = np.arange(len(image_aggs))[::-1]
seeds = sorted({s for agg in image_aggs for s in agg["seeds"]})
for ax, (name, title) in zip(axes, IMAGE_PANELS):
    for j, seed in enumerate(seeds):
        offset = (j - (len(seeds) - 1) / 2) * 0.22
        for y, agg in zip(ys, image_aggs):
            run = next((r for r in agg["runs"] if r["seed"] == seed), None)
            if run is None:
                continue
            lo, hi = run.get(f"{name}_lo"), run.get(f"{name}_hi")
            xerr = ([[max(run[name] - lo, 0)], [max(hi - run[name], 0)]]
                    if isinstance(lo, float) and isinstance(hi, float) else None)
            ax.errorbar([run[name]], [y + offset], xerr=xerr, fmt="o", ms=3.5, capsize=2,
                        color=f"C{j}", label=f"seed {seed}" if y == ys[0] else None)
    if name == "kl_to_uniform":
        ax.axvline(image_aggs[0]["kl_to_uniform_floor"], color="0.4", ls=":", lw=1,
                   label="test images")
    if name == "fid":
        ax.axvline(image_aggs[0]["fid_floor"], color="0.4", ls=":", lw=1, label="test images")
    ax.set_title(title, fontsize=9)
    ax.set_yticks(ys, [agg["method"] for agg in image_aggs] if ax is axes[0] else [],
                  fontsize=8)
    ax.grid(axis="x", alpha=0.3)
axes[0].legend(fontsize=7, loc="lower right")
fig.tight_layout()
plt.close(fig)
glue("fig_image_methods", figure_png(fig), display=False)

# %% [markdown]
# ```{glue:figure} fig_image_methods
# :name: fig-image-methods
#
# Every method on FashionMNIST: each seed's value with its 95% bootstrap interval, and the
# test-image floor (dotted) where one exists.
# ```

# %% tags=["hide-input"]
def image_verdict(aggs: list[dict]) -> str:
    """Sentences computed from the table: the two lowest FIDs and whether their intervals
    separate them; each kernel without a discriminator against the ns baseline; the KL pair."""
    by_label = {agg["method"]: agg for agg in aggs}
    ranked = sorted(aggs, key=lambda a: a["fid"])
    best, second = ranked[0], ranked[1]
    ns = by_label["DDGAN, ns"]
    separated = not intervals_overlap(best, second, "fid")
    text = (f"The lowest mean FID is {best['method']}'s, {best['fid']:.1f}, then "
            f"{second['method']}'s, {second['fid']:.1f}; their seeds' intervals "
            + ("do not overlap. " if separated else
               "overlap, so at this budget and seed count the two are not told apart. "))
    if best is not ns and second is not ns:
        text += f"DDGAN's own `ns` loss scores {ns['fid']:.1f}. "
    worse = [a["method"] for a in aggs
             if a is not ns and not intervals_overlap(a, ns, "fid") and a["fid"] > ns["fid"]]
    if worse:
        text += ("These methods score worse than `ns` with intervals that do not overlap "
                 f"its: {'; '.join(worse)}. ")
    for label in ("Gaussian kernel (noise)", "Gaussian kernel (x0)", "mixture kernel"):
        if label in by_label:
            agg = by_label[label]
            text += (f"The {label} covers {range_cell(agg, 'classes_covered')} of 10 classes "
                     f"(class KL {agg['kl_to_uniform']:.2f}; `ns`: "
                     f"{range_cell(ns, 'classes_covered')}, {ns['kl_to_uniform']:.2f}). ")
    kl, rkl = by_label.get("DDGAN, kl"), by_label.get("DDGAN, reverse-kl")
    if kl and rkl:
        text += (f"Of the two KL directions, `kl` gives FID {kl['fid']:.1f} and coverage "
                 f"{kl['coverage']:.3f}, `reverse-kl` {rkl['fid']:.1f} and "
                 f"{rkl['coverage']:.3f}. ")
    if max(a["recall"] for a in aggs) == 0:
        text += ("Recall is 0 for every method, as in chapter 5 at this budget: no real image "
                 "falls inside the generated samples' nearest-neighbour balls, so diversity is "
                 "read from coverage and the class histogram.")
    return text


display(Markdown(image_verdict(image_aggs)))

# %% tags=["hide-input"]
from PIL import Image  # noqa: E402  (used only here)

first = cfg["hp_seeds"][0]
grids = [(label, result) for label, seed, result in image_runs if seed == first]
cols = 3
rows_n = -(-len(grids) // cols)
fig, axes = plt.subplots(rows_n, cols, figsize=(2.6 * cols, 2.85 * rows_n), squeeze=False)
for ax in axes.ravel():
    ax.axis("off")
for ax, (label, result) in zip(axes.ravel(), grids):
    with Image.open(result.file("samples.png")) as image:
        ax.imshow(np.asarray(image.convert("L")), cmap="gray", vmin=0, vmax=255)
    ax.set_title(label, fontsize=8)
fig.tight_layout(pad=0.3)
plt.close(fig)
glue("fig_image_samples", figure_png(fig), display=False)

# %% [markdown]
# ```{glue:figure} fig_image_samples
# :name: fig-image-samples
#
# The first 64 samples of every method on FashionMNIST (seed {glue:text}`img_first_seed`),
# each a chain of $T$ = {glue:text}`img_T` steps.
# ```

# %% tags=["hide-input"]
glue("img_first_seed", int(first), display=False)

# %% tags=["hide-input"]
# what this page cost (the box at the top)
spent = cost(runs)
glue("toy_runs", len(runs), display=False)
glue("toy_source", spent["source"], display=False)
glue("toy_where", spent["where"], display=False)
glue("toy_cpu_min", float(spent["seconds"] / 60), display=False)
spent_images = cost([result for _, _, result in image_runs] + [speed])
glue("img_runs", len(image_runs), display=False)
glue("img_source", spent_images["source"], display=False)
glue("img_where", spent_images["where"], display=False)
glue("kernels_device", spent_images["devices"], display=False)
glue("img_cpu_min", float(spent_images["seconds"] / 60), display=False)
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
