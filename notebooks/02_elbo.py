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
# # The evidence lower bound
#
# ````{admonition} Rerun this chapter
# :class: tip
#
# This page shows the {glue:text}`chapter_profile` profile (its parameters:
# `python -m ddgan_core profiles`). To execute it again, alone, with a profile key changed, or
# over a grid of values (every parameter of a chapter is a profile key):
#
# ```bash
# python -m ddgan_core book --profile cpu --only 02_elbo
# papermill notebooks/02_elbo.ipynb out.ipynb \
#     -p profile cpu -p elbo_samples 5000
# python -m ddgan_core sweep notebooks/02_elbo \
#     -p elbo_kernel_xt 16 64 --profile cpu
# ```
#
# **Cost.** Nothing on this page comes from the result cache: every number and figure is
# computed when the page executes, in NumPy on the CPU. Executing it took
# {glue:text}`chapter_seconds:.0f` s on {glue:text}`chapter_device`; a GPU would not change that.
# ````
#
# A diffusion model is fitted by maximum likelihood, but the likelihood of its reverse chain is
# an integral over every intermediate state and cannot be evaluated. What is optimised instead is
# a lower bound on it, the evidence lower bound (ELBO) {cite:p}`sohldickstein2015deep,ho2020ddpm`.
# This chapter derives the bound and the training loss that follows from it, the seed's eqs.
# (3)-(6) {cite:p}`okhotnikov_seed`, corrects the slips in the seed's version of the loss, and
# checks each step numerically. It ends with the observation the whole paper rests on: the
# Gaussian reverse step that makes the bound tractable is a good model only when the step is
# small.

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
elbo_samples = None
elbo_kernel_xt = None

# %% tags=["hide-cell"]
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import HTML
from matplotlib.patches import Ellipse
from myst_nb import glue
from plotly.subplots import make_subplots

from ddgan_core import elbo
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule
from ddgan_core.plotting import machine_label, use_book_style
from ddgan_core.profiles import get_profile, overrides_from

chapter_start = time.perf_counter()
cfg = get_profile(profile, **overrides_from(globals()))  # every profile key papermill passed
use_book_style()  # line plots as SVG
glue("chapter_profile", cfg["profile"], display=False)

# %% [markdown]
# ## Maximum likelihood and the bound
#
# The forward process of the previous chapter, $q(x_t \mid x_{t-1})$ with variances
# $\beta_1, \dots, \beta_T$, turns data $x_0$ into near-standard-normal noise $x_T$. The model
# runs the chain backwards: it starts from $p(x_T) = \mathcal{N}(0, I)$ and applies learned
# kernels $p_\theta(x_{t-1} \mid x_t)$, so that its joint density and the density it assigns to
# data are
#
# ```{math}
# :label: eq-elbo-joint
# p_\theta(x_{0:T}) = p(x_T) \prod_{t=1}^{T} p_\theta(x_{t-1} \mid x_t),
# \qquad
# p_\theta(x_0) = \int p_\theta(x_{0:T})\, dx_{1:T}.
# ```
#
# Given training objects $x_0^1, \dots, x_0^n$, maximum likelihood chooses
#
# ```{math}
# :label: eq-elbo-ml
# \theta^* = \arg\max_\theta \sum_{i=1}^{n} \log p_\theta(x_0^i).
# ```
#
# This is the seed's eq. (3). The integral in {eq}`eq-elbo-joint` runs over $T$ copies of the data
# space and has no closed form. Multiplying and dividing the integrand by the forward chain
# $q(x_{1:T} \mid x_0) = \prod_{t=1}^{T} q(x_t \mid x_{t-1})$ turns it into an expectation, and
# since the logarithm is concave, Jensen's inequality moves it inside
# {cite:p}`kingma2013vae`:
#
# ```{math}
# :label: eq-elbo-bound
# \begin{aligned}
# \log p_\theta(x_0)
# &= \log \mathbb{E}_{q(x_{1:T} \mid x_0)}\!\left[
#   \frac{p_\theta(x_{0:T})}{q(x_{1:T} \mid x_0)}\right] \\
# &\ge \mathbb{E}_{q(x_{1:T} \mid x_0)}\!\left[
#   \log \frac{p_\theta(x_{0:T})}{q(x_{1:T} \mid x_0)}\right]
# =: \mathcal{L}(\theta; x_0).
# \end{aligned}
# ```
#
# This is the seed's eq. (4), where the expectation is written over $q(x_1 \dots x_T)$ but must be
# over the forward chain started at the data point, $q(x_{1:T} \mid x_0^i)$. The slack is exact:
# $\log p_\theta(x_0) - \mathcal{L}(\theta; x_0) = \mathrm{KL}\big(q(x_{1:T} \mid x_0)\,\|\,
# p_\theta(x_{1:T} \mid x_0)\big)$, so the bound is tight only if the model's posterior over
# the noisy states is the forward chain itself. Maximising $\sum_i \mathcal{L}(\theta; x_0^i)$
# replaces {eq}`eq-elbo-ml`.
#
# ## From the bound to one KL term per step
#
# Every $\log$ of a ratio in {eq}`eq-elbo-bound` is still a function of all $T$ states. The trick
# that splits it is to write the forward chain backwards. The chain is Markov, so
# $q(x_t \mid x_{t-1}) = q(x_t \mid x_{t-1}, x_0)$, and by Bayes' rule
# $q(x_t \mid x_{t-1}, x_0) = q(x_{t-1} \mid x_t, x_0)\, q(x_t \mid x_0) / q(x_{t-1} \mid x_0)$.
# In the product over $t = 2, \dots, T$ the ratios of marginals telescope, leaving
#
# ```{math}
# :label: eq-elbo-factorisation
# q(x_{1:T} \mid x_0) = q(x_T \mid x_0) \prod_{t=2}^{T} q(x_{t-1} \mid x_t, x_0).
# ```
#
# Both the model {eq}`eq-elbo-joint` and the forward chain now run from $x_T$ down to $x_0$, one
# factor per step. Pairing the factors and taking expectations gives the seed's eq. (5), with the
# two end terms written out:
#
# ```{math}
# :label: eq-elbo-decomposition
# \begin{aligned}
# -\mathcal{L}(\theta; x_0)
# = {} & \underbrace{\mathrm{KL}\big(q(x_T \mid x_0)\,\|\,p(x_T)\big)}_{L_T}
#   \;\underbrace{-\ \mathbb{E}_{q(x_1 \mid x_0)} \log p_\theta(x_0 \mid x_1)}_{L_0} \\
# & + \sum_{t=2}^{T} \underbrace{\mathbb{E}_{q(x_t \mid x_0)}\,
#   \mathrm{KL}\big(q(x_{t-1} \mid x_t, x_0)\,\|\,p_\theta(x_{t-1} \mid x_t)\big)}_{L_{t-1}}.
# \end{aligned}
# ```
#
# $L_T$ has no parameters, $L_0$ is the likelihood of a decoder, and every middle term compares
# the model's step with a distribution known in closed form. Because each $L_{t-1}$ needs only
# the marginal $q(x_t \mid x_0)$ of {eq}`eq-forward-marginal`, training can draw one $t$ at random
# and one $x_t$
# per data point instead of whole trajectories.
#
# ## The Gaussian posterior and the noise parameterisation
#
# $q(x_{t-1} \mid x_t, x_0)$ is proportional to $q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0)$, a
# product of two Gaussians in $x_{t-1}$. Adding their precisions,
# $\alpha_t / \beta_t + 1/(1 - \bar\alpha_{t-1}) = (1 - \bar\alpha_t) / \big(\beta_t (1 -
# \bar\alpha_{t-1})\big)$, and completing the square give {cite:p}`ho2020ddpm`
#
# ```{math}
# :label: eq-elbo-posterior
# \begin{gathered}
# q(x_{t-1} \mid x_t, x_0) = \mathcal{N}\big(x_{t-1};\ \tilde\mu_t(x_t, x_0),\ \tilde\beta_t I\big),
# \\
# \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0
#   + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t,
# \qquad
# \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t .
# \end{gathered}
# ```
#
# Substituting $x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\varepsilon) / \sqrt{\bar\alpha_t}$, where
# $\varepsilon$ is the noise that produced $x_t$, the coefficient of $x_t$ collapses to
# $1/\sqrt{\alpha_t}$ (because $\beta_t + \alpha_t (1 - \bar\alpha_{t-1}) = 1 - \bar\alpha_t$).
# DDPM gives its reverse step the same form with the noise replaced by a network's guess
# $\varepsilon_\theta(x_t, t)$, and a fixed variance $\sigma_t^2$:
#
# ```{math}
# :label: eq-elbo-eps
# \begin{gathered}
# \tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,
#   \varepsilon\Big),
# \\
# p_\theta(x_{t-1} \mid x_t) = \mathcal{N}\Big(x_{t-1};\ \frac{1}{\sqrt{\alpha_t}}\Big(x_t -
#   \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\, \varepsilon_\theta(x_t, t)\Big),\ \sigma_t^2 I\Big).
# \end{gathered}
# ```
#
# The KL divergence between two isotropic Gaussians in $d$ dimensions is
#
# ```{math}
# :label: eq-elbo-gauss-kl
# \mathrm{KL}\big(\mathcal{N}(\mu_1, s_1^2 I)\,\|\,\mathcal{N}(\mu_2, s_2^2 I)\big)
# = \frac{\lVert \mu_1 - \mu_2 \rVert^2}{2 s_2^2}
#   + \frac{d}{2}\Big(\frac{s_1^2}{s_2^2} - 1 - \log \frac{s_1^2}{s_2^2}\Big),
# ```
#
# and the two means in {eq}`eq-elbo-eps` differ only through the noise, by
# $\beta_t (\varepsilon - \varepsilon_\theta) / \sqrt{\alpha_t (1 - \bar\alpha_t)}$. Hence
# every middle term of {eq}`eq-elbo-decomposition` is a weighted squared error:
#
# ```{math}
# :label: eq-elbo-loss
# \begin{gathered}
# L_{t-1} = \mathbb{E}_{x_0, \varepsilon}\Big[\lambda_t\,
#   \big\lVert \varepsilon - \varepsilon_\theta\big(\sqrt{\bar\alpha_t}\, x_0
#   + \sqrt{1 - \bar\alpha_t}\,\varepsilon,\ t\big) \big\rVert^2\Big] + C_t,
# \\
# \lambda_t = \frac{\beta_t^2}{2 \sigma_t^2\, \alpha_t\, (1 - \bar\alpha_t)},
# \qquad
# C_t = \frac{d}{2}\Big(\frac{\tilde\beta_t}{\sigma_t^2} - 1
#   - \log \frac{\tilde\beta_t}{\sigma_t^2}\Big),
# \end{gathered}
# ```
#
# where the constant $C_t$ does not depend on $\theta$. For DDPM's choice
# $\sigma_t^2 = \tilde\beta_t$ the constant vanishes and the weight simplifies to
# $\lambda_t = \beta_t / \big(2 \alpha_t (1 - \bar\alpha_{t-1})\big)$.
# Summed over the training set and over $t = 2, \dots, T$, {eq}`eq-elbo-loss` is the corrected
# form of the seed's eq. (6).
#
# ```{admonition} What the seed's eq. (6) gets wrong
# :class: warning
#
# The seed writes the loss as
# $\sum_{i=1}^{n} \sum_{t=2}^{n} \frac{\beta^2}{2 \bar\beta_t (1 - \beta)(1 - \bar\alpha_t)}
# \lVert \varepsilon - \hat\varepsilon_\theta(x_t^i, t) \rVert^2$ with
# $\bar\beta_t = (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)$ and
# $\hat\varepsilon_\theta(x_t^i, t) = (x_t^i - \sqrt{\bar\alpha_t}\, x_0^i) /
# \sqrt{1 - \bar\alpha_t}$.
#
# 1. **The weight lacks a factor $\beta_t$.** $\bar\beta_t$ is the posterior variance
#    $\tilde\beta_t$ of {eq}`eq-elbo-posterior` without its factor $\beta_t$. With
#    $\sigma_t^2 = \tilde\beta_t$ the correct denominator is $2 \tilde\beta_t \alpha_t
#    (1 - \bar\alpha_t)$, so the printed weight is $\beta_t \lambda_t$: too small by a factor
#    that ranges over orders of magnitude along the chain (checked below).
# 2. **The betas carry no time index.** $\beta$ and $1 - \beta$ must be $\beta_t$ and
#    $\alpha_t = 1 - \beta_t$: the schedule varies with $t$.
# 3. **The sum over steps runs to $n$.** In the seed $n$ is the number of training objects; the
#    steps run over $t = 2, \dots, T$, and the terms $L_T$ and $L_0$ stand apart. The seed's eq. (5)
#    has the same slip ($\sum_{t=1}^{n}$ for $\sum_{t=2}^{T}$ plus the two end terms).
# 4. **$\hat\varepsilon_\theta$ is not the network.** As defined, $\hat\varepsilon_\theta(x_t^i, t)$
#    inverts the seed's eq. (2) (our {eq}`eq-forward-marginal`) with the true $x_0^i$, so it *is*
#    the noise $\varepsilon$ and the loss is
#    identically zero. The second argument of the squared error must be the network's output
#    $\varepsilon_\theta(x_t, t)$, which sees $x_t$ and $t$ but not $x_0$.
# ```
#
# {cite:t}`ho2020ddpm` found that dropping the weights altogether trains better samplers. Their
# "simple" loss draws $t$ uniformly and regresses the noise with equal weight at every step,
#
# ```{math}
# :label: eq-elbo-simple
# L_{\text{simple}}(\theta) = \mathbb{E}_{t \sim \mathcal{U}\{1, \dots, T\},\, x_0,\, \varepsilon}
# \big\lVert \varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t}\, x_0
#   + \sqrt{1 - \bar\alpha_t}\,\varepsilon,\ t) \big\rVert^2 ,
# ```
#
# which is no longer a bound on the likelihood but a reweighted version of it. Compared with
# $\lambda_t$ it puts relatively more weight on the noisy steps (large $t$).
#
# ## Checking the corrected loss numerically
#
# The library computes both sides of {eq}`eq-elbo-loss` independently. The left side is the exact
# KL {eq}`eq-elbo-gauss-kl` between the posterior {eq}`eq-elbo-posterior` and a Gaussian
# $p_\theta$ whose mean is built the way a sampler builds it: $x_0$ predicted from a stand-in
# network output $\varepsilon_\theta = \varepsilon + $ noise of random size, then put through the
# posterior mean. The right side is $\lambda_t \lVert \varepsilon - \varepsilon_\theta \rVert^2 +
# C_t$. The check covers the linear, cosine and VP schedules with $T = 1000$, DDGAN's VP schedule
# with $T = 4$, both $\sigma_t^2 = \tilde\beta_t$ and $\sigma_t^2 = \beta_t$, and many steps $t$.

# %% tags=["hide-input"]
check = elbo.kl_identity_check(batch=cfg["elbo_kl_batch"], dim=cfg["elbo_kl_dim"],
                               steps=cfg["elbo_kl_steps"], seed=cfg["seed"])
glue("elbo_kl_rows", int(check["n_rows"]), display=False)
glue("elbo_kl_max_rel_err", float(check["max_rel_err"]), display=False)
seed_vs_beta = np.abs(check["ratio_seed"] / check["beta"] - 1).max()
glue("elbo_seed_ratio_err", float(seed_vs_beta), display=False)
linear = GaussianDiffusion(make_beta_schedule("linear", 1000))
glue("elbo_seed_factor_min", float(1 / linear.betas[1:].max()), display=False)
glue("elbo_seed_factor_max", float(1 / linear.betas[1:].min()), display=False)

# %% [markdown]
# Over {glue:text}`elbo_kl_rows:,d` random rows the two sides agree to a relative difference of
# at most {glue:text}`elbo_kl_max_rel_err:.1e`, i.e. to rounding error. Dividing the seed's
# printed weight by the weight that the exact KL implies gives $\beta_t$, to within a relative
# {glue:text}`elbo_seed_ratio_err:.1e`: the missing factor of item 1 above. For DDPM's linear
# schedule with $T = 1000$ this makes the seed's weights between
# {glue:text}`elbo_seed_factor_min:.0f` and {glue:text}`elbo_seed_factor_max:,.0f` times too
# small, the error being largest at the nearly noise-free first steps.

# %% tags=["hide-input"]
fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(8.4, 3.4),
                                   gridspec_kw={"width_ratios": [1.6, 1]})
t = np.arange(1, 1000) + 1
weights = {name: elbo.elbo_weights(GaussianDiffusion(make_beta_schedule(name, 1000)))[1:]
           for name in ("linear", "cosine", "vp")}
marks = np.unique(np.geomspace(1, len(t), 24).round().astype(int)) - 1  # log-spaced markers
ax.loglog(t, weights["linear"], "-", color="tab:blue", lw=2.2, label=r"$\lambda_t$, linear")
ax.loglog(t, weights["vp"], ":", color="tab:orange", lw=1.4, marker="o", ms=4, mfc="none",
          markevery=list(marks), label=r"$\lambda_t$, VP")
ax.loglog(t, weights["cosine"], "-.", color="tab:green", lw=1.2, label=r"$\lambda_t$, cosine")
linear_diffusion = GaussianDiffusion(make_beta_schedule("linear", 1000))
ax.loglog(t, elbo.seed_weights(linear_diffusion)[1:], "--", color="tab:blue", lw=1.2,
          label="seed's eq. (6), linear")
ax.set_xlabel("step $t$ (T = 1000)")
ax.set_ylabel("weight of $\\|\\varepsilon - \\varepsilon_\\theta\\|^2$")
ax.legend(frameon=False, fontsize=8)
vp_vs_linear = 100 * (weights["vp"] / weights["linear"] - 1)
ax_ratio.semilogx(t, vp_vs_linear, ":", color="tab:orange", lw=1.4, marker="o", ms=4,
                  mfc="none", markevery=list(marks))
ax_ratio.axhline(0, color="grey", lw=0.8)
ax_ratio.set_xlabel("step $t$ (T = 1000)")
ax_ratio.set_ylabel(r"$\lambda_t$(VP) / $\lambda_t$(linear) $-$ 1 (%)")
fig.tight_layout()
glue("elbo_vp_linear_max_pct", float(np.abs(vp_vs_linear).max()), display=False)
glue("fig_elbo_weights", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_elbo_weights
# :name: fig-elbo-weights
#
# Left: the ELBO weights $\lambda_t$ of {eq}`eq-elbo-loss` ($\sigma_t^2 = \tilde\beta_t$) for
# three schedules with $T = 1000$, and the weight printed in the seed's eq. (6) for the linear
# schedule (dashed), which is $\beta_t$ times smaller. With $T = 1000$ the discrete VP schedule
# is nearly the linear one (its $\beta_t$ also runs from about $10^{-4}$ to $0.02$), so its
# weights (dotted, open circles) lie on the linear schedule's (solid); right: they differ by at
# most {glue:text}`elbo_vp_linear_max_pct:.1f` %. The simple loss {eq}`eq-elbo-simple` would be
# a horizontal line. The cosine schedule's spike is its last step, where $\beta_T$ is capped at
# 0.999 and $\alpha_T$ is tiny.
# ```
#
# ## The bound on a toy with a known density
#
# Images have no known density, so the bound itself is checked on a one-dimensional mixture of
# three Gaussians, $q(x_0) = \sum_k w_k \mathcal{N}(m_k, s_k^2)$, inside $[-1, 1]$ like the
# pixels. Under the forward process every component stays Gaussian, so each marginal $q(x_t)$ is
# again a mixture, and so is the posterior of $x_0$ given $x_t$. Its mean is
#
# ```{math}
# :label: eq-elbo-mixture-posterior
# \begin{gathered}
# \mathbb{E}[x_0 \mid x_t] = \sum_k r_k(x_t)\Big(m_k + \frac{\sqrt{\bar\alpha_t}\, s_k^2}{v_k}
#   \big(x_t - \sqrt{\bar\alpha_t}\, m_k\big)\Big),
# \\
# v_k = \bar\alpha_t s_k^2 + 1 - \bar\alpha_t,
# \qquad
# r_k(x_t) \propto w_k\, \mathcal{N}\big(x_t;\ \sqrt{\bar\alpha_t}\, m_k,\ v_k\big).
# \end{gathered}
# ```
#
# Since $\tilde\mu_t$ is linear in $x_0$, the mean of the true reverse kernel $q(x_{t-1} \mid x_t)$
# is $\tilde\mu_t(x_t, \mathbb{E}[x_0 \mid x_t])$: what a perfectly trained $\varepsilon_\theta$
# would deliver. The reverse model below uses it at every step, with Gaussian kernels of two
# kinds: DDPM's fixed variance $\sigma_t^2 = \tilde\beta_t$, and the *matched* variance
# $\tilde\beta_t + c_t^2 \operatorname{Var}[x_0 \mid x_t]$ ($c_t$ the coefficient of $x_0$ in
# $\tilde\mu_t$), the variance of the true kernel. A Gaussian with the true kernel's mean and
# variance is the Gaussian closest to it in $\mathrm{KL}(q\,\|\,p)$, and each step's term of the
# bound depends on that step's kernel only, so the matched model is the best reverse model with
# Gaussian kernels. Both decode with $p(x_0 \mid x_1) = \mathcal{N}(\mathbb{E}[x_0 \mid x_1],
# \operatorname{Var}[x_0 \mid x_1])$, and the forward process is DDGAN's VP schedule, whose
# $\bar\alpha_T$ is the same for every $T$.
#
# Averaged over the data, the bound falls short of the data's own log-density by
#
# ```{math}
# :label: eq-elbo-gap
# \mathbb{E}_{q(x_0)}\big[\log q(x_0) - \mathcal{L}(x_0)\big]
# = \mathrm{KL}\big(q(x_{0:T})\,\|\,p(x_{0:T})\big) \;\ge\; 0,
# ```
#
# which is zero only if the model's chain reproduces the forward chain exactly. The library
# estimates $\mathcal{L}(x_0)$ by Monte Carlo, one forward trajectory per data point, splitting
# each trajectory's log-ratio into the terms of {eq}`eq-elbo-decomposition`. The gap is averaged
# per sample, which removes most of the Monte Carlo noise.

# %% tags=["hide-input"]
mixture = elbo.three_gaussians_1d()
data_logp = elbo.expected_log_prob_1d(mixture)
T_values = cfg["elbo_T_values"]
sweeps = {
    variance: elbo.elbo_gap_sweep(mixture, T_values, cfg["elbo_samples"], seed=cfg["seed"],
                                  variance=variance)
    for variance in ("matched", "posterior")
}
best, fixed = sweeps["matched"], sweeps["posterior"]
glue("elbo_toy_samples", int(cfg["elbo_samples"]), display=False)
glue("elbo_data_logp", float(data_logp), display=False)
glue("elbo_toy_elbo_small", float(best["elbo"][0]), display=False)
glue("elbo_T_small", int(T_values[0]), display=False)
glue("elbo_T_large", int(T_values[-1]), display=False)
for label, res in (("best", best), ("fixed", fixed)):  # Monte Carlo mean and standard error
    glue(f"elbo_gap_{label}_small_mean", float(res["gap"][0]), display=False)
    glue(f"elbo_gap_{label}_small_se", float(res["gap_se"][0]), display=False)
    glue(f"elbo_gap_{label}_large_mean", float(res["gap"][-1]), display=False)
    glue(f"elbo_gap_{label}_large_se", float(res["gap_se"][-1]), display=False)
z_min = min((res["gap"] / res["gap_se"]).min() for res in sweeps.values())
glue("elbo_gap_min_z", float(z_min), display=False)
glue("elbo_factorisation_err",
     float(max(res["factorisation_err"] for res in sweeps.values())), display=False)
# where the fixed-variance model loses: the per-step excess over the matched one at the largest T
excess = fixed["L_steps"][-1] - best["L_steps"][-1]
glue("elbo_excess_total", float(excess.sum()), display=False)
glue("elbo_excess_first5", float(excess[:5].sum()), display=False)
glue("elbo_excess_steps", len(excess), display=False)

# %% [markdown]
# The data's expected log-density is {glue:text}`elbo_data_logp:.4f` nats (by quadrature). With
# $T = $ {glue:text}`elbo_T_small` steps even the best Gaussian model's bound is only
# {glue:text}`elbo_toy_elbo_small:.3f` nats: a gap of
# {glue:text}`elbo_gap_best_small_mean:.3f` ± {glue:text}`elbo_gap_best_small_se:.3f` nats (Monte
# Carlo mean ± standard error, {glue:text}`elbo_toy_samples:,d` data points per $T$). With
# $T = $ {glue:text}`elbo_T_large` the gap has shrunk to
# {glue:text}`elbo_gap_best_large_mean:.4f` ± {glue:text}`elbo_gap_best_large_se:.4f` nats.
# At every $T$ and for both models the estimated gap is positive by at least
# {glue:text}`elbo_gap_min_z:.0f` standard errors, as {eq}`eq-elbo-gap` demands. Along every
# sampled trajectory the two factorisations of the forward chain, {eq}`eq-forward-step` step by
# step and
# {eq}`eq-elbo-factorisation`, agree to {glue:text}`elbo_factorisation_err:.0e` in log-density.

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.4, 3.8))
for res, label, marker in ((best, "matched variance (best Gaussian kernels)", "o"),
                           (fixed, r"fixed variance $\sigma_t^2 = \tilde\beta_t$ (DDPM)", "s")):
    low = np.minimum(res["gap_se"], 0.9 * res["gap"])  # keep error bars on the log axis
    ax.errorbar(res["T"], res["gap"], yerr=[low, res["gap_se"]], marker=marker, ms=4,
                capsize=3, label=label)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("number of steps $T$ (VP schedule)")
ax.set_ylabel(r"$\mathbb{E}[\log q(x_0)] - \mathbb{E}[\mathcal{L}]$ (nats)")
ax.legend(frameon=False, fontsize=8)
fig.tight_layout()
glue("fig_elbo_gap", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_elbo_gap
# :name: fig-elbo-gap
#
# The gap {eq}`eq-elbo-gap` between the data's expected log-density and the expected ELBO of a
# reverse chain with exact posterior means and Gaussian kernels, against the number of steps, on
# the 1-D three-component mixture. Error bars: one standard error of the Monte Carlo mean.
# ```
#
# With few steps the gap hardly moves: with two steps the chain is essentially one Gaussian
# decoder from noise to data, and no Gaussian fits three modes. It falls steeply once the steps
# become small. The fixed variance $\tilde\beta_t$ stalls instead: at $T = $
# {glue:text}`elbo_T_large` its gap is still
# {glue:text}`elbo_gap_fixed_large_mean:.4f` ± {glue:text}`elbo_gap_fixed_large_se:.4f` nats. Of
# the {glue:text}`elbo_excess_total:.2f` nats by which its terms exceed the matched model's, the
# first five of its {glue:text}`elbo_excess_steps` middle steps account for
# {glue:text}`elbo_excess_first5:.2f`. Near the data a large part of the true kernel's variance is
# the remaining uncertainty about $x_0$, which $\tilde\beta_t$ leaves out; this is why
# {cite:t}`nichol2021improved` learn the variances when they care about likelihood.
#
# ## Why a Gaussian reverse step must be small
#
# The model's kernel is Gaussian, but the true reverse kernel of the forward chain,
#
# ```{math}
# :label: eq-elbo-true-kernel
# q(x_{t-1} \mid x_t) = \frac{q(x_t \mid x_{t-1})\, q(x_{t-1})}{q(x_t)},
# ```
#
# in general is not. The likelihood factor $q(x_t \mid x_{t-1})$ is a Gaussian in $x_{t-1}$ of
# width $\sqrt{\beta_t / \alpha_t}$ around $x_t / \sqrt{\alpha_t}$. When $\beta_t$ is small the
# marginal $q(x_{t-1})$ barely changes over that width, $\log q(x_{t-1})$ is close to linear
# there, and the product is close to a Gaussian {cite:p}`sohldickstein2015deep`. When $\beta_t$
# is large the likelihood is broad and the kernel inherits whatever modes $q(x_{t-1})$ has in
# reach. For a mixture, $q(x_{t-1})$ and $q(x_t)$ are known, so {eq}`eq-elbo-true-kernel` can be
# evaluated on a grid with no approximation but the grid.
#
# The toy is the classic ring of eight Gaussians. To compare step sizes at the same $x_t$, the
# library uses step $t = T/4$ of DDGAN's VP schedule, which sits at the same noise level for
# every $T$; only the size of the step back differs. For $T = 4$, DDGAN's own setting, that step
# is the last one, from $x_1$ to the data.

# %% tags=["hide-input"]
ring = elbo.eight_gaussians()
T_kernel = cfg["elbo_kernel_T_values"]
ksweep = elbo.kernel_sweep(ring, T_kernel, cfg["elbo_kernel_xt"], cfg["elbo_kernel_grid"],
                           seed=cfg["seed"])
abar_t = ksweep["abar_t"]
radius = float(np.linalg.norm(ring.means[0]))
x_show = math.sqrt(abar_t) * radius * np.array([math.cos(math.pi / 8), math.sin(math.pi / 8)])
T_panels = [T_kernel[0], T_kernel[1], T_kernel[-1]]
panels = {}
for T in T_panels:
    _, a_t, a_prev = elbo.vp_step_levels(T)
    grid = elbo.reverse_kernel_grid(ring, x_show, a_t, a_prev, n_grid=cfg["elbo_panel_grid"])
    panels[T] = (grid, elbo.kernel_summary(grid))
glue("elbo_kernel_abar", float(abar_t), display=False)
glue("elbo_kernel_points", int(cfg["elbo_kernel_xt"]), display=False)
for i, key in ((0, "a"), (1, "b"), (-1, "c")):
    T = T_kernel[i]
    grid, summary = panels[T]
    glue(f"elbo_kernel_T_{key}", int(T), display=False)
    glue(f"elbo_kernel_beta_{key}", float(ksweep["beta"][i]), display=False)
    glue(f"elbo_kernel_kl_{key}", float(ksweep["kl_mean"][i]), display=False)
    glue(f"elbo_kernel_multimodal_{key}", float(ksweep["multimodal"][i]), display=False)
    glue(f"elbo_kernel_modes_{key}", float(ksweep["modes_mean"][i]), display=False)
    glue(f"elbo_kernel_show_modes_{key}", int(summary["modes"]), display=False)
    glue(f"elbo_kernel_show_kl_{key}", float(summary["kl_gauss"]), display=False)
mass = np.concatenate([ksweep["mass_min"], ksweep["mass_max"]])
glue("elbo_kernel_mass_err", float(np.abs(mass - 1).max()), display=False)
n_fit = max(2, int((ksweep["beta"] < 0.2).sum()))  # the smallest steps
slope = np.polyfit(np.log(ksweep["beta"][-n_fit:]), np.log(ksweep["kl_mean"][-n_fit:]), 1)[0]
glue("elbo_kernel_kl_slope", float(slope), display=False)

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 2, figsize=(7.6, 7.2))
axes = axes.ravel()
ax = axes[0]
gx = np.linspace(-1.6, 1.6, 201)
mx, my = np.meshgrid(gx, gx)
pts = np.stack([mx.ravel(), my.ravel()], axis=1)
ax.contourf(gx, gx, np.exp(ring.log_prob(pts)).reshape(mx.shape), levels=20, cmap="Greys")
ax.contour(gx, gx, np.exp(ring.noisy(abar_t).log_prob(pts)).reshape(mx.shape), levels=5,
           colors="tab:blue", linewidths=0.6)
ax.plot(*x_show, "r*", ms=10)
ax.set_title("data (grey), $q(x_t)$ (blue), $x_t$ (red star)", fontsize=9)
for ax, T in zip(axes[1:], T_panels):
    grid, summary = panels[T]
    ax.contourf(grid.xs, grid.ys, grid.density, levels=30, cmap="viridis")
    vals, vecs = np.linalg.eigh(summary["cov"])
    angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
    for k in (1, 2):
        ax.add_patch(Ellipse(summary["mean"], 2 * k * math.sqrt(vals[-1]),
                             2 * k * math.sqrt(vals[0]), angle=angle, fill=False,
                             color="white", ls="--", lw=0.8))
    rows, cols = np.nonzero(grid.density >= 1e-3 * grid.density.max())  # frame the kernel
    pad_x, pad_y = 0.15 * np.ptp(grid.xs[cols]), 0.15 * np.ptp(grid.ys[rows])
    ax.set_xlim(grid.xs[cols].min() - pad_x, grid.xs[cols].max() + pad_x)
    ax.set_ylim(grid.ys[rows].min() - pad_y, grid.ys[rows].max() + pad_y)
    ax.set_title(rf"$T = {T}$: one step, $\beta_t = {grid.beta:.3g}$", fontsize=9)
for ax in axes:
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
fig.tight_layout()
glue("fig_elbo_kernels", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_elbo_kernels
# :name: fig-elbo-kernels
#
# The true reverse kernel $q(x_{t-1} \mid x_t)$ {eq}`eq-elbo-true-kernel` on the ring of eight
# Gaussians, for the same point $x_t$ (left, red star, at noise level
# $\bar\alpha_t = $ {glue:text}`elbo_kernel_abar:.2f`) and three step sizes: the step
# $t = T/4$ of the VP schedule with $T = $ {glue:text}`elbo_kernel_T_a`,
# {glue:text}`elbo_kernel_T_b` and {glue:text}`elbo_kernel_T_c` steps. Each panel is zoomed to
# where its kernel lives (note the axis ranges). Dashed: one and two standard deviations of the
# Gaussian with the kernel's own mean and covariance, the best a Gaussian reverse step could do.
# ```
#
# The figure below shows the same kernel, at the same $x_t$, for every chain length of the sweep
# further down: move the slider from large steps (left) to small ones (right). Beside the true
# kernel is its best Gaussian, the one with the kernel's own mean and covariance, on the same
# grid and colour scale.

# %% tags=["hide-input"]
# interactive: the true kernel and its moment-matched Gaussian for every T, on a coarse grid
n_live = cfg["elbo_kernel_grid"]  # grid points per axis (the sweep's grid: small and fast)
live = []
for T in T_kernel:
    _, a_t, a_prev = elbo.vp_step_levels(T)
    grid = elbo.reverse_kernel_grid(ring, x_show, a_t, a_prev, n_grid=n_live)
    summary = elbo.kernel_summary(grid)
    gx, gy = np.meshgrid(grid.xs, grid.ys)
    diff = np.stack([gx - summary["mean"][0], gy - summary["mean"][1]], axis=-1)
    precision = np.linalg.inv(summary["cov"])
    gauss = np.exp(-0.5 * np.einsum("...i,ij,...j->...", diff, precision, diff)) / (
        2 * math.pi * math.sqrt(np.linalg.det(summary["cov"])))
    rows, cols = np.nonzero(grid.density >= 1e-3 * grid.density.max())  # frame the kernel
    pad_x, pad_y = 0.15 * np.ptp(grid.xs[cols]), 0.15 * np.ptp(grid.ys[rows])
    live.append({"T": T, "grid": grid, "summary": summary, "gauss": gauss,
                 "x": [grid.xs[cols].min() - pad_x, grid.xs[cols].max() + pad_x],
                 "y": [grid.ys[rows].min() - pad_y, grid.ys[rows].max() + pad_y]})

live_fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
    "true kernel q(x<sub>t-1</sub> | x<sub>t</sub>)", "best Gaussian"))
for i, item in enumerate(live):
    top = float(max(item["grid"].density.max(), item["gauss"].max()))
    for col, z in ((1, item["grid"].density), (2, item["gauss"])):
        live_fig.add_trace(go.Heatmap(
            x=item["grid"].xs.astype(np.float32), y=item["grid"].ys.astype(np.float32),
            z=z.astype(np.float32), zmin=0.0, zmax=top, zsmooth="best", colorscale="Viridis",
            showscale=False, visible=i == 0,
            hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>density=%{z:.3g}<extra></extra>"),
            row=1, col=col)
        live_fig.add_trace(go.Scatter(
            x=[item["summary"]["mean"][0]], y=[item["summary"]["mean"][1]], mode="markers",
            marker={"symbol": "x", "color": "white", "size": 9}, visible=i == 0,
            hovertemplate="kernel mean<extra></extra>", showlegend=False), row=1, col=col)


def live_layout(item):
    """The axis ranges and the title of one slider position."""
    summary = item["summary"]
    title = (f"T = {item['T']}: one step back, β<sub>t</sub> = {item['grid'].beta:.3g}; "
             f"{summary['modes']} local {'maximum' if summary['modes'] == 1 else 'maxima'}, "
             "KL to the best Gaussian "
             f"{summary['kl_gauss']:.2g} nats")
    ranges = {}
    for axis in ("xaxis", "xaxis2"):
        ranges[f"{axis}.range"] = item["x"]
    for axis in ("yaxis", "yaxis2"):
        ranges[f"{axis}.range"] = item["y"]
    return {"title.text": title, **ranges}


per_T = 4  # traces per slider position: two heatmaps, two mean markers
steps = []
for i, item in enumerate(live):
    visible = [j // per_T == i for j in range(per_T * len(live))]
    steps.append({"method": "update", "label": f"T={item['T']}",
                  "args": [{"visible": visible}, live_layout(item)]})
live_fig.update_layout(
    height=500, margin={"l": 50, "r": 20, "t": 90, "b": 30}, template="simple_white",
    title={"text": live_layout(live[0])["title.text"], "font": {"size": 13}, "x": 0.02},
    sliders=[{"active": 0, "steps": steps, "pad": {"t": 60},
              "currentvalue": {"prefix": "chain length "}}])
live_fig.update_layout(**{k.split(".")[0]: {"range": v}
                          for k, v in live_layout(live[0]).items() if k.endswith(".range")})
live_fig.update_xaxes(title_text="first coordinate of x<sub>t-1</sub>", constrain="domain")
live_fig.update_yaxes(title_text="second coordinate", constrain="domain")
live_fig.update_layout(yaxis={"scaleanchor": "x"}, yaxis2={"scaleanchor": "x2"})  # equal axes
# plotly.js is inlined (no CDN), so the figure works in the static HTML, offline
live_html = pio.to_html(live_fig, include_plotlyjs=True, full_html=False,
                        config={"displaylogo": False, "responsive": True})
glue("fig_elbo_kernel_live", HTML(live_html), display=False)
glue("elbo_live_grid", int(n_live), display=False)

# %% [markdown]
# ```{glue:figure} fig_elbo_kernel_live
# :name: fig-elbo-kernel-live
#
# Interactive. The true reverse kernel {eq}`eq-elbo-true-kernel` at the point $x_t$ of
# {numref}`fig-elbo-kernels` (left) and the Gaussian with its mean and covariance (right, the
# best Gaussian reverse step), for the step $t = T/4$ of VP chains of each length $T$ of the
# sweep; the white cross is the kernel's mean. Both panels share one colour scale. Computed on
# a {glue:text}`elbo_live_grid` x {glue:text}`elbo_live_grid` grid (the static figure above uses
# a finer one, so the counts of maxima may differ slightly).
# ```
#
# For the point shown, the kernel of DDGAN's step with $T = $ {glue:text}`elbo_kernel_T_a` has
# {glue:text}`elbo_kernel_show_modes_a` local maxima and lies
# {glue:text}`elbo_kernel_show_kl_a:.2g` nats (KL) from its best Gaussian fit. With
# $T = $ {glue:text}`elbo_kernel_T_b` the number of local maxima is
# {glue:text}`elbo_kernel_show_modes_b` and the KL {glue:text}`elbo_kernel_show_kl_b:.2g`; the step
# of a $T = $ {glue:text}`elbo_kernel_T_c` chain is Gaussian to within
# {glue:text}`elbo_kernel_show_kl_c:.2g` nats.
# The same holds on average over {glue:text}`elbo_kernel_points` points $x_t \sim q(x_t)$:

# %% tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.0, 3.2))
ax1.errorbar(ksweep["beta"], ksweep["kl_mean"], yerr=ksweep["kl_se"], marker="o", ms=4,
             capsize=3)
ax1.set_xscale("log")
ax1.set_yscale("log")
ax1.set_xlabel(r"step size $\beta_t$")
ax1.set_ylabel(r"KL(true kernel $\|$ best Gaussian) (nats)")
for T, b, kl in zip(ksweep["T"], ksweep["beta"], ksweep["kl_mean"]):
    ax1.annotate(f"T={T}", (b, kl), textcoords="offset points", xytext=(6, -2), ha="left",
                 va="top", fontsize=7)  # below right of each point: clear of the axes' ticks
ax1.set_xlim(min(ksweep["beta"]) / 2, max(ksweep["beta"]) * 3)
ax1.set_ylim(min(ksweep["kl_mean"]) / 20, max(ksweep["kl_mean"]) * 5)  # room for the labels
ax2.plot(ksweep["beta"], ksweep["modes_mean"], "o-", ms=4)
ax2.set_xscale("log")
ax2.set_xlabel(r"step size $\beta_t$")
ax2.set_ylabel("mean number of local maxima")
fig.tight_layout()
glue("fig_elbo_kernel_sweep", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_elbo_kernel_sweep
# :name: fig-elbo-kernel-sweep
#
# Left: the KL divergence from the true reverse kernel to its best Gaussian fit, averaged over
# {glue:text}`elbo_kernel_points` points $x_t \sim q(x_t)$ (error bars: standard error), against
# the size $\beta_t$ of the step back; the labels give the length $T$ of the VP chain. Right: the
# mean number of local maxima of the kernel (counting those at least 1 % as high as the highest).
# ```
#
# With $T = $ {glue:text}`elbo_kernel_T_a` ($\beta_t = $ {glue:text}`elbo_kernel_beta_a:.3f`) the
# kernel is multimodal for {glue:text}`elbo_kernel_multimodal_a:.0%` of the points, with
# {glue:text}`elbo_kernel_modes_a:.1f` modes on average, and its mean KL to the best Gaussian is
# {glue:text}`elbo_kernel_kl_a:.2g` nats. With $T = $ {glue:text}`elbo_kernel_T_b`
# ($\beta_t = $ {glue:text}`elbo_kernel_beta_b:.3f`) the share of multimodal kernels is
# {glue:text}`elbo_kernel_multimodal_b:.0%`, but the kernels are not Gaussian either (KL
# {glue:text}`elbo_kernel_kl_b:.2g`), and with $T = $ {glue:text}`elbo_kernel_T_c`
# ($\beta_t = $ {glue:text}`elbo_kernel_beta_c:.3f`) the KL is {glue:text}`elbo_kernel_kl_c:.2g`.
# For small steps the KL falls like $\beta_t^{p}$ with $p \approx$
# {glue:text}`elbo_kernel_kl_slope:.1f` (a straight-line fit on the log-log scale over the steps
# with $\beta_t < 0.2$). As a check on the grids: the kernel of Bayes' rule
# {eq}`eq-elbo-true-kernel`, normalised with the analytic $q(x_t)$ rather than on the grid,
# integrates to 1 within {glue:text}`elbo_kernel_mass_err:.0e`.
#
# This is the argument of the paper {cite:p}`okhotnikov_seed,xiao2022ddgan`. The loss
# {eq}`eq-elbo-loss` is tractable because both distributions in each KL term are Gaussian, and
# the model's Gaussian is only adequate when the steps are small, hence the hundreds to
# thousands of network evaluations per sample of a DDPM. A few large steps need a reverse kernel
# that can be multimodal. Denoising Diffusion GAN keeps the posterior
# $q(x_{t-1} \mid x_t, x_0)$ of {eq}`eq-elbo-posterior` but feeds it an $x_0$ drawn from a
# generator with a random latent input, which makes $p_\theta(x_{t-1} \mid x_t)$ a flexible
# implicit distribution, and trains it adversarially, since the KL of {eq}`eq-elbo-decomposition`
# can no longer be computed.

# %% tags=["hide-input"]
# what executing this page cost (shown in the box at the top)
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
