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
# # Denoising Diffusion GAN
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
# python -m ddgan_core book --profile cpu --only 04_ddgan
# papermill notebooks/04_ddgan.ipynb out.ipynb \
#     -p profile cpu -p toy_ddgan_steps 600
# python -m ddgan_core sweep notebooks/04_ddgan \
#     -p toy_ddgan_steps 300 1200 --profile cpu
# ```
#
# The comparison by hand, from the command line: the DDGAN and the DDPM of the same budget
# (each command reads the cache first), samples of each, and their metrics with intervals:
#
# ```bash
# python -m ddgan_core train ddgan --profile cpu
# python -m ddgan_core train ddpm --profile cpu --equal-budget
# python -m ddgan_core sample --n 2000 --out gan.npz \
#     --checkpoint PATH/generator_ema.safetensors
# python -m ddgan_core sample --n 2000 --out ddim10.npz \
#     --checkpoint PATH/model_ema.safetensors --steps 10 --sampler ddim
# python -m ddgan_core eval --samples gan.npz --bootstrap 200 \
#     --second-extractor
# ```
#
# **Cost.** The FashionMNIST results were {glue:text}`gan_source`; all were computed
# {glue:text}`gan_where`. Training the DDGAN and the DDPM it is compared with took
# {glue:text}`pair_wall_min:.0f` min together (each its budget plus its evaluations during
# training) on {glue:text}`pair_device`; the two R1 runs {glue:text}`r1_wall_min:.0f` min; the
# evaluations of the comparison {glue:text}`eval_wall_min:.0f` min, and those of the full-chain
# table (shared with chapter 7) {glue:text}`chain_wall_min:.0f` min; and the speed measurement
# {glue:text}`speed_wall_s:.0f` s on {glue:text}`speed_run_device`. The toy DDGAN is trained
# afresh each time ({glue:text}`toy_seconds:.0f` s). Executing this page took
# {glue:text}`chapter_seconds:.0f` s on {glue:text}`chapter_device`.
# ````
#
# The previous chapters showed why a diffusion model needs many steps: its reverse kernel is a
# Gaussian, and the true reverse kernel $q(x_{t-1} \mid x_t)$ is close to Gaussian only when
# the step is small. Denoising Diffusion GAN {cite:p}`xiao2022ddgan` keeps the forward process
# and replaces the Gaussian kernel by an implicit, multimodal one: a conditional generator
# trained adversarially at every step. On {glue:text}`speed_run_device`, {glue:text}`width_text`,
# its four steps sample {glue:text}`per_image_ratio:,.0f` times faster per image than DDPM's
# {glue:text}`k_full:,d` ancestral steps; against the cheapest DDPM sampler that is at least as
# good by FID, the gain is {glue:text}`matched_ratio_text` (all measured at the end of this
# chapter).

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
ddgan_timesteps = None
ddgan_train_steps = None
budget_minutes = None

# %% tags=["hide-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from ddgan_core import ddgan, toy
from ddgan_core.data import load_fashion_mnist
from ddgan_core.experiments import (
    comparison,
    ddgan_model,
    ddgan_progress_samples,
    ddpm_budget_model,
    ddpm_model,
    frontier_point,
    r1_convention_study,
    speed_comparison,
)
from ddgan_core.plotting import (
    cost,
    device_label,
    figure_png,
    machine_label,
    provenance,
    to_grid,
    use_book_style,
)
from ddgan_core.profiles import get_profile, overrides_from

chapter_start = time.perf_counter()
cfg = get_profile(profile, **overrides_from(globals()))  # every profile key papermill passed
use_book_style()  # line plots as SVG; samples are glued as high-resolution PNG
glue("chapter_profile", cfg["profile"], display=False)

# %% [markdown]
# ## The method
#
# The forward process is the one of the first chapter, with few large steps: DDGAN's discrete
# variance-preserving schedule with $T = 4$. The reverse kernel is parameterised through a
# prediction of the clean image {eq}`eq-ddgan-kernel`: a generator $G_\theta(x_t, z, t)$ maps
# the noisy image and a latent $z \sim \mathcal{N}(0, I)$ to a guess of $x_0$, and $x_{t-1}$ is
# then drawn from the forward process's own posterior given that guess,
#
# ```{math}
# :label: eq-ddgan-kernel
# p_\theta(x_{t-1} \mid x_t) = \int p(z)\, q\big(x_{t-1} \mid x_t, x_0 = G_\theta(x_t, z, t)\big)\, dz .
# ```
#
# This parameterisation is exact in the limit: the true reverse kernel is itself
# $q(x_{t-1} \mid x_t) = \int q(x_0 \mid x_t)\, q(x_{t-1} \mid x_t, x_0)\, dx_0$, so if the
# generator's implicit distribution $p_\theta(x_0 \mid x_t)$ matches $q(x_0 \mid x_t)$ the two
# kernels coincide, however large the step. Because $x_0$ comes from a latent variable,
# $p_\theta(x_0 \mid x_t)$, and with it the kernel, can have many modes.
#
# The KL divergence of the ELBO cannot be evaluated for an implicit kernel, so each step is
# fitted with an adversarial divergence $D_{\mathrm{adv}}$ instead {cite:p}`goodfellow2014gan`,
# between the true reverse kernel and the model's:
#
# ```{math}
# :label: eq-ddgan-objective
# \min_\theta \sum_{t=1}^{T} \mathbb{E}_{q(x_t)}\Big[D_{\mathrm{adv}}\big(q(x_{t-1} \mid x_t)
#   \,\|\, p_\theta(x_{t-1} \mid x_t)\big)\Big].
# ```
#
# A time-conditioned
# discriminator $D_\varphi(x_{t-1}, x_t, t)$ sees a pair and says whether $x_{t-1}$ is a
# plausible denoised version of $x_t$. With $\sigma$ the logistic function and
# $\mathrm{softplus}(u) = \log(1 + e^u)$, the discriminator minimises
#
# ```{math}
# :label: eq-ddgan-d
# \begin{aligned}
# \sum_{t=1}^{T} \mathbb{E}_{q(x_t)}\Big[
#   & \mathbb{E}_{q(x_{t-1} \mid x_t)}\, \mathrm{softplus}\big(-D_\varphi(x_{t-1}, x_t, t)\big) \\
#   & + \mathbb{E}_{p_\theta(x_{t-1} \mid x_t)}\, \mathrm{softplus}\big(D_\varphi(x_{t-1}, x_t, t)\big)
#   \Big] \\
#   & + \frac{\gamma}{2}\, \mathbb{E}_{q(x_t)}\, \mathbb{E}_{q(x_{t-1} \mid x_t)}
#   \big\|\nabla_{x_{t-1}} D_\varphi(x_{t-1}, x_t, t)\big\|^2 ,
# \end{aligned}
# ```
#
# the seed's eq. (8) written with $D = \sigma(D_\varphi)$, plus the R1 gradient penalty on real
# pairs {cite:p}`mescheder2018r1`. The generator minimises the non-saturating loss
#
# ```{math}
# :label: eq-ddgan-g
# \sum_{t=1}^{T} \mathbb{E}_{q(x_t)}\, \mathbb{E}_{p_\theta(x_{t-1} \mid x_t)}\,
#   \mathrm{softplus}\big(-D_\varphi(x_{t-1}, x_t, t)\big).
# ```
#
# ```{admonition} What the seed's eqs. (7) and (9) get wrong
# :class: warning
#
# 1. **The seed's eq. (7) compares the model with the wrong distribution.** It writes the
#    divergence as $D_{\mathrm{adv}}\big(q(x_{t-1} \mid x_t, x_0)\,\|\,p_\theta(x_{t-1} \mid
#    x_t)\big)$; it must be the marginal $q(x_{t-1} \mid x_t)$ of {eq}`eq-ddgan-objective`,
#    because $p_\theta$ never sees $x_0$: it can only match the kernel averaged over every $x_0$
#    compatible with $x_t$, which is how {cite:t}`xiao2022ddgan` state the objective.
# 2. **The seed's eq. (9) scores the generator on the real pairs.** It takes the generator's
#    expectation under $q(x_{t-1} \mid x_t)$, so the objective does not depend on $\theta$ at
#    all; the generator must be scored on its own samples,
#    $x_{t-1} \sim p_\theta(x_{t-1} \mid x_t)$, as in {eq}`eq-ddgan-g`.
# 3. **The sums run to $n$.** As in the seed's eq. (5), the sums over steps in the seed's
#    eqs. (7)-(9) run to $n$, the number of training objects; they run over $t = 1, \dots, T$.
# ```
#
# Real pairs come from the forward process: $x_{t-1} \sim q(x_{t-1} \mid x_0)$, then
# $x_t \sim q(x_t \mid x_{t-1})$. Fake pairs share the same $x_t$: $x_{t-1}$ is drawn through
# {eq}`eq-ddgan-kernel` with a fresh $z$. Sampling runs the chain backwards from
# $x_T \sim \mathcal{N}(0, I)$ with $T$ generator calls, a new $z$ at every step and no noise at
# the last one (`ddgan_core.ddgan.ddgan_sample`).
#
# ## A picture of the multimodal kernel
#
# On a mixture of eight Gaussians the exact reverse kernel is available in closed form. With
# $T = 2$ each step is huge. The first reverse step's kernel $q(x_1 \mid x_2)$ is still one
# blob, but the last one, $q(x_0 \mid x_1)$ at a point $x_1$ near the centre, is spread over the
# eight modes: no Gaussian can fit it. The same DDGAN code, with
# small MLPs, learns it.

# %% tags=["hide-input"]
toy_steps = cfg["toy_ddgan_steps"]
toy_run = toy.train_toy_ddgan(T=2, steps=toy_steps, seed=cfg["seed"])
glue("toy_modes", int(toy_run["modes"]), display=False)
glue("toy_n_modes", int(toy_run["n_modes"]), display=False)
glue("toy_hq", float(toy_run["hq_fraction"]), display=False)
glue("toy_seconds", float(toy_run["train_seconds"]), display=False)
glue("toy_steps", int(toy_steps), display=False)

# %% tags=["hide-input"]
gen = torch.Generator().manual_seed(cfg["seed"])
diffusion2 = toy_run["diffusion"]
# x_1 is the centre of the ring: the most likely x_1 (at x_1's noise level the eight noisy
# components merge into one bump that peaks there), and by symmetry the point where the exact
# kernel q(x_0 | x_1) weighs the eight modes equally.
x_1 = torch.zeros(2)
last = 0  # the toy functions count steps from 0: t = 0 is the last reverse step, x_1 -> x_0
n_kernel = 2000  # draws per panel
min_share = 0.01  # a mode is hit when at least this share of the draws lies near it
true = toy.true_reverse_samples("8gaussians", diffusion2, x_1, last, n_kernel, gen)
model = toy.model_reverse_samples(toy_run["G"], diffusion2, x_1, last, n_kernel, toy_run["nz"],
                                  gen)
gauss = toy.moment_matched_gaussian(true, n_kernel, gen)  # same mean and full covariance
data = toy.sample_mixture("8gaussians", n_kernel, gen)
kernel_stats = {key: toy.kernel_modes(points, "8gaussians", min_share=min_share)
                for key, points in (("true", true), ("gauss", gauss), ("gan", model))}
fig, axes = plt.subplots(2, 2, figsize=(6.4, 6.8), sharex=True, sharey=True)
axes = axes.ravel()
panels = [
    (data, "data $x_0$", None),
    (true, "true $q(x_0 | x_1)$", "true"),
    (gauss, "Gaussian, same mean and covariance", "gauss"),
    (model, r"DDGAN $p_\theta(x_0 | x_1)$", "gan"),
]
for ax, (points, title, key) in zip(axes, panels):
    ax.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.4)
    ax.scatter([x_1[0]], [x_1[1]], marker="x", color="red", s=40)
    if key is not None:
        stats = kernel_stats[key]
        title += (f"\n{stats['near']:.0%} near a mode, "
                  f"{stats['modes']} of {stats['n_modes']} modes hit")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
axes[0].set_xlim(-3, 3)
axes[0].set_ylim(-3, 3)
fig.tight_layout()
glue("fig_toy_kernel", figure_png(fig), display=False)  # 8,000 points: PNG, not SVG
glue("toy_kernel_draws", int(n_kernel), display=False)
glue("toy_kernel_min_share", float(min_share), display=False)
glue("toy_kernel_true_near", float(kernel_stats["true"]["near"]), display=False)
glue("toy_kernel_true_modes", int(kernel_stats["true"]["modes"]), display=False)
glue("toy_kernel_gauss_near", float(kernel_stats["gauss"]["near"]), display=False)
glue("toy_kernel_gauss_modes", int(kernel_stats["gauss"]["modes"]), display=False)
glue("toy_kernel_gan_near", float(kernel_stats["gan"]["near"]), display=False)
glue("toy_kernel_gan_modes", int(kernel_stats["gan"]["modes"]), display=False)

# %% [markdown]
# ```{glue:figure} fig_toy_kernel
# :name: fig-toy-kernel
#
# The reverse kernel of the last step of a $T = 2$ chain, from $x_1$ to the data $x_0$, at the
# centre of the ring (red cross), on the mixture of {glue:text}`toy_n_modes` Gaussians;
# {glue:text}`toy_kernel_draws:,d` draws per panel. The centre is the most likely $x_1$, and
# there the exact kernel weighs all modes alike. The exact kernel $q(x_0 \mid x_1)$ puts
# {glue:text}`toy_kernel_true_near:.0%` of its draws within three standard deviations of a mode
# and hits {glue:text}`toy_kernel_true_modes` of the {glue:text}`toy_n_modes` modes (a mode is
# hit when at least {glue:text}`toy_kernel_min_share:.0%` of the draws lie near it). The
# Gaussian with the same mean and covariance, the best Gaussian approximation of that kernel,
# puts only {glue:text}`toy_kernel_gauss_near:.1%` of its draws near a mode and hits
# {glue:text}`toy_kernel_gauss_modes` of them: its mass lies between the modes. DDGAN's implicit
# kernel $p_\theta(x_0 \mid x_1)$ follows the modes: {glue:text}`toy_kernel_gan_near:.0%` of its
# draws lie near a mode, and it hits {glue:text}`toy_kernel_gan_modes` of them.
# ```
#
# Trained for {glue:text}`toy_steps:,d` steps ({glue:text}`toy_seconds:.0f` s on the CPU), the
# two-step DDGAN covers {glue:text}`toy_modes` of {glue:text}`toy_n_modes` modes with
# {glue:text}`toy_hq:.0%` of its samples within three standard deviations of a mode centre.
#
# ## Training on FashionMNIST, with the same budget as DDPM
#
# The chapter's comparison gives DDGAN and DDPM the same device and the same wall-clock
# budget. Both models were trained side by side on {glue:text}`pair_device`, with
# {glue:text}`pair_threads` thread(s) each, under a budget of {glue:text}`budget_min:.0f`
# minutes each. Before training, each run timed a dozen of its own steps. That fixed how many
# steps fit in the budget, and the learning-rate schedule spans exactly those steps
# (`ddgan_core.budget`). The runs then trained for {glue:text}`gan_minutes:.1f` (DDGAN) and
# {glue:text}`ddpm_pair_minutes:.1f` (DDPM) minutes: {glue:text}`gan_budget_used:.0%` and
# {glue:text}`ddpm_budget_used:.0%` of the budget. {glue:text}`budget_note` What the two
# models received is the measured time, equal within {glue:text}`pair_time_gap:.0%`.
# (Result cache: {glue:text}`gan_provenance`.)

# %% tags=["hide-input"]
result = ddgan_model(cfg)
ddpm_pair = ddpm_budget_model(cfg)
train = result.metrics["train"]
final = result.metrics["final"]
progress = result.metrics["progress"]
plan = result.metrics["budget"] or {}
ddpm_plan = ddpm_pair.metrics["budget"] or {}
state = ddgan.discriminator_state(train["history"])
unet_params = ddpm_pair.metrics["parameters"]
glue("pair_device", device_label({"device": result.manifest["device"]}), display=False)
glue("pair_threads", int(plan.get("threads", result.manifest.get("threads", 0))),
     display=False)
glue("budget_min", float(cfg["budget_minutes"]), display=False)
glue("g_params_millions", float(train["generator_parameters"] / 1e6), display=False)
glue("d_params_millions", float(train["discriminator_parameters"] / 1e6), display=False)
glue("unet_params_millions", float(unet_params / 1e6), display=False)
glue("g_extra_share", float(train["generator_parameters"] / unet_params - 1), display=False)
glue("g_channels", " / ".join(str(c) for c in cfg["ddgan_channels"]), display=False)
glue("unet_channels", " / ".join(str(c) for c in cfg["ddpm_channels"]), display=False)
glue("gan_T", int(cfg["ddgan_timesteps"]), display=False)
glue("gan_steps", int(train["train_steps"]), display=False)
glue("gan_images", int(train["images_seen"]), display=False)
glue("gan_minutes", float(train["wall_time_s"] / 60), display=False)
glue("ddpm_pair_steps", int(ddpm_pair.metrics["train_steps"]), display=False)
glue("ddpm_pair_images", int(ddpm_pair.metrics["images_seen"]), display=False)
glue("ddpm_pair_minutes", float(ddpm_pair.metrics["train_seconds"] / 60), display=False)
budget_s = 60.0 * float(cfg["budget_minutes"]) or float("nan")
glue("gan_budget_used", float(train["wall_time_s"] / budget_s), display=False)
glue("ddpm_budget_used", float(ddpm_pair.metrics["train_seconds"] / budget_s), display=False)
used = [train["wall_time_s"] / budget_s, ddpm_pair.metrics["train_seconds"] / budget_s]
glue("budget_note", "The timings ran slower than the training that followed (the machine was "
     "busier while they ran), so both step counts came out short of the budget."
     if max(used) < 0.9 else "", display=False)
glue("pair_time_gap", float(abs(train["wall_time_s"] - ddpm_pair.metrics["train_seconds"])
                            / max(train["wall_time_s"], ddpm_pair.metrics["train_seconds"])),
     display=False)
glue("gan_provenance", provenance(result), display=False)
glue("gan_r1", cfg["ddgan_r1_gamma"], display=False)  # the profile's int or float, shown as is
glue("gan_lazy", int(cfg["ddgan_lazy_r1"]), display=False)
glue("gan_r1_convention", cfg["ddgan_r1_convention"], display=False)
glue("gan_nz", int(cfg["ddgan_nz"]), display=False)
glue("gan_dsteps", int(cfg["ddgan_d_steps"]), display=False)
glue("gan_ema", float(result.config["ddgan_ema_decay"]), display=False)
glue("ddpm_ema", float(ddpm_pair.config["ddpm_ema_decay"]), display=False)
glue("gan_lr_g", cfg["ddgan_lr_g"], display=False)
glue("gan_lr_d", cfg["ddgan_lr_d"], display=False)
glue("gap_median", float(state["gap_median"]), display=False)
glue("gap_late", float(state["gap_late_mean"]), display=False)
glue("lossd_distance", float(state["loss_d_distance_median"]), display=False)
glue("near_parity", float(state["near_parity_share"]), display=False)
glue("parity_tol", float(state["loss_tol"]), display=False)

# %% [markdown]
# **The two networks.** The generator is the DDPM chapter's UNet at the same channel widths
# ({glue:text}`g_channels`, against {glue:text}`unet_channels` for $\varepsilon_\theta$), with
# two changes. First, a latent $z$ ({glue:text}`gan_nz` dimensions) passes through a mapping
# network and sets the scale and shift of every group normalisation (adaptive group norm, as in
# StyleGAN {cite:p}`karras2019stylegan`). Second, a tanh bounds its output, the predicted
# $x_0$. It has {glue:text}`g_params_millions:.2f` M parameters against the UNet's
# {glue:text}`unet_params_millions:.2f` M ({glue:text}`g_extra_share:+.0%`, all in the mapping
# network and the norms' affine maps).
#
# The discriminator ({glue:text}`d_params_millions:.2f` M) works on pairs:
# - it concatenates $x_{t-1}$ and $x_t$ on channels;
# - it adds the time embedding inside its residual blocks;
# - it appends a minibatch standard-deviation feature {cite:p}`karras2018progressive`;
# - it ends with a flattened head, a linear layer over the whole $7 \times 7$ feature map, as in
#   StyleGAN2 {cite:p}`karras2020stylegan2`. A mean-pooled head sees little more than each
#   image's mean intensity at initialisation, which a generator matches within a few steps.
#
# **Training.** Adam with $\beta = (0.5, 0.9)$ and learning rates {glue:text}`gan_lr_g` (G) and
# {glue:text}`gan_lr_d` (D), with cosine decay. There are {glue:text}`gan_dsteps` discriminator
# updates per generator update, and an EMA of the generator with decay
# {glue:text}`gan_ema` (the DDPM of the pair: {glue:text}`ddpm_ema`). R1 uses $\gamma =$
# {glue:text}`gan_r1`, applied lazily on every {glue:text}`gan_lazy`-th discriminator update,
# with the weight convention {glue:text}`gan_r1_convention` (see below). DDGAN made
# {glue:text}`gan_steps:,d` generator steps with $T =$ {glue:text}`gan_T`
# ({glue:text}`gan_images:,d` real images shown to D; {glue:text}`gan_minutes:.1f` min of
# training, evaluations excluded). DDPM made {glue:text}`ddpm_pair_steps:,d` steps
# ({glue:text}`ddpm_pair_images:,d` images; {glue:text}`ddpm_pair_minutes:.1f` min).

# %% tags=["hide-input"]
history = train["history"]
steps = [h["step"] for h in history]
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
axes[0].plot(steps, [h["loss_d"] for h in history], label="D")
axes[0].plot(steps, [h["loss_g"] for h in history], label="G")
axes[0].axhline(2 * np.log(2), color="grey", ls=":", lw=1, label="2 ln 2 (chance)")
axes[0].set_xlabel("step")
axes[0].set_ylabel("loss")
axes[0].legend(frameon=False, fontsize=8)
axes[1].plot(steps, [h["gap"] for h in history])
axes[1].axhline(0, color="grey", lw=0.8)
axes[1].set_xlabel("step")
axes[1].set_ylabel("mean D(real) - D(fake) (logits)")
axes[2].plot(steps, [h["r1"] for h in history], ".", ms=3)
axes[2].set_yscale("log")
axes[2].set_xlabel("step")
axes[2].set_ylabel(r"R1: $E\|\nabla D\|^2$")
fig.tight_layout()
glue("fig_gan_training", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_gan_training
# :name: fig-gan-training
#
# Training curves of the DDGAN: the two losses, the gap between the discriminator's logits on
# real and fake pairs, and the R1 term, one point per logging interval.
# ```
#
# Whether the discriminator is ahead of chance takes two statistics, not one threshold. The first
# is the logit gap, the mean of $D$ on real pairs minus its mean on fake ones. Its median over
# all logging intervals is {glue:text}`gap_median:.2f`, and its mean over the second half of
# training is {glue:text}`gap_late:.2f`. The second is the discriminator loss's distance from
# $2 \ln 2$, the loss of a $D$ that outputs 0 for everything. Its median is
# {glue:text}`lossd_distance:.3f`, and {glue:text}`near_parity:.0%` of the intervals lie
# within {glue:text}`parity_tol:.2f` of it.
#
# ### The lazy R1 convention
#
# R1 {cite:p}`mescheder2018r1` penalises the discriminator's gradient on real data,
# $\frac{\gamma}{2}\,\mathbb{E}\,\|\nabla_{x_{t-1}} D\|^2$. Lazy regularisation computes it only
# on every $k$-th update, and the two reference codebases weight it differently. The DDGAN code
# {cite:p}`xiao2022ddgan` keeps the weight $\gamma/2$ (convention `ddgan`). StyleGAN2
# {cite:p}`karras2020stylegan2` multiplies it by $k$, so that on average the penalty matches an
# every-step one (convention `stylegan2`). With the DDGAN paper's $\gamma = 0.02$ and
# $k = 15$, the second is 15 times stronger. The profile key `ddgan_r1_convention` chooses
# between them. The runs below differ in nothing else: {glue:text}`r1_steps:,d` generator steps
# each ({glue:text}`r1_minutes:.0f` min per run), EMA decay 0.99, and
# {glue:text}`r1_n:,d` samples per evaluation.

# %% tags=["hide-input"]
r1_runs = {r.config["ddgan_r1_convention"]: r for r in r1_convention_study(cfg)}
glue("r1_steps", int(cfg["r1_study_steps"]), display=False)
glue("r1_minutes", float(max(r.metrics["train"]["wall_time_s"] for r in r1_runs.values()) / 60),
     display=False)
glue("r1_n", int(next(iter(r1_runs.values())).metrics["final"]["n_samples"]), display=False)
lines = ["| convention | weight on a lazy step | median logit gap | late gap "
         "| median distance of D loss from 2 ln 2 | intervals within 0.03 | FID | recall |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
for name, r in r1_runs.items():
    s_ = r.metrics["discriminator"]
    weight = ddgan.r1_weight(cfg["ddgan_r1_gamma"], cfg["ddgan_lazy_r1"], 0, name)
    m = r.metrics["final"]
    lines.append(f"| `{name}` | {weight:g} | {s_['gap_median']:.2f} | {s_['gap_late_mean']:.2f} "
                 f"| {s_['loss_d_distance_median']:.3f} | {s_['near_parity_share']:.0%} "
                 f"| {m['fid']:.2f} | {m['recall']:.3f} |")
    glue(f"r1_{name}_gap", float(s_["gap_median"]), display=False)
    glue(f"r1_{name}_near", float(s_["near_parity_share"]), display=False)
    glue(f"r1_{name}_fid", float(m["fid"]), display=False)
display(Markdown("\n".join(lines)))
stronger_d = max(r1_runs, key=lambda n: r1_runs[n].metrics["discriminator"]["gap_median"])
better_fid = min(r1_runs, key=lambda n: r1_runs[n].metrics["final"]["fid"])
glue("r1_stronger_d", stronger_d, display=False)
glue("r1_better_fid", better_fid, display=False)
glue("r1_agree", "the same convention" if stronger_d == better_fid else "the other convention",
     display=False)

# %% [markdown]
# Over these short runs the discriminator stays further from chance under
# {glue:text}`r1_stronger_d`
# (median logit gap {glue:text}`r1_ddgan_gap:.2f` with `ddgan` against
# {glue:text}`r1_stylegan2_gap:.2f` with `stylegan2`). FID is {glue:text}`r1_ddgan_fid:.1f`
# with `ddgan` and {glue:text}`r1_stylegan2_fid:.1f` with `stylegan2`: the lower comes with
# {glue:text}`r1_better_fid`, {glue:text}`r1_agree` as the stronger discriminator. These are
# single short runs of one seed, so they show the direction of the effect on the
# discriminator, not its size over a whole training run.

# %% tags=["hide-input"]
# one point per distinct training state (a chunk that found training finished repeats the last)
progress = list({p["images_seen"]: p for p in progress}.values())
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
seen = [p["images_seen"] for p in progress]
axes[0].plot(seen, [p["fid"] for p in progress], "o-", label="FID")
axes[0].plot(seen, [p["fid_floor"] for p in progress], "--", color="grey", label="floor")
axes[0].set_yscale("log")
axes[0].set_ylabel("FID")
axes[0].legend(frameon=False, fontsize=8)
axes[1].plot(seen, [p["precision"] for p in progress], "s-", label="precision")
axes[1].plot(seen, [p["recall"] for p in progress], "o-", label="recall")
axes[1].set_ylim(0, 1)
axes[1].set_ylabel("precision, recall")
axes[1].legend(frameon=False, fontsize=8)
axes[2].plot(seen, [p["kid"] for p in progress], "^-", color="tab:red")
axes[2].set_yscale("log")
axes[2].set_ylabel("KID")
for ax in axes:
    ax.set_xlabel("real images shown to D")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
fig.tight_layout()
glue("fig_gan_progress", fig, display=False)
plt.close(fig)
progress_n_samples = int(ddgan_progress_samples(cfg))
glue("progress_n", int(progress_n_samples), display=False)

# %% [markdown]
# ```{glue:figure} fig_gan_progress
# :name: fig-gan-progress
#
# Quality of the EMA generator during training ({glue:text}`progress_n:,d` samples per point),
# each metric on its own axis: FID with its real-data floor (log scale), precision and recall
# (between 0 and 1), and KID (log scale).
# ```
#
# ## Samples and the reverse chain, step by step

# %% tags=["hide-input"]
rows = comparison(cfg)
by_method = {(r.config["method"], r.config["sampler"], r.config["steps"]): r for r in rows}
T = int(cfg["ddgan_timesteps"])
gan_row = by_method[("ddgan", "ddgan", T)]
real = load_fashion_mnist("test")[0][:64]
panels = [("real test images", to_grid(real, nrow=8)),
          (f"DDGAN, T = {T}", plt.imread(gan_row.file("samples.png")))]
for sampler, k, label in (("ancestral", 100, "DDPM, 100 ancestral steps"),
                          ("ddim", 10, "DDIM, 10 steps")):
    if ("ddpm", sampler, k) in by_method:
        panels.append((label, plt.imread(by_method[("ddpm", sampler, k)].file("samples.png"))))
columns = 2 if len(panels) > 2 else len(panels)
rows_ = -(-len(panels) // columns)
fig, axes = plt.subplots(rows_, columns, figsize=(3.3 * columns, 3.55 * rows_), squeeze=False)
for ax in axes.ravel()[len(panels):]:
    ax.set_axis_off()
for ax, (title, image) in zip(axes.ravel(), panels):
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")  # PNGs are RGBA
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
fig.tight_layout()
glue("fig_side_by_side", figure_png(fig), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_side_by_side
# :name: fig-side-by-side
#
# Real test images and the first 64 samples of each evaluation set, at the same scale: DDGAN
# and the DDPM trained under the same budget, sampled with 100 ancestral steps and with 10
# DDIM steps.
# ```

# %% tags=["hide-input"]
generator = ddgan.load_generator(result.file(ddgan.GENERATOR_FILE))  # on the picked device
device = next(generator.parameters()).device
diffusion = ddgan.make_ddgan_diffusion(cfg["ddgan_timesteps"])
_, _, chain = ddgan.ddgan_sample(generator, diffusion, 8, cfg["ddgan_nz"], seed=cfg["seed"],
                                 device=device, return_chain=True)
fig, axes = plt.subplots(T + 1, 8, figsize=(6.4, 0.8 * (T + 1)), squeeze=False)
for row in range(T + 1):  # one row per state, x_T at the top
    for col in range(8):  # one column per chain
        axes[row, col].imshow(chain[row, col, 0].clamp(-1, 1), cmap="gray", vmin=-1, vmax=1,
                              interpolation="nearest")
        axes[row, col].set_xticks([])
        axes[row, col].set_yticks([])
        for spine in axes[row, col].spines.values():
            spine.set_visible(False)
    axes[row, 0].set_ylabel(f"$x_{{{T - row}}}$", rotation=0, ha="right", va="center",
                            fontsize=10)
fig.tight_layout(h_pad=0.3, w_pad=0.3)
glue("fig_gan_chain", figure_png(fig), display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_gan_chain
# :name: fig-gan-chain
#
# Eight reverse chains of the trained model, one per column: pure noise $x_T$ at the top, then
# the state after each of the $T$ steps. Each step predicts $x_0$ and re-noises it to the next,
# smaller noise level.
# ```
#
# ## Against DDPM: quality and diversity
#
# Every row below is an evaluation of {glue:text}`cmp_n:,d` samples. Each metric comes with a 95%
# bootstrap interval: {glue:text}`cmp_boot` resamples of the generated set, with the percentile
# interval shifted by the bootstrap's estimate of its bias, since a resample holds only about
# 63% distinct images. The features come from two extractors.
# - {glue:text}`extractor_a` is the project's pinned classifier.
# - {glue:text}`extractor_b` is an independent one: another architecture without normalisation
#   layers, trained with another optimiser, seed and loss, and without augmentation.
#
# Both have a real-data floor: the same metric computed on as many held-out test images. The
# DDPM rows come from the model trained for the same budget. {glue:text}`reference_note`

# %% tags=["hide-input"]
def interval(m: dict, key: str, fmt: str, scale: float = 1.0) -> str:
    """``value`` over ``[lo, hi]`` (two lines) from a metrics block with an ``uncertainty``."""
    u = m.get("uncertainty", {}).get(key)
    text = format(m[key] * scale, fmt)
    if not u:
        return text
    return f"{text}<br>[{format(u['lo'] * scale, fmt)}, {format(u['hi'] * scale, fmt)}]"


def metric_table(rows: list[tuple[str, str, dict]], columns: tuple[str, ...],
                 floor: dict) -> str:
    """A markdown table: one row per (model, NFE, metrics block), each metric with its interval
    (:func:`interval`), then the real-data floor."""
    titles = {"fid": "FID", "kid": "KID × 10³", "precision": "precision", "recall": "recall",
              "coverage": "coverage"}

    def fmt(c: str) -> str:
        return ".2f" if c in ("fid", "kid") else ".3f"

    def scale(c: str) -> float:
        return 1e3 if c == "kid" else 1.0

    lines = ["| model | NFE | " + " | ".join(titles[c] for c in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for name, nfe, m in rows:
        lines.append(f"| {name} | {nfe} | "
                     + " | ".join(interval(m, c, fmt(c), scale(c)) for c in columns) + " |")
    lines.append("| real test images (floor) | | "
                 + " | ".join(format(floor[c] * scale(c), fmt(c)) for c in columns) + " |")
    return "\n".join(lines)


def label(r) -> tuple[str, str]:
    method, sampler, k = r.config["method"], r.config["sampler"], r.config["steps"]
    if method == "ddgan":
        return "DDGAN", f"{k}"
    name = {"ancestral": "DDPM", "ddim": "DDIM"}[sampler]
    return (name + (" (reference)" if method == "ddpm_reference" else ""), f"{k}")


ordered = [gan_row] + [r for r in rows if r.config["method"] == "ddpm"] + [
    r for r in rows if r.config["method"] == "ddpm_reference"]
floor_a, floor_b = gan_row.metrics["floor"], gan_row.metrics["second"]["floor"]
names_of = {"a": f"the pinned extractor, {gan_row.metrics['extractor']['name']}",
            "b": f"the second extractor, {gan_row.metrics['second']['extractor']['name']}"}
for extractor, columns in (("a", ("fid", "kid", "precision", "recall", "coverage")),
                           ("b", ("fid", "precision", "recall", "coverage"))):
    table = [(*label(r), r.metrics if extractor == "a" else r.metrics["second"])
             for r in ordered]
    display(Markdown(f"**Under {names_of[extractor]}**" + (" (its KID not shown)"
                                                             if extractor == "b" else "")))
    display(Markdown(metric_table(table, columns, floor_a if extractor == "a" else floor_b)))
glue("cmp_n", int(gan_row.metrics["n_samples"]), display=False)
glue("cmp_boot", int(gan_row.config["bootstrap"]), display=False)
glue("extractor_a", gan_row.metrics["extractor"]["name"], display=False)
glue("extractor_b", gan_row.metrics["second"]["extractor"]["name"], display=False)
reference_device = cost([ddpm_model(cfg)])["devices"]
glue("reference_note", "The last rows, marked reference, are chapter 3's DDPM, trained for "
     f"longer on {reference_device}: a separate point of reference, not part of the comparison."
     if any(r.config["method"] == "ddpm_reference" for r in rows) else
     f"Chapter 3's DDPM, trained for longer on {reference_device}, is not part of this "
     "comparison; its own evaluations are in chapter 3.", display=False)

# %% [markdown]
# NFE: network evaluations per image. Under each value: its 95% bootstrap interval over the
# generated samples. Both tables score the same samples.

# %% tags=["hide-input"]
pair_rows = [gan_row] + [r for r in rows if r.config["method"] == "ddpm"]
names = {r.key: " ".join(label(r)).replace(" ", "-", 1) for r in pair_rows}


def order(extractor: str) -> list[str]:
    def fid(r):
        return r.metrics["fid"] if extractor == "a" else r.metrics["second"]["fid"]
    return [names[r.key] for r in sorted(pair_rows, key=fid)]


order_a, order_b = order("a"), order("b")
glue("order_a", ", ".join(order_a), display=False)
glue("order_b", ", ".join(order_b), display=False)
swapped = [(x, y) for i, x in enumerate(order_a) for y in order_a[i + 1:]
           if order_b.index(x) > order_b.index(y)]
glue("extractors_agree", "The two extractors rank the models the same way."
     if not swapped else "They disagree on " + "; ".join(
         f"{x} against {y}" for x, y in swapped) + ".", display=False)
fids = [p["fid"] for p in progress]
glue("trend_note", f"DDGAN's FID was still falling when its budget ran out ({fids[0]:.1f} after "
     f"the first quarter of training, {fids[-1]:.1f} at the end, {progress_n_samples:,d} "
     "samples each), and its discriminator sat within "
     f"{state['loss_tol']:.2f} of chance in {state['near_parity_share']:.0%} of the logged "
     "intervals: at this budget the table measures how much each method learns in the same "
     "time on this CPU, not where DDGAN's training would end."
     if len(fids) > 1 and all(b < a for a, b in zip(fids, fids[1:])) else "", display=False)
ddpm100 = by_method.get(("ddpm", "ancestral", 100))
gan_fid, gan_u = gan_row.metrics["fid"], gan_row.metrics["uncertainty"]["fid"]
glue("gan_fid", float(gan_fid), display=False)
glue("gan_recall", float(gan_row.metrics["recall"]), display=False)
if ddpm100 is not None:
    d_u = ddpm100.metrics["uncertainty"]["fid"]
    glue("ddpm100_fid", float(ddpm100.metrics["fid"]), display=False)
    overlap = not (gan_u["hi"] < d_u["lo"] or d_u["hi"] < gan_u["lo"])
    verdict = ("within each other's intervals" if overlap else
               "better for DDGAN" if gan_fid < ddpm100.metrics["fid"] else "better for DDPM")
    glue("quality_verdict", f"DDGAN's FID is {gan_fid:.2f} against {ddpm100.metrics['fid']:.2f} "
         f"for DDPM with 100 ancestral steps: {verdict}", display=False)
else:
    glue("quality_verdict", f"DDGAN's FID is {gan_fid:.2f} (no 100-step DDPM row in this "
         "profile)", display=False)

# %% [markdown]
# At equal budget, {glue:text}`quality_verdict`. Ordered from best to worst FID, the pinned
# extractor ranks the models {glue:text}`order_a`, and the second extractor ranks them
# {glue:text}`order_b`. {glue:text}`extractors_agree` {glue:text}`trend_note`
#
# ### The full chain, at n = {glue:text}`chain_n:,d`
#
# {glue:text}`chain_intro` Chapter 7 draws every sampler of the same pair at
# {glue:text}`chain_n:,d` images, with its own seeds. Here are the models of the table above
# at that common n, under the pinned extractor, with 95% bootstrap intervals. DDIM uses
# trailing spacing there, which chapter 3 found better at few steps.

# %% tags=["hide-input"]
chain_ks = {int(k) for _, k in cfg["comparison_ddpm"]}
full_k = max((int(k) for s_, _, k in cfg["frontier_ddpm"] if s_ == "ancestral"), default=0)
chain_points = [(s_, sp, int(k)) for s_, sp, k in cfg["frontier_ddpm"]
                if s_ in ("ddim", "ancestral") and (int(k) in chain_ks or int(k) == full_k)]
chain_rows = [("DDGAN", int(cfg["ddgan_timesteps"]), frontier_point(cfg, "ddgan"))] + [
    ({"ancestral": "DDPM", "ddim": "DDIM"}[s_] + (" (trailing)" if sp == "trailing" else ""),
     k, frontier_point(cfg, "ddpm", s_, k, sp))
    for s_, sp, k in sorted(chain_points, key=lambda p: (p[0] == "ancestral", p[2]))]
display(Markdown(metric_table([(name, f"{k:,d}", r.metrics) for name, k, r in chain_rows],
                              ("fid", "kid", "precision", "recall", "coverage"),
                              chain_rows[0][2].metrics["floor"])))
glue("chain_n", int(chain_rows[0][2].metrics["n_samples"]), display=False)
in_table = ["ancestral", full_k] in [[s_, int(k)] for s_, k in cfg["comparison_ddpm"]]
glue("chain_intro", "This profile's frontier draws no ancestral chain." if not full_k else
     f"The table above includes DDPM's chain of {full_k:,d} ancestral steps." if in_table else
     f"The table above has no row for DDPM's full chain of {full_k:,d} ancestral steps.",
     display=False)
by_k = {(name, k): r for name, k, r in chain_rows}
full_row, row100 = by_k.get(("DDPM", full_k)), by_k.get(("DDPM", 100))


def fid_with_interval(r) -> str:
    u = r.metrics["uncertainty"]["fid"]
    return f"{r.metrics['fid']:.2f} [{u['lo']:.2f}, {u['hi']:.2f}]"


if full_row is not None and row100 is not None and full_row is not row100:
    f_u, h_u = full_row.metrics["uncertainty"]["fid"], row100.metrics["uncertainty"]["fid"]
    apart = f_u["hi"] < h_u["lo"] or h_u["hi"] < f_u["lo"]
    glue("full_chain_text", f"With all {full_k:,d} steps, DDPM scores FID "
         f"{fid_with_interval(full_row)} and recall {full_row.metrics['recall']:.3f}, against "
         f"{fid_with_interval(row100)} and {row100.metrics['recall']:.3f} with 100 steps "
         f"(the full chain's {full_row.metrics['n_samples']:,d} images took "
         f"{full_row.metrics['sampling_seconds'] / 60:.0f} min to draw on "
         f"{device_label(full_row.manifest)}): " + (
             "the intervals overlap, so the other " f"{full_k - 100:,d} steps buy nothing this "
             "n can tell apart" if not apart else "the intervals do not overlap: the other "
             f"{full_k - 100:,d} steps " + ("lower FID" if full_row.metrics["fid"]
                                             < row100.metrics["fid"] else "raise FID")
         ) + f". DDGAN, with {cfg['ddgan_timesteps']} steps, scores "
         f"{fid_with_interval(chain_rows[0][2])} and recall "
         f"{chain_rows[0][2].metrics['recall']:.3f}.", display=False)
else:
    glue("full_chain_text", "This profile draws no full chain beside a 100-step one, so the "
         "table holds the models it has.", display=False)

# %% [markdown]
# {glue:text}`full_chain_text`
#
# ## Speed, three ways
#
# All timings below come from one run on one device, {glue:text}`speed_run_device`. They use
# one harness: batches of
# {glue:text}`speed_batch`, a warm-up, then the median of repeats. The networks are the pair
# above.

# %% tags=["hide-input"]
speed_result = speed_comparison(cfg)
speed = speed_result.metrics
timed = speed["timed"]
K_full = speed_result.config["ddpm_steps_ancestral"]
glue("speed_device", timed["ddgan"]["device_name"], display=False)
glue("speed_threads", int(timed["ddgan"]["num_threads"]), display=False)
glue("speed_batch", int(timed["ddgan"]["batch_size"]), display=False)
glue("speed_wall_s", float(speed_result.manifest["wall_time_s"]), display=False)
glue("speed_run_device", device_label(speed_result.manifest), display=False)
glue("k_full", int(K_full), display=False)
glue("width_text", "at the same network width" if cfg["ddgan_channels"] == cfg["ddpm_channels"]
     else f"with the generator at channels {cfg['ddgan_channels']} against the UNet's "
     f"{cfg['ddpm_channels']}", display=False)
glue("gan_ms", float(timed["ddgan"]["seconds_per_image"] * 1e3), display=False)
glue("full_ms", float(timed[f"ancestral_{K_full}"]["seconds_per_image"] * 1e3), display=False)
glue("per_image_ratio", float(speed["per_image_vs_full_chain"]), display=False)
glue("nfe_ratio", float(speed["nfe_ratio"]), display=False)
glue("per_nfe_ratio", float(speed["per_nfe_ratio"]), display=False)
glue("gan_nfe_ms", float(timed["ddgan"]["seconds_per_nfe"] * 1e3), display=False)
glue("unet_nfe_ms", float(timed[f"ancestral_{K_full}"]["seconds_per_nfe"] * 1e3),
     display=False)
matched = speed["matched"]
if matched.get("sampler"):
    name = {"ancestral": "DDPM", "ddim": "DDIM"}[matched["sampler"]]
    glue("matched_text", f"The cheapest DDPM sampler of the table whose FID is at most DDGAN's "
         f"({matched['ddgan_fid']:.2f}) is {name} with {matched['steps']} steps (FID "
         f"{matched['fid']:.2f}). DDGAN is {matched['ratio']:.1f} times faster per image than "
         "it", display=False)
    glue("matched_ratio_text", f"{matched['ratio']:.1f} times", display=False)
else:
    glue("matched_text", "No DDPM sampler of the table reaches DDGAN's FID "
         f"({matched['ddgan_fid']:.2f}), so this ratio is not defined here", display=False)
    glue("matched_ratio_text", "not defined (no DDPM sampler of the table reaches DDGAN's FID)",
         display=False)

# %% [markdown]
# 1. **Per image, each method on its own network.** DDGAN takes {glue:text}`gan_ms:.2f` ms
#    per image, and DDPM with all {glue:text}`k_full:,d` ancestral steps takes
#    {glue:text}`full_ms:,.0f` ms. DDGAN is {glue:text}`per_image_ratio:,.0f` times faster.
# 2. **Per network evaluation, at equal width.** One evaluation of the generator costs
#    {glue:text}`gan_nfe_ms:.1f` ms per batch, and one of the UNet
#    {glue:text}`unet_nfe_ms:.1f` ms (batches of {glue:text}`speed_batch`), a ratio of
#    {glue:text}`per_nfe_ratio:.2f`, UNet to generator. The per-image speed-up is this ratio
#    times the ratio of evaluations, {glue:text}`nfe_ratio:.0f`.
# 3. **At matched quality.** {glue:text}`matched_text`.
#
# The first ratio is the one papers quote. The third is the one a user with a quality target
# gets.

# %% tags=["hide-input"]
# what executing this page cost (shown in the box at the top)
everything = cost([result, ddpm_pair, *r1_runs.values(), *rows, speed_result,
                   *(r for _, _, r in chain_rows)])
glue("gan_where", everything["where"], display=False)
glue("gan_source", everything["source"], display=False)
glue("pair_wall_min", float((result.manifest["wall_time_s"] + ddpm_pair.manifest["wall_time_s"])
                            / 60), display=False)
glue("r1_wall_min", float(cost(r1_runs.values())["seconds"] / 60), display=False)
glue("eval_wall_min", float(cost(rows)["seconds"] / 60), display=False)
glue("chain_wall_min", float(cost([r for _, _, r in chain_rows])["seconds"] / 60), display=False)
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
