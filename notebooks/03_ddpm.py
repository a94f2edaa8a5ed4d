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
# Everything that follows is measured against this chapter's model: a denoising diffusion
# probabilistic model {cite:p}`ho2020ddpm` trained on FashionMNIST, sampled with fewer and
# fewer reverse steps. The seed paper's only figure, FID against the number of steps
# {cite:p}`okhotnikov_seed`, is reproduced here for two samplers: the ancestral sampler of DDPM on
# a respaced chain {cite:p}`nichol2021improved` and the deterministic DDIM sampler
# {cite:p}`song2021ddim`.

# %% tags=["parameters"]
profile = "cpu"
seed = None
ddpm_train_steps = None
ddpm_grid_samples = None

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from myst_nb import glue

from ddgan_core.experiments import ddpm_fig1, ddpm_model
from ddgan_core.plotting import BOOK_STYLE
from ddgan_core.profiles import get_profile, overrides_from

cfg = get_profile(profile, **overrides_from(globals()))  # every profile key papermill passed
plt.rcParams.update(BOOK_STYLE)

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

# %% tags=["remove-cell"]
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
glue("ddpm_device", manifest["device"], display=False)
glue("ddpm_final_loss", float(train["final_loss"]), display=False)
glue("ddpm_provenance", model_result.provenance(), display=False)

# %% [markdown]
# With channel widths {glue:text}`ddpm_channels` the network has
# {glue:text}`ddpm_params_millions:.2f` M parameters. It saw {glue:text}`ddpm_images_seen:,d`
# training images ({glue:text}`ddpm_steps:,d` steps of {glue:text}`ddpm_batch`,
# {glue:text}`ddpm_epochs:.1f` epochs) in {glue:text}`ddpm_train_minutes:.1f` minutes at
# {glue:text}`ddpm_train_rate:.0f` images/s on {glue:text}`ddpm_device`. (Result cache:
# {glue:text}`ddpm_provenance`.)

# %% tags=["remove-input"]
history = train["history"]
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
steps = [h["step"] for h in history]
axes[0].plot(steps, [h["loss"] for h in history])
axes[0].set_yscale("log")
axes[0].set_xlabel("training step")
axes[0].set_ylabel(r"$\|\varepsilon - \varepsilon_\theta(x_t, t)\|^2$ (mean per pixel)")
axes[1].imshow(plt.imread(model_result.file("samples.png")), cmap="gray")
axes[1].set_axis_off()
axes[1].set_title("EMA model, 100 ancestral steps", fontsize=9)
fig.tight_layout()
glue("fig_ddpm_training", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_ddpm_training
# :name: fig-ddpm-training
#
# Left: the training loss (averaged between log points). Right: samples of the EMA model with
# 100 ancestral steps.
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
# (`ddgan_core.metrics`; Inception weights cannot be downloaded on these machines), with KID,
# precision and recall beside it. The *floor* is the same FID computed for held-out test images:
# no generator can be expected to score below it at this sample count.

# %% tags=["remove-cell"]
points = ddpm_fig1(cfg)
rows = []
for result in points:
    m = result.metrics
    rows.append({
        "sampler": result.config["sampler"], "K": result.config["steps"], "nfe": m["nfe"],
        "fid": m["fid"], "kid": m["kid"], "precision": m["precision"], "recall": m["recall"],
        "density": m["density"], "coverage": m["coverage"], "floor": m["fid_floor"],
        "n": m["n_samples"], "spi": m["seconds_per_image"], "device": result.manifest["device"],
    })
n_eval = rows[0]["n"]
floor = rows[0]["floor"]
by = {(r["sampler"], r["K"]): r for r in rows}
glue("fig1_n", int(n_eval), display=False)
glue("fig1_floor", float(floor), display=False)
glue("fig1_device", rows[0]["device"], display=False)
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

# %% tags=["remove-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for sampler, marker in (("ancestral", "o-"), ("ddim", "s-")):
    sel = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["K"])
    axes[0].plot([r["K"] for r in sel], [r["fid"] for r in sel], marker, label=sampler)
    axes[1].plot([r["K"] for r in sel], [r["spi"] * 1e3 for r in sel], marker, label=sampler)
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
# count. Right: sampling time per image, measured once while sampling each evaluation set (on
# {glue:text}`fig1_device`, without a separate warm-up: the first point computed, K = 1, also
# carries the device's start-up cost).
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

# %% tags=["remove-input"]
lines = ["| sampler | K = NFE | FID | KID x 1e3 | precision | recall | density | coverage "
         "| ms/image |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in sorted(rows, key=lambda r: (r["sampler"], r["K"])):
    lines.append(
        f"| {r['sampler']} | {r['K']} | {r['fid']:.2f} | {r['kid'] * 1e3:.2f} | "
        f"{r['precision']:.3f} | {r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} "
        f"| {r['spi'] * 1e3:.2f} |"
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## What this profile is
#
# Numbers in this chapter come from the result cache, computed with the profile and on the
# device stated above; the sizes of each profile are in `ddgan_core/profiles.py`
# (`python -m ddgan_core profiles`). FID values depend on the feature extractor and on the
# sample count, so they are comparable within this book, not with FIDs published for other
# extractors; the floor gives the scale.
