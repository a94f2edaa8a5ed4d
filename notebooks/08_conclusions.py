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
# # Conclusions
#
# ````{admonition} How this page is made
# :class: tip
#
# This page computes nothing new. It reads the cached entries of chapters 3 to 7 for the
# {glue:text}`chapter_profile` profile and writes every number below from them, so it changes
# when they change:
#
# ```bash
# python -m ddgan_core book --profile cpu --only 08_conclusions
# ```
#
# Executing it took {glue:text}`chapter_seconds:.0f` s on {glue:text}`chapter_device`.
# ````
#
# The seed set out to do three things on FashionMNIST:
#
# 1. derive the diffusion model's training objective and measure how a DDPM's sample quality
#    depends on the number of reverse steps;
# 2. train a Denoising Diffusion GAN and measure how its hyper-parameters move speed, quality
#    and diversity;
# 3. try other ways of making the reverse kernel multimodal, and other divergences to fit it.
#
# This book did all three and added a fourth: every sampler on one speed-quality frontier. What
# follows is what the committed numbers say, chapter by chapter, and what a practitioner should
# take from them. Every FID here is under the book's FashionMNIST feature extractor, so it is
# comparable within the book only.

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

# %% tags=["hide-cell"]
import time

from IPython.display import Markdown, display
from myst_nb import glue

from ddgan_core.cache import ResultCache
from ddgan_core.experiments import (
    comparison,
    hyperparameter_points,
    hyperparameter_study,
    kernel_image_study,
    solver_grid,
    speed_comparison,
    sweep_point_summary,
)
from ddgan_core.frontier import GROUPS, best_within, fast_sampling_rows, frontier_rows
from ddgan_core.plotting import machine_label, use_book_style
from ddgan_core.profiles import get_profile, overrides_from
from ddgan_core.sweep import aggregate_seeds, intervals_overlap

chapter_start = time.perf_counter()
cfg = get_profile(profile, **overrides_from(globals()))
use_book_style()
glue("chapter_profile", cfg["profile"], display=False)
cache = ResultCache()


def fid(metrics: dict, digits: int = 1) -> str:
    """FID with its 95% bootstrap interval when the entry has one."""
    value = format(metrics["fid"], f".{digits}f")
    band = metrics.get("uncertainty", {}).get("fid")
    if band:
        value += f" [{band['lo']:.{digits}f}, {band['hi']:.{digits}f}]"
    return value


# %% [markdown]
# ## What the numbers say

# %% tags=["hide-input"]
# chapter 3: the DDPM against its number of steps, and the solvers on the same network
grid = {(r.config["sampler"], r.config.get("spacing", "linspace"), r.config["steps"]): r
        for r in solver_grid(cfg, cache)}
ks = sorted({k for _, _, k in grid})
best_by_k = {k: min((r for (s, sp, kk), r in grid.items() if kk == k),
                    key=lambda r: r.metrics["fid"]) for k in ks}
k_small = 10 if 10 in ks else ks[len(ks) // 2]
ddim_small = grid.get(("ddim", "linspace", k_small))
best_small = best_by_k[k_small]
text = (f"**The DDPM and its steps (chapter 3).** On the chapter's DDPM, scored on "
        f"{best_small.config['n']:,d} samples, ")
if ddim_small is not None:
    text += (f"the book's DDIM with {k_small} steps reaches FID "
             f"{ddim_small.metrics['fid']:.1f} and ")
text += (f"the best solver at {k_small} steps, {best_small.config['sampler']} "
         f"({best_small.config.get('spacing', 'linspace')} spacing), reaches "
         f"{best_small.metrics['fid']:.1f}. With one step the best sampler reaches only "
         f"{best_by_k[ks[0]].metrics['fid']:.1f}: one Gaussian step from pure noise returns "
         "the network's blurred estimate of the mean image, the seed's argument against few "
         "Gaussian steps.")
display(Markdown(text))

# %% tags=["hide-input"]
# chapter 4: the equal-compute pair
rows4 = {(r.config["method"], r.config["sampler"], r.config["steps"]): r
         for r in comparison(cfg, cache)}
gan = next(r for (m, _, _), r in rows4.items() if m == "ddgan")
speed = speed_comparison(cfg, cache).metrics
ddpm_rows = sorted(((k, s, r) for (m, s, k), r in rows4.items() if m == "ddpm"),
                   key=lambda p: p[0])
text = (f"**DDGAN against DDPM as equals (chapter 4).** Trained for the same time on the same "
        f"CPU, at the same width, and scored on {gan.config['n']:,d} samples, DDGAN with "
        f"{gan.config['steps']} steps has FID {fid(gan.metrics)} and recall "
        f"{gan.metrics['recall']:.3f}; the DDPM of the pair has ")
text += "; ".join(f"{fid(r.metrics)} with {s.upper() if s == 'ddim' else s} at K = {k} "
                  f"(recall {r.metrics['recall']:.3f})" for k, s, r in ddpm_rows)
text += (f". Per image, DDGAN is {speed['per_image_vs_full_chain']:.0f} times faster than the "
         f"DDPM's full chain of {speed['nfe_ratio'] * gan.config['steps']:.0f} steps; the "
         f"ratio of network evaluations is {speed['nfe_ratio']:.0f}, and per evaluation the "
         f"UNet costs {speed['per_nfe_ratio']:.2f} times the generator.")
matched = speed["matched"]
if matched.get("sampler"):
    text += (f" Against the cheapest DDPM sampler of the table at least as good by FID "
             f"({matched['sampler'].upper()} with {matched['steps']} steps, "
             f"{matched['fid']:.1f}), the gain shrinks to {matched['ratio']:.1f} times.")
display(Markdown(text))

# %% tags=["hide-input"]
# chapter 5: one factor at a time
points = hyperparameter_points(cfg)
results5 = hyperparameter_study(cfg, cache)
rows5 = []
for point, result in zip(points, results5):
    changed = [(k, v) for k, v in point.items() if k != "seed"]
    label = "recipe" if not changed else f"{changed[0][0]} = {changed[0][1]}"
    rows5.append({"setting": label, "seed": point["seed"], **sweep_point_summary(result)})
aggs5 = sorted(aggregate_seeds(rows5, "setting"), key=lambda a: a["fid"])
centre5 = next(a for a in aggs5 if a["setting"] == "recipe")
best5 = aggs5[0]
worst5 = aggs5[-1]
timesteps = {a["setting"]: a for a in aggs5 if a["setting"].startswith("ddgan_timesteps")}
text = (f"**DDGAN's hyper-parameters (chapter 5).** At the sweep budget "
        f"({cfg['sweep_steps']} steps, {len(cfg['hp_seeds'])} "
        f"seed{'s' if len(cfg['hp_seeds']) != 1 else ''}, {cfg['sweep_samples']:,d} samples), the recipe scores FID {centre5['fid']:.1f} "
        f"[{centre5['fid_lo']:.1f}, {centre5['fid_hi']:.1f}]. The best setting is "
        f"`{best5['setting']}` at {best5['fid']:.1f} [{best5['fid_lo']:.1f}, "
        f"{best5['fid_hi']:.1f}]"
        + (", apart from the recipe's interval" if not intervals_overlap(best5, centre5, "fid")
           else ", within the recipe's interval")
        + f"; the worst `{worst5['setting']}` at {worst5['fid']:.1f}. ")
if timesteps:
    text += ("Over the number of steps: " + ", ".join(
        f"T = {s.split('= ')[1]}: {a['fid']:.1f}" for s, a in sorted(
            timesteps.items(), key=lambda p: int(p[0].split("= ")[1])))
        + f" (the recipe's T = {cfg['ddgan_timesteps']}: {centre5['fid']:.1f}). ")
text += ("Recall is 0 for every setting at this budget; diversity shows in coverage and "
         "the class histogram." if max(a["recall"] for a in aggs5) == 0 else "")
display(Markdown(text))

# %% tags=["hide-input"]
# chapter 6: other divergences and kernels on FashionMNIST
rows6 = [{"method": label, "seed": seed, **sweep_point_summary(result)}
         for label, seed, result in kernel_image_study(cfg, cache)]
aggs6 = sorted(aggregate_seeds(rows6, "method"), key=lambda a: a["fid"])
first6, second6 = aggs6[0], aggs6[1]
kernels6 = [a for a in aggs6 if not a["method"].startswith("DDGAN")]
text = (f"**Other kernels and divergences (chapter 6).** At the same budget, the lowest FID is "
        f"{first6['method']}'s, {first6['fid']:.1f}, then {second6['method']}'s, "
        f"{second6['fid']:.1f}; their intervals "
        + ("overlap. " if intervals_overlap(first6, second6, "fid") else "do not overlap. "))
if kernels6:
    text += ("The kernels without a discriminator score " + ", ".join(
        f"{a['method']} {a['fid']:.1f}" for a in kernels6) + ". ")
display(Markdown(text))

# %% [markdown]
# ## What to use
#
# The frontier of chapter 7 answers the practical question. For each budget of network
# evaluations per image, the table gives the best method among chapter 4's equal-compute pair
# and the DDPM's distilled students, on the frontier's sample count, with its time per image on
# this CPU and what it cost to train (the students trained longer than the pair: the last
# column).

# %% tags=["hide-input"]
rows7, context = frontier_rows(cfg, cache)
equal = [row for row in rows7 if row["group"] == GROUPS[0]]
lines = ["| NFE budget | use | NFE | FID | recall | ms / image | training min |",
         "|---:|---|---:|---:|---:|---:|---:|"]
for budget in (1, 4, 10, 100):
    best = best_within(equal, budget)
    if best is None:
        continue
    lines.append(f"| {budget} | {best['label']} | {best['nfe']} | {best['fid']:.1f} "
                 f"[{best['fid_lo']:.1f}, {best['fid_hi']:.1f}] | {best['recall']:.3f} "
                 f"| {best['ms_per_image']:.1f} | {best['train_minutes']:.0f} |")
display(Markdown("\n".join(lines)))
glue("cc_n", int(cfg["sweep_samples"]), display=False)
text = []
for gan_row in (r for r in equal if r["family"] == "ddgan"):
    rival = best_within([r for r in equal if r["family"] != "ddgan"], gan_row["nfe"])
    if rival is not None:
        text.append(
            f"DDGAN with {gan_row['nfe']} steps scores {gan_row['fid']:.1f} "
            f"[{gan_row['fid_lo']:.1f}, {gan_row['fid_hi']:.1f}] in "
            f"{gan_row['ms_per_image']:.1f} ms per image; at no more network evaluations, "
            f"{rival['label']} scores {rival['fid']:.1f} [{rival['fid_lo']:.1f}, "
            f"{rival['fid_hi']:.1f}] in {rival['ms_per_image']:.1f} ms"
            + (" and is better, with intervals that do not overlap." if rival["fid_hi"]
               < gan_row["fid_lo"] else "." if rival["fid"] < gan_row["fid"] else
               ", so DDGAN is the better choice at this budget.")
            + f" The DDGAN trained for {gan_row['train_minutes']:.0f} minutes, "
            f"{rival['label']} for {rival['train_minutes']:.0f} (with its teacher, for a "
            "student).")
fast_rows, _ = fast_sampling_rows(cfg, cache)
ups = [row["speedup"] for row in fast_rows]
kept = all(intervals_overlap(row["fp32"], row["bf16"], "fid") for row in fast_rows)
text.append(
    f"These times are float32. With bf16 through `torch.compile` (`--precision bf16 --compile`), "
    f"the samplers of chapter 7's last section ({'; '.join(r['label'] for r in fast_rows)}) ran "
    f"{min(ups):.1f} to {max(ups):.1f} times faster on this CPU, "
    + ("with FID intervals that overlap those of float32." if kept else
       "but moved the FID of at least one of them beyond its interval."))
display(Markdown(" ".join(text)))

# %% [markdown]
# FID with its 95% bootstrap interval over {glue:text}`cc_n:,d` samples; the training minutes
# of a student include its teacher's.
#
# ## What this book could not settle

# %% tags=["hide-input"]
limits = [
    "The models are small and were trained for minutes on this CPU (the frontier's "
    f"longest, the students with their teacher, for {max(r['train_minutes'] for r in equal):.0f} "
    "minutes). The rankings hold for this data, width and budget; whether they hold at the "
    "paper's scale is a question for the `full` profile on a GPU.",
    f"The sweep-budget runs of chapters 5 and 6 ({cfg['sweep_steps']} steps) have recall "
    f"between {min(a['recall'] for a in aggs5 + aggs6):.3f} and "
    f"{max(a['recall'] for a in aggs5 + aggs6):.3f}; their comparisons rest on FID, coverage "
    f"and the class histogram, with {len(cfg['hp_seeds'])} seeds each.",
    "The equal-compute pair and the students are one training run each; their intervals are "
    "bootstrap intervals over samples, not over training runs.",
]
display(Markdown("\n".join(f"- {item}" for item in limits)))

# %% tags=["hide-input"]
glue("chapter_seconds", float(time.perf_counter() - chapter_start), display=False)
glue("chapter_device", machine_label(), display=False)
