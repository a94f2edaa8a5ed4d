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
# **Cost.** The FashionMNIST results were {glue:text}`gan_source`; all were computed
# {glue:text}`gan_where`: the DDGAN was trained and evaluated in {glue:text}`gan_wall_min:.0f` min on
# {glue:text}`gan_device`, the two head-ablation runs took {glue:text}`abl_wall_min:.0f` min
# on {glue:text}`abl_device`, and the speed measurement {glue:text}`speed_wall_s:.0f` s on
# {glue:text}`speed_run_device`. The DDPM numbers compared with come from the previous chapter,
# computed on {glue:text}`ddpm_device_here`. The toy DDGAN is trained afresh each time
# ({glue:text}`toy_seconds:.0f` s). Executing this page took {glue:text}`chapter_seconds:.0f` s
# on {glue:text}`chapter_device`.
# ````
#
# The previous chapters showed why a diffusion model needs many steps: its reverse kernel is a
# Gaussian, and the true reverse kernel $q(x_{t-1} \mid x_t)$ is close to Gaussian only when
# the step is small. Denoising Diffusion GAN {cite:p}`xiao2022ddgan` keeps the forward process
# and replaces the Gaussian kernel by an implicit, multimodal one: a conditional generator
# trained adversarially at every step. With four steps it samples two orders of magnitude faster
# than DDPM.

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

# %% tags=["hide-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from ddgan_core import ddgan, ddpm, toy
from ddgan_core.experiments import (
    ddgan_head_ablation,
    ddgan_model,
    ddgan_progress_samples,
    ddpm_fig1,
    ddpm_model,
    sampling_speed,
)
from ddgan_core.plotting import (
    cost,
    device_label,
    figure_png,
    grid_image,
    machine_label,
    provenance,
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
# $T = 2$ each step is huge, and $q(x_{t-1} \mid x_t)$ for a point $x_t$ near the centre is
# spread over several of the eight modes: no Gaussian can fit it. The same DDGAN code, with
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
x_t = torch.tensor([0.3, -0.2])
last = 0  # 0-based step of the last reverse step, x_1 -> x_0 (the caption's kernel)
true = toy.true_reverse_samples("8gaussians", diffusion2, x_t, last, 2000, gen)
model = toy.model_reverse_samples(toy_run["G"], diffusion2, x_t, last, 2000, toy_run["nz"], gen)
gauss = true.mean(0) + torch.randn(2000, 2, generator=gen) * true.std(0)
data = toy.sample_mixture("8gaussians", 2000, gen)
fig, axes = plt.subplots(2, 2, figsize=(6.4, 6.4), sharex=True, sharey=True)
axes = axes.ravel()
panels = [
    (data, "data $x_0$"),
    (true, "true $q(x_0 | x_1)$"),
    (gauss, "best Gaussian (same mean, covariance)"),
    (model, r"DDGAN $p_\theta(x_0 | x_1)$"),
]
for ax, (points, title) in zip(axes, panels):
    ax.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.4)
    ax.scatter([x_t[0]], [x_t[1]], marker="x", color="red", s=40)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
axes[0].set_xlim(-3, 3)
axes[0].set_ylim(-3, 3)
fig.tight_layout()
glue("fig_toy_kernel", figure_png(fig), display=False)  # 8,000 points: PNG, not SVG

# %% [markdown]
# ```{glue:figure} fig_toy_kernel
# :name: fig-toy-kernel
#
# The reverse kernel of the last step of a $T = 2$ chain, from $x_1$ to the data, at one point
# $x_1$ (red cross), on the 8-Gaussian mixture; 2,000 draws per panel. A Gaussian kernel with
# the right mean and covariance puts its mass between the modes; DDGAN's implicit kernel follows
# the modes.
# ```
#
# Trained for {glue:text}`toy_steps:,d` steps ({glue:text}`toy_seconds:.0f` s on the CPU), the
# two-step DDGAN covers {glue:text}`toy_modes` of {glue:text}`toy_n_modes` modes with
# {glue:text}`toy_hq:.0%` of its samples within three standard deviations of a mode centre.
#
# ## Training on FashionMNIST

# %% tags=["hide-input"]
result = ddgan_model(cfg)
train = result.metrics["train"]
final = result.metrics["final"]
progress = result.metrics["progress"]
glue("g_params", int(train["generator_parameters"]), display=False)
glue("g_params_millions", float(train["generator_parameters"] / 1e6), display=False)
glue("d_params", int(train["discriminator_parameters"]), display=False)
glue("d_params_millions", float(train["discriminator_parameters"] / 1e6), display=False)
glue("gan_T", int(cfg["ddgan_timesteps"]), display=False)
glue("gan_steps", int(train["train_steps"]), display=False)
glue("gan_images", int(train["images_seen"]), display=False)
glue("gan_minutes", float(train["wall_time_s"] / 60), display=False)
glue("gan_device", device_label(result.manifest), display=False)
glue("gan_device_name", device_label({"device": result.manifest["device"]}), display=False)
glue("gan_wall_min", float(result.manifest["wall_time_s"] / 60), display=False)
glue("gan_provenance", provenance(result), display=False)
glue("gan_stall", float(train["stall_fraction"]), display=False)
glue("gan_r1", cfg["ddgan_r1_gamma"], display=False)  # the profile's int or float, shown as is
glue("gan_nz", int(cfg["ddgan_nz"]), display=False)
glue("gan_dsteps", int(cfg["ddgan_d_steps"]), display=False)

# %% [markdown]
# The generator is the DDPM chapter's UNet with a latent input: $z$ ({glue:text}`gan_nz`
# dimensions) passes through a mapping network and sets the scale and shift of every group
# normalisation (adaptive group norm, as in StyleGAN {cite:p}`karras2019stylegan`); it has
# {glue:text}`g_params_millions:.2f` M parameters. The discriminator
# ({glue:text}`d_params_millions:.2f` M) concatenates
# $x_{t-1}$ and $x_t$ on channels, adds the time embedding inside its residual blocks, appends
# a minibatch standard-deviation feature {cite:p}`karras2018progressive` and ends with a
# flattened head (a linear layer over the whole $7 \times 7$ feature map, as StyleGAN2's
# {cite:p}`karras2020stylegan2`; the next section shows why). Training: Adam
# with $\beta = (0.5, 0.9)$, cosine learning-rate decay, R1 weight $\gamma =$
# {glue:text}`gan_r1`, {glue:text}`gan_dsteps` discriminator update(s) per generator update, an
# EMA of the generator. $T =$ {glue:text}`gan_T`, {glue:text}`gan_steps:,d` steps
# ({glue:text}`gan_images:,d` real images shown to D) in {glue:text}`gan_minutes:.1f` minutes on
# {glue:text}`gan_device`. (Result cache: {glue:text}`gan_provenance`.)

# %% tags=["hide-input"]
history = train["history"]
steps = [h["step"] for h in history]
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
axes[0].plot(steps, [h["loss_d"] for h in history], label="D")
axes[0].plot(steps, [h["loss_g"] for h in history], label="G")
axes[0].axhline(2 * np.log(2), color="grey", ls=":", lw=1, label="2 ln 2 (parity)")
axes[0].set_xlabel("step")
axes[0].set_ylabel("loss")
axes[0].legend(frameon=False, fontsize=8)
axes[1].plot(steps, [h["gap"] for h in history])
axes[1].axhline(0, color="grey", lw=0.8)
axes[1].set_xlabel("step")
axes[1].set_ylabel("mean D(real) - D(fake) (logits)")
axes[2].plot(steps, [h["r1"] for h in history])
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
# Training curves: the two losses, the gap between the discriminator's logits on real and fake
# pairs, and the R1 term. A gap stuck at zero with the D loss at $2\ln 2$ is the stall that a
# weak discriminator produces; here that happened in {glue:text}`gan_stall:.0%` of the logging
# intervals.
# ```
#
# ### The discriminator's head
#
# Most image discriminators, DDGAN's included, end by pooling their last feature map over
# positions and applying one linear layer. At initialisation such a network is close to linear
# (a LeakyReLU with slope 0.2 bends little), and a linear map followed by a spatial average
# depends on little more than the mean intensity of its two input images. A generator can
# match mean intensities within a few dozen steps; the discriminator's logits on real and fake
# pairs then coincide, its loss sits at $2 \ln 2$, R1 drops towards zero, and the gradients
# that would teach it spatial features are second-order small. A flattened head, a linear layer
# over every position of the last feature map, sees *where* the intensity is from the first
# step. The two heads are compared below on short runs that differ in nothing else.

# %% tags=["hide-input"]
ablation = {r.config["ddgan_d_head"]: r for r in ddgan_head_ablation(cfg)}
abl_steps = cfg["head_ablation_steps"]
glue("abl_steps", int(abl_steps), display=False)
glue("abl_n", int(ablation["flatten"].metrics["final"]["n_samples"]), display=False)
abl_cost = cost(ablation.values())
glue("abl_wall_min", float(abl_cost["seconds"] / 60), display=False)
glue("abl_device", abl_cost["devices"], display=False)
for head, r in ablation.items():
    hist = r.metrics["train"]["history"]
    late = hist[len(hist) // 2:]
    glue(f"abl_{head}_fid", float(r.metrics["final"]["fid"]), display=False)
    glue(f"abl_{head}_recall", float(r.metrics["final"]["recall"]), display=False)
    glue(f"abl_{head}_gap", float(np.mean([h["gap"] for h in late])), display=False)
    glue(f"abl_{head}_r1", float(np.nanmean([h["r1"] for h in late])), display=False)
    glue(f"abl_{head}_stall", float(r.metrics["train"]["stall_fraction"]), display=False)
fid_mean, fid_flat = (ablation[h].metrics["final"]["fid"] for h in ("mean", "flatten"))
glue("abl_verdict", "The flattened head also gives the better generator at this point."
     if fid_flat < fid_mean else
     "At this point, though, the better generator is the mean head's: a discriminator that "
     "stays ahead does not by itself make the generator learn faster in the first few hundred "
     "steps, and the head is chosen here for the stability of long runs, not for a head start.",
     display=False)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for head, r in ablation.items():
    hist = r.metrics["train"]["history"]
    x = [h["step"] for h in hist]
    axes[0].plot(x, [h["gap"] for h in hist], label=f"{head} head")
    axes[1].plot(x, [h["loss_d"] for h in hist], label=f"{head} head")
    axes[2].plot(x, [h["r1"] for h in hist], ".", ms=3, label=f"{head} head")
axes[0].axhline(0, color="grey", lw=0.8)
axes[0].set_ylabel("mean D(real) - D(fake) (logits)")
axes[1].axhline(2 * np.log(2), color="grey", ls=":", lw=1, label="2 ln 2")
axes[1].set_ylabel("D loss")
axes[2].set_yscale("log")
axes[2].set_ylabel(r"R1: $E\|\nabla D\|^2$")
for ax in axes:
    ax.set_xlabel("generator step")
    ax.legend(frameon=False, fontsize=8)
fig.tight_layout()
glue("fig_head_ablation", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_head_ablation
# :name: fig-head-ablation
#
# Two runs of {glue:text}`abl_steps:,d` generator steps with the settings above, one with a
# mean-pooled head and one with the flattened head. Over the second half of the runs the mean
# logit gap is {glue:text}`abl_mean_gap:.2f` (mean head) against
# {glue:text}`abl_flatten_gap:.2f` (flatten head), and the R1 term
# {glue:text}`abl_mean_r1:.4f` against {glue:text}`abl_flatten_r1:.4f`.
# ```
#
# After these short runs the EMA generators (decay 0.99) reach FID
# {glue:text}`abl_mean_fid:.1f` with the mean head and {glue:text}`abl_flatten_fid:.1f` with the
# flattened one (recall {glue:text}`abl_mean_recall:.3f` and
# {glue:text}`abl_flatten_recall:.3f`; {glue:text}`abl_n:,d` samples each). The share of logging
# intervals at parity was {glue:text}`abl_mean_stall:.0%` and {glue:text}`abl_flatten_stall:.0%`.
# {glue:text}`abl_verdict`

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
n_progress = ddgan_progress_samples(cfg)
glue("progress_n", int(n_progress), display=False)

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
# the 8 x 8 grid the cache stored with the final evaluation, at twice its size
glue("fig_gan_samples", grid_image(result.file("samples.png"), scale=2), display=False)

# %% [markdown]
# ```{glue:figure} fig_gan_samples
# :name: fig-gan-samples
#
# 64 samples of the final EMA generator ($T = $ {glue:text}`gan_T` steps), from its evaluation
# set, shown at twice their size.
# ```

# %% tags=["hide-input"]
generator = ddgan.load_generator(result.file(ddgan.GENERATOR_FILE))  # on the picked device
device = next(generator.parameters()).device
diffusion = ddgan.make_ddgan_diffusion(cfg["ddgan_timesteps"])
_, _, chain = ddgan.ddgan_sample(generator, diffusion, 8, cfg["ddgan_nz"], seed=cfg["seed"],
                                 device=device, return_chain=True)
T = cfg["ddgan_timesteps"]
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

# %% [markdown]
# ```{glue:figure} fig_gan_chain
# :name: fig-gan-chain
#
# Eight reverse chains of the trained model, one per column: pure noise $x_T$ at the top, then
# the state after each of the $T$ steps. Each step predicts $x_0$ and re-noises it to the next,
# smaller noise level.
# ```
#
# ## Against DDPM: quality, diversity and speed

# %% tags=["hide-input"]
grid = ddpm_fig1(cfg)
rows = {(r.config["sampler"], r.config["steps"]): r.metrics for r in grid}
ddpm_full = rows.get(("ancestral", max(cfg["ddpm_step_grid"])))
ddim_rows = sorted((k, m) for (s, k), m in rows.items() if s == "ddim")
# FID is biased upwards at small n, so the DDIM match uses DDGAN's FID at the grid's sample
# count: the last progress point is the final EMA generator at n_progress samples
grid_n = ddpm_full["n_samples"]
gan_fid_grid_n = progress[-1]["fid"] if n_progress == grid_n else final["fid"]
match = next(((k, m) for k, m in ddim_rows if m["fid"] <= gan_fid_grid_n), None)
glue("gan_fid_grid_n", float(gan_fid_grid_n), display=False)
glue("grid_n", int(grid_n if n_progress == grid_n else final["n_samples"]), display=False)
speed_result = sampling_speed(cfg)
speed = speed_result.metrics
glue("speed_wall_s", float(speed_result.manifest["wall_time_s"]), display=False)
glue("speed_run_device", device_label(speed_result.manifest), display=False)
gan_cost = cost([result, *ablation.values(), speed_result])
glue("gan_where", gan_cost["where"], display=False)
glue("gan_source", gan_cost["source"], display=False)
glue("ddpm_device_here", cost(grid + [ddpm_model(cfg)])["devices"], display=False)
K_max = max(cfg["ddpm_step_grid"])
ratio = speed["speedup_vs_ddpm_last"]
glue("speed_device", speed["ddgan"]["device_name"], display=False)
glue("nfe_ratio", float(K_max / cfg["ddgan_timesteps"]), display=False)
ddpm_params = sum(p.numel() for p in ddpm.make_model(cfg).parameters())
glue("ddpm_params_here", int(ddpm_params), display=False)
glue("ddpm_params_here_millions", float(ddpm_params / 1e6), display=False)
glue("speed_batch", int(speed["ddgan"]["batch_size"]), display=False)
glue("speed_threads", int(speed["ddgan"]["num_threads"]), display=False)
glue("gan_fid", float(final["fid"]), display=False)
glue("gan_recall", float(final["recall"]), display=False)
# sampling time in milliseconds per image
glue("gan_spi", float(speed["ddgan"]["seconds_per_image"] * 1e3), display=False)
glue("ddpm_spi", float(speed[f"ddpm_{K_max}"]["seconds_per_image"] * 1e3), display=False)
glue("gan_floor", float(final["fid_floor"]), display=False)
glue("gan_n", int(final["n_samples"]), display=False)
glue("ddpm_full_fid", float(ddpm_full["fid"]), display=False)
glue("ddpm_full_k", int(max(cfg["ddpm_step_grid"])), display=False)
if match:
    glue("ddim_match", f"DDIM first matches DDGAN's FID at K = {match[0]} "
         f"(FID {match[1]['fid']:.2f})", display=False)
else:
    best_ddim = min(ddim_rows, key=lambda km: km[1]["fid"])
    glue("ddim_match", f"DDIM does not reach DDGAN's FID at any K of the grid (its best is "
         f"{best_ddim[1]['fid']:.2f}, at K = {best_ddim[0]})", display=False)
glue("speed_ratio", float(ratio), display=False)
ddpm100 = rows.get(("ancestral", 100))
if ddpm100:  # the number, for sweeps; only where K = 100 is in this profile's grid
    glue("ddpm100_fid", float(ddpm100["fid"]), display=False)
# the prose's text: the number, or "n/a"
glue("ddpm100_fid_text", f"{ddpm100['fid']:.2f}" if ddpm100 else "n/a", display=False)

# %% tags=["hide-input"]
table = [("DDGAN", f"T = {T}", final, speed["ddgan"]),
         ("DDPM, ancestral", f"K = {K_max}", ddpm_full, speed[f"ddpm_{K_max}"]),
         ("DDPM, ancestral", "K = 100", rows.get(("ancestral", 100)), speed.get("ddpm_100"))]
if match:
    table.append(("DDIM", f"K = {match[0]}", match[1], None))
lines = ["| model | steps = NFE | FID | recall | precision | ms / image | n |",
         "|---|---|---:|---:|---:|---:|---:|"]
for name, steps_text, m, timing in table:
    if m is None:
        continue
    ms = f"{timing['seconds_per_image'] * 1e3:,.2f}" if timing else "not timed"
    lines.append(
        f"| {name} | {steps_text} | {m['fid']:.2f} | {m['recall']:.3f} | {m['precision']:.3f} "
        f"| {ms} | {m['n_samples']:,} |"
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# n: samples of the FID evaluation. ms / image: sampling time on {glue:text}`speed_device`
# ({glue:text}`speed_threads` threads), measured as described below; DDIM's row was not timed
# on this device.

# %% [markdown]
# DDGAN with $T =$ {glue:text}`gan_T` reaches FID {glue:text}`gan_fid:.2f` (recall
# {glue:text}`gan_recall:.3f`, {glue:text}`gan_n:,d` samples; floor {glue:text}`gan_floor:.2f`),
# against {glue:text}`ddpm_full_fid:.2f` for DDPM with all {glue:text}`ddpm_full_k` ancestral
# steps and {glue:text}`ddpm100_fid_text` with 100 (those with {glue:text}`grid_n:,d` samples,
# where DDGAN's final generator scores {glue:text}`gan_fid_grid_n:.2f`; FID grows as n shrinks,
# so the DDIM match uses that value); {glue:text}`ddim_match`.
#
# Speed was measured for both trained networks with the same harness on one device
# ({glue:text}`speed_device`, {glue:text}`speed_threads` threads, batches of
# {glue:text}`speed_batch`, warm-up then the median of repeats): DDGAN takes
# {glue:text}`gan_spi:.2f` ms per image and DDPM with {glue:text}`ddpm_full_k` steps
# {glue:text}`ddpm_spi:.1f` ms, a ratio of {glue:text}`speed_ratio:,.0f`. The ratio of network
# evaluations alone is {glue:text}`nfe_ratio:.0f`; the rest comes from the cost of one
# evaluation, which differs between the two networks here ({glue:text}`g_params_millions:.2f` M
# for the generator, {glue:text}`ddpm_params_here_millions:.2f` M for DDPM's
# $\varepsilon_\theta$).
#
# ```{note}
# The quality comparison is not between equals. In this profile the DDGAN generator
# ({glue:text}`g_params_millions:.2f` M) was trained for {glue:text}`gan_steps:,d` generator
# steps in {glue:text}`gan_minutes:.1f` minutes on {glue:text}`gan_device`, and its training sat
# at the discriminator-generator parity described above in {glue:text}`gan_stall:.0%` of the
# logging intervals; the DDPM it is compared with was trained and evaluated on
# {glue:text}`ddpm_device_here`. The speed ratio does not depend on training; the FID gap does, and a longer
# run (`--set ddgan_train_steps=...`) or the `full` profile is where DDGAN's quality should be
# judged.
# ```

# %% tags=["hide-input"]
# what executing this page cost (shown in the box at the top)
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
