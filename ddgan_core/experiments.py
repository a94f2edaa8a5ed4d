"""Every cached experiment of the book, by name, and ``reproduce``: all of a profile at once.

Each experiment takes a resolved profile (see :mod:`ddgan_core.profiles`), picks the keys it
depends on into its configuration, and returns a verified :class:`~ddgan_core.cache.Result`
from the cache, computing it only when missing. Notebooks call the same functions, so the book
and ``python -m ddgan_core reproduce`` produce the same entries.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import ddgan
from .budget import BUDGET_FILE, num_threads, planned_steps
from .cache import Result, ResultCache, write_json_atomic
from .checkpoint import find_model_file
from .device import check_precision, pick_device, synchronize
from .plotting import save_grid
from .profiles import get_profile
from .training import TrainingPaused, progress_bar

#: Each experiment's version, part of its cache key: bump it when the experiment's computing
#: code changes what it computes (its entries are then recomputed; the key test says which).
#: The key rule, the same for every experiment: architecture, data, optimisation and evaluation
#: settings are in the key; logging and checkpoint cadence are not (they change no number).
VERSIONS = {
    "dataset_statistics": 1,
    "ddpm_model": 1,
    "ddpm_grid_point": 1,
    "ddpm_budget_model": 1,
    "ddgan_model": 2,
    "comparison_point": 1,
    "r1_convention_run": 1,
    "speed_comparison": 2,  # 2: the samplers run in the channels-last layout
    "ddgan_sweep_point": 1,
    "toy_kernel_run": 1,
    "hyperparameter_speed": 1,
    "image_kernel_point": 1,
    "kernel_speed": 1,
    "distilled_student": 1,
    "frontier_point": 1,
    "frontier_speed": 1,
    "fast_sampling_speed": 1,
}
#: Profile keys that never enter a key: how often state is saved or logged.
CADENCE_KEYS = ("ddpm_checkpoint_every", *ddgan.CADENCE_KEYS)


def _keyed(name: str, profile: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """The configuration (cache key) of an entry of experiment ``name``: its version, the
    profile's name and ``settings``."""
    return {"experiment_version": VERSIONS[name], "profile": profile["profile"], **settings}


def dataset_statistics(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Pixel statistics and class counts of both FashionMNIST splits (files MD5-verified)."""
    config = _keyed("dataset_statistics", profile, dataset="fashion-mnist", verify_md5=True)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        from .data import CLASS_NAMES, load_fashion_mnist_uint8

        metrics: dict[str, Any] = {"class_names": list(CLASS_NAMES)}
        for split in ("train", "test"):
            images, labels = load_fashion_mnist_uint8(split)
            pixels = images.double().div(255.0)
            metrics[split] = {
                "n_images": int(images.shape[0]),
                "image_shape": list(images.shape[1:]),
                "pixel_mean": float(pixels.mean()),
                "pixel_std": float(pixels.std()),
                "class_counts": torch.bincount(labels, minlength=10).tolist(),
            }
        return metrics

    return (cache or ResultCache()).load_or_run("dataset_statistics", config, compute)


def ddpm_model(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Train the DDPM of ``profile`` (EMA weights ``model_ema.safetensors``, a sample grid,
    the curve)."""
    from . import ddpm

    config = _keyed("ddpm_model", profile, **ddpm.training_config(profile))

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        # checkpoint cadence: not part of the key (it changes no number), so an argument
        metrics = ddpm.train_ddpm(config, workdir,
                                  checkpoint_every=profile["ddpm_checkpoint_every"])
        if not metrics["finished"]:  # stopped early: the .partial folder keeps the state
            raise TrainingPaused(f"DDPM training stopped at step {metrics['train_steps']}; "
                                 "asking for this entry again resumes it")
        model, diffusion = ddpm.load_model(workdir / ddpm.MODEL_FILE)
        images, _ = ddpm.ddpm_sample(model, diffusion, 64, 100, "ancestral", seed=config["seed"])
        save_grid(images, workdir / "samples.png", nrow=8)
        return metrics

    return (cache or ResultCache()).load_or_run("ddpm_model", config, compute)


def budgeted(profile: dict[str, Any]) -> bool:
    """Whether ``profile`` trains the equal-compute models for ``budget_minutes`` of wall time
    (else for their ``*_train_steps``)."""
    return float(profile["budget_minutes"]) > 0


def _budget_settings(profile: dict[str, Any], steps_key: str,
                     settings: dict[str, Any], ema: bool = True) -> dict[str, Any]:
    """A training configuration's key under a wall-clock budget: the step count (unknown until
    calibrated on the device) gives way to the minutes, the threads and the device type, and
    for a model with an EMA (``ema``) the decay is ``budget_ema_decay`` when that is set (a
    budget of about a thousand steps needs a shorter EMA than a model's step-count recipe)."""
    if not budgeted(profile):
        return settings
    settings = {k: v for k, v in settings.items() if k != steps_key}
    if ema and float(profile["budget_ema_decay"]) > 0:  # the same EMA for the pair's models
        settings[steps_key.replace("_train_steps", "_ema_decay")] = profile["budget_ema_decay"]
    return {**settings, "budget_minutes": float(profile["budget_minutes"]),
            "budget_threads": int(profile["budget_threads"]), "device": pick_device().type}


def _budget_plan(train, config: dict[str, Any], steps_key: str,
                 workdir: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The configuration a run trains with (its step count calibrated to the budget when the
    key has one, :func:`~ddgan_core.budget.planned_steps`) and the plan (None without one)."""
    if "budget_minutes" not in config:
        return dict(config), None
    plan = planned_steps(train, config, steps_key, 60.0 * config["budget_minutes"], workdir)
    return {**config, steps_key: int(plan["steps"])}, plan


def ddpm_budget_model(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """The DDPM of the equal-compute comparison: the chapter-3 network and recipe trained on this
    device for ``budget_minutes`` with ``budget_threads`` threads, as :func:`ddgan_model` is
    (with ``budget_minutes = 0``: for ``ddpm_train_steps``). The learning-rate schedule spans the
    calibrated step count; the metrics record the plan and the seconds actually spent."""
    from . import ddpm

    settings = _budget_settings(profile, "ddpm_train_steps", ddpm.training_config(profile))
    config = _keyed("ddpm_budget_model", profile, **settings)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        device = pick_device()

        def train(run: dict[str, Any], where: Path, **kwargs: Any) -> dict[str, Any]:
            return ddpm.train_ddpm(run, where, device=device, **kwargs)

        with num_threads(int(config.get("budget_threads", 0))):
            run, plan = _budget_plan(train, config, "ddpm_train_steps", workdir)
            metrics = train(run, workdir, checkpoint_every=profile["ddpm_checkpoint_every"])
            if not metrics["finished"]:
                raise TrainingPaused(f"DDPM training stopped at step {metrics['train_steps']}; "
                                     "asking for this entry again resumes it")
            model, diffusion = ddpm.load_model(workdir / ddpm.MODEL_FILE, device)
            images, _ = ddpm.ddpm_sample(model, diffusion, 64, 100, "ancestral",
                                         seed=config["seed"], device=device)
        save_grid(images, workdir / "samples.png", nrow=8)
        (workdir / BUDGET_FILE).unlink(missing_ok=True)
        return {**metrics, "budget": plan}

    return (cache or ResultCache()).load_or_run("ddpm_budget_model", config, compute)


def ddpm_grid_point(
    profile: dict[str, Any], sampler: str, steps: int, cache: ResultCache | None = None,
    spacing: str = "linspace",
) -> Result:
    """FID, KID, precision/recall, density/coverage of the DDPM sampled with ``steps`` steps.

    ``sampler``: ``ancestral`` or ``ddim`` (:func:`~ddgan_core.ddpm.ddpm_sample`) or a solver
    of :data:`~ddgan_core.solvers.SOLVERS`; ``spacing``: which K of the T timesteps it visits
    (:data:`~ddgan_core.ddpm.SPACINGS`; in the key only when not ``linspace``, the spacing of
    every entry made before the option). One cache entry per (model, sampler, spacing, K, n):
    Fig. 1 and the solver grid are assembled from these, and a long grid can stop and continue
    without redoing finished points.
    """
    from . import ddpm, solvers
    from .metrics.features import CHECKPOINT_SHA256

    if sampler not in (*ddpm.SAMPLERS, *solvers.SOLVERS):
        raise ValueError(f"sampler={sampler!r} is unknown; allowed: "
                         f"{[*ddpm.SAMPLERS, *solvers.SOLVERS]}")
    if spacing not in ddpm.SPACINGS:
        raise ValueError(f"spacing={spacing!r} is unknown; allowed: {list(ddpm.SPACINGS)}")
    cache = cache or ResultCache()
    model_result = ddpm_model(profile, cache)
    config = _keyed(
        "ddpm_grid_point", profile, model_key=model_result.key, sampler=sampler, eta=0.0,
        steps=int(steps), n=profile["ddpm_grid_samples"], seed=profile["seed"],
        extractor=CHECKPOINT_SHA256,
        # sampling is seeded per batch, so the batch size changes the images and the numbers
        eval_batch_size=profile["eval_batch_size"],
        **({} if spacing == "linspace" else {"spacing": spacing}),
    )

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        model, diffusion = ddpm.load_model(find_model_file(model_result.path, "ddpm"))
        device = next(model.parameters()).device
        sample = _ddpm_sampler(model, diffusion, config["sampler"],
                               config.get("spacing", "linspace"), config["steps"],
                               config["seed"], config["eval_batch_size"], device, config["eta"])
        metrics = _evaluate_sampler(sample, config["n"], device, workdir)
        metrics["sampling_batch_size"] = config["eval_batch_size"]
        return metrics

    return cache.load_or_run("ddpm_grid_point", config, compute)


def _ddpm_sampler(model, diffusion, sampler: str, spacing: str, steps: int, seed: int,
                  batch_size: int, device: torch.device, eta: float = 0.0, **network: Any
                  ) -> Callable[[int], tuple[torch.Tensor, int]]:
    """``sample(n) -> (images, nfe)`` of a DDPM with ``sampler`` (ancestral or DDIM of
    :func:`~ddgan_core.ddpm.ddpm_sample`, or a solver of :data:`~ddgan_core.solvers.SOLVERS`),
    ``spacing`` and ``steps``, seeded per batch of ``batch_size``; ``network``: ``precision``
    and ``compile`` of :func:`~ddgan_core.device.sampling_network`."""
    from . import ddpm, solvers

    if sampler in solvers.SOLVERS:
        return lambda n: solvers.solver_sample(model, diffusion, n, steps, sampler, spacing,
                                               seed=seed, batch_size=batch_size, device=device,
                                               progress=False, **network)
    return lambda n: ddpm.ddpm_sample(model, diffusion, n, steps, sampler, eta, seed=seed,
                                      batch_size=batch_size, device=device, spacing=spacing,
                                      progress=False, **network)


def solver_grid(profile: dict[str, Any], cache: ResultCache | None = None,
                samplers: list[list[str]] | None = None) -> list[Result]:
    """Chapter 3's DDPM sampled by every (sampler, spacing) of ``solver_samplers`` (or
    ``samplers``) at every K of ``solver_steps``, cheapest first: one :func:`ddpm_grid_point`
    each (the ``linspace`` points of ancestral and DDIM are Fig. 1's where K is in its grid)."""
    chosen = [list(pair) for pair in (samplers or profile["solver_samplers"])]
    points = [(k, sampler, spacing) for k in sorted(profile["solver_steps"])
              for sampler, spacing in chosen]
    results = []
    for k, sampler, spacing in progress_bar(points, desc="solver grid", unit="point"):
        check_deadline(f"ddpm_grid_point {sampler} {spacing} K={k}")
        results.append(ddpm_grid_point(profile, sampler, k, cache, spacing))
    return results


def ddpm_fig1(profile: dict[str, Any], cache: ResultCache | None = None) -> list[Result]:
    """Every point of Fig. 1: both samplers at every K of ``ddpm_step_grid``, cheapest first."""
    points = [(k, s) for k in sorted(profile["ddpm_step_grid"]) for s in ("ancestral", "ddim")]
    results = []
    for k, sampler in progress_bar(points, desc="Fig. 1 grid", unit="point"):
        check_deadline(f"ddpm_grid_point {sampler} K={k}")
        results.append(ddpm_grid_point(profile, sampler, k, cache))
    return results


class DeadlineReached(RuntimeError):
    """``reproduce`` ran out of its time budget; finished entries are kept in the cache."""


_DEADLINE: list[float] = []


def check_deadline(what: str) -> None:
    """Raise :class:`DeadlineReached` before starting ``what`` when the budget is spent."""
    if _DEADLINE and time.monotonic() > _DEADLINE[0]:
        raise DeadlineReached(f"time budget spent before {what}")


@functools.lru_cache(maxsize=4)
def _classes_floor(n: int, device: str) -> dict:
    """The class histogram of the first ``n`` test images (the floor of every entry scored with
    ``classes``): computed once per process, n and device. Callers get a copy."""
    from .data import load_fashion_mnist
    from .metrics.classes import class_histogram

    return class_histogram(load_fashion_mnist("test")[0][:n], torch.device(device))


def _evaluate_sampler(sample, n: int, device: torch.device, workdir: Path | None,
                      classes: bool = False, **evaluate: Any) -> dict:
    """Sample ``n`` images with ``sample(n) -> (images, nfe)``, time it, and run every metric
    (``evaluate``: keywords of :func:`~ddgan_core.metrics.evaluate.evaluate_samples`); with
    ``classes``, also the class histogram of the samples and of ``n`` test images, its floor
    (:mod:`~ddgan_core.metrics.classes`)."""
    from .metrics.evaluate import evaluate_samples

    synchronize(device)
    start = time.perf_counter()
    images, nfe = sample(n)
    synchronize(device)
    seconds = time.perf_counter() - start
    if workdir is not None:
        save_grid(images[:64], workdir / "samples.png", nrow=8)
    metrics = evaluate_samples(images, device=device, **evaluate)
    metrics.pop("timings_s", None)
    if classes:
        from .metrics.classes import class_histogram

        metrics["classes"] = class_histogram(images, device)
        metrics["classes_floor"] = copy.deepcopy(_classes_floor(n, str(device)))
    metrics.update(nfe=nfe, sampling_seconds=seconds, seconds_per_image=seconds / n)
    return metrics


DDGAN_PROGRESS = (0.25, 0.5, 0.75, 1.0)


def ddgan_progress_samples(profile: dict[str, Any]) -> int:
    """Samples per FID evaluation along DDGAN training: ``max(fid_samples // 4, 200)``."""
    return max(profile["fid_samples"] // 4, 200)


def _ddgan_config(name: str, profile: dict[str, Any], budget: bool = True) -> dict[str, Any]:
    """The configuration (cache key) of a DDGAN run of experiment ``name``: its
    :func:`ddgan.training_config` (under the profile's wall-clock budget when ``budget`` and the
    profile has one) and the evaluation settings (sample count, and the batch size, since
    sampling is seeded per batch)."""
    from . import ddgan

    settings = ddgan.training_config(profile)
    if budget:
        settings = _budget_settings(profile, "ddgan_train_steps", settings)
    return _keyed(name, profile, fid_samples=profile["fid_samples"],
                  eval_batch_size=profile["eval_batch_size"], **settings)


def _ddgan_cadence(profile: dict[str, Any]) -> dict[str, int | None]:
    """How often a DDGAN run checkpoints and logs (``train_ddgan`` arguments; not in keys)."""
    return {"checkpoint_every": profile["ddgan_checkpoint_every"],
            "log_every": profile["ddgan_log_every"] or None}


def _ddgan_sampler(generator, diffusion, config, device, seed: int, **network: Any):
    """``sample(n) -> (images, nfe)`` for :func:`_evaluate_sampler` from a DDGAN generator
    (``network``: ``precision`` and ``compile`` of :func:`~ddgan_core.device.sampling_network`)."""
    from . import ddgan

    return lambda n: ddgan.ddgan_sample(generator, diffusion, n, config["ddgan_nz"], seed=seed,
                                        batch_size=config["eval_batch_size"], device=device,
                                        **network)


def ddgan_model(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Train the DDGAN of ``profile``; FID/KID/recall of the EMA generator along the way.

    With ``budget_minutes > 0`` it trains for that many minutes on this device with
    ``budget_threads`` threads (the step count calibrated first, :mod:`ddgan_core.budget`): the
    DDGAN half of the equal-compute pair with :func:`ddpm_budget_model`. Training runs in
    :data:`DDGAN_PROGRESS` chunks; after each, the EMA generator is evaluated on
    ``fid_samples // 4`` samples (``progress`` in the metrics). The final generator is
    evaluated with ``fid_samples`` samples and timed.
    """
    from . import ddgan

    config = _ddgan_config("ddgan_model", profile)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        device = pick_device()

        def train(run: dict[str, Any], where: Path, **kwargs: Any) -> dict[str, Any]:
            return ddgan.train_ddgan(run, where, device=device, **kwargs)

        with num_threads(int(config.get("budget_threads", 0))):
            run, plan = _budget_plan(train, config, "ddgan_train_steps", workdir)
            metrics = _train_ddgan_with_progress(run, workdir, device, train,
                                                 _ddgan_cadence(profile))
        (workdir / BUDGET_FILE).unlink(missing_ok=True)
        return {**metrics, "budget": plan}

    return (cache or ResultCache()).load_or_run("ddgan_model", config, compute)


def cached_ddgan_model(profile: dict[str, Any],
                       cache: ResultCache | None = None) -> Result | None:
    """:func:`ddgan_model`'s entry for ``profile`` when the cache holds it, else None (nothing
    is trained: for pages that only compare with it)."""
    return (cache or ResultCache()).load("ddgan_model", _ddgan_config("ddgan_model", profile))


def _train_ddgan_with_progress(config: dict[str, Any], workdir: Path, device: torch.device,
                               train, cadence: dict[str, int | None]) -> dict[str, Any]:
    """Train in :data:`DDGAN_PROGRESS` chunks, evaluating the EMA generator after each on
    :func:`ddgan_progress_samples` samples; then evaluate the final generator on
    ``fid_samples`` samples (timed, a sample grid saved)."""
    from .metrics.features import CHECKPOINT_SHA256

    total = int(config["ddgan_train_steps"])
    diffusion = ddgan.make_ddgan_diffusion(config["ddgan_timesteps"])
    n_progress = ddgan_progress_samples(config)

    def sampler(generator, seed):
        return _ddgan_sampler(generator, diffusion, config, device, seed)

    progress_file = workdir / "progress.json"
    progress = _read_progress(progress_file)
    metrics: dict[str, Any] = {}
    for fraction in DDGAN_PROGRESS:
        target = max(1, round(fraction * total))
        if any(p["step"] == target for p in progress):
            continue
        # stop_after is the run's step count: a resumed run stops at the same target
        metrics = train(config, workdir, stop_after=target, **cadence)
        generator = (ddgan.load_generator(workdir / ddgan.GENERATOR_FILE, device)
                     if metrics["finished"]
                     else ddgan.ema_generator_from_checkpoint(workdir, device))
        point = _evaluate_sampler(sampler(generator, config["seed"]), n_progress, device, None)
        progress.append({"step": target, "images_seen": metrics["images_seen"],
                         **{k: point[k] for k in ("fid", "kid", "precision", "recall",
                                                  "density", "coverage", "fid_floor")}})
        write_json_atomic(progress_file, progress)
    if not metrics:  # every chunk was done before an interruption: reload the trainer state
        metrics = train(config, workdir, **cadence)
    generator = ddgan.load_generator(workdir / ddgan.GENERATOR_FILE, device)
    final = _evaluate_sampler(sampler(generator, config["seed"] + 1), config["fid_samples"],
                              device, workdir)
    (workdir / "checkpoint.pt").unlink(missing_ok=True)
    progress_file.unlink(missing_ok=True)
    return {"train": metrics, "progress": progress, "final": final,
            "extractor": CHECKPOINT_SHA256}


def r1_convention_study(profile: dict[str, Any], cache: ResultCache | None = None,
                        conventions: tuple[str, ...] | None = None) -> list[Result]:
    """The profile's DDGAN trained for ``r1_study_steps`` generator steps (not a time budget)
    under each lazy-R1 convention (:data:`ddgan.R1_CONVENTIONS`), nothing else changed: the
    discriminator's state (:func:`ddgan.discriminator_state`) and FID/recall of the EMA
    generator (EMA decay 0.99, as the run is short) on ``fid_samples`` samples. One entry each
    (``conventions``: only these, e.g. one per process to run them side by side).
    """
    cache = cache or ResultCache()
    steps = int(profile["r1_study_steps"])
    base = {**_ddgan_config("r1_convention_run", profile, budget=False),
            "r1_study_steps": steps, "ddgan_train_steps": steps, "ddgan_ema_decay": 0.99}

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        device = pick_device()
        train = ddgan.train_ddgan(config, workdir, device=device, log_every=max(1, steps // 50),
                                  progress=False, checkpoint_every=max(1, steps // 4))
        generator = ddgan.load_generator(workdir / ddgan.GENERATOR_FILE, device)
        diffusion = ddgan.make_ddgan_diffusion(config["ddgan_timesteps"])
        final = _evaluate_sampler(
            _ddgan_sampler(generator, diffusion, config, device, config["seed"] + 1),
            config["fid_samples"], device, workdir)
        (workdir / "checkpoint.pt").unlink(missing_ok=True)
        return {"train": train, "final": final,
                "discriminator": ddgan.discriminator_state(train["history"])}

    results = []
    for convention in conventions or ddgan.R1_CONVENTIONS:
        check_deadline(f"r1_convention_run {convention}")
        results.append(cache.load_or_run(
            "r1_convention_run", {**base, "ddgan_r1_convention": convention}, compute))
    return results


def _sweep_point_config(profile: dict[str, Any]) -> dict[str, Any]:
    """The cache key of :func:`ddgan_sweep_point`: the profile's DDGAN recipe with
    ``sweep_steps`` generator steps (the EMA decay ``budget_ema_decay`` when set: a run of a few
    hundred steps needs a short EMA) and the evaluation settings."""
    from .metrics.features import CHECKPOINT_SHA256

    settings = ddgan.training_config(profile)
    settings["ddgan_train_steps"] = int(profile["sweep_steps"])
    if float(profile["budget_ema_decay"]) > 0:
        settings["ddgan_ema_decay"] = profile["budget_ema_decay"]
    return _keyed("ddgan_sweep_point", profile, **settings, n=int(profile["sweep_samples"]),
                  eval_batch_size=profile["eval_batch_size"],
                  bootstrap=profile["bootstrap_replicates"], extractor=CHECKPOINT_SHA256)


def ddgan_sweep_point(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """One point of a hyper-parameter sweep: the profile's DDGAN trained for ``sweep_steps``
    generator steps (with ``budget_threads`` threads, so two points run side by side), then
    ``sweep_samples`` samples of its EMA generator scored with every metric and a bootstrap
    interval, their class histogram (:mod:`~ddgan_core.metrics.classes`), seconds per image,
    training minutes and the discriminator's state (:func:`ddgan.discriminator_state`).

    The entry keeps the metrics, the training history and a sample grid, not the generator
    (a few MB per point; the command that made a point makes it again). ``python -m ddgan_core
    sweep ddgan_sweep_point -p NAME V1 V2 ...`` computes (or loads) these entries.
    """
    config = _sweep_point_config(profile)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        device = pick_device()
        steps = int(config["ddgan_train_steps"])
        threads = int(profile["budget_threads"])
        with num_threads(threads):
            train = ddgan.train_ddgan(config, workdir, device=device, progress=False,
                                      log_every=max(1, steps // 50),
                                      checkpoint_every=profile["ddgan_checkpoint_every"])
            if not train["finished"]:
                raise TrainingPaused(f"DDGAN sweep point stopped at step {train['train_steps']}; "
                                     "asking for this entry again resumes it")
            generator = ddgan.load_generator(workdir / ddgan.GENERATOR_FILE, device)
            diffusion = ddgan.make_ddgan_diffusion(config["ddgan_timesteps"])
            final = _evaluate_sampler(
                _ddgan_sampler(generator, diffusion, config, device, config["seed"] + 1),
                config["n"], device, workdir, classes=True, bootstrap=config["bootstrap"])
            used = torch.get_num_threads()
        for name in ("checkpoint.pt", ddgan.GENERATOR_FILE):
            (workdir / name).unlink(missing_ok=True)
        return {"train": train, "final": final, "threads": used,
                "train_minutes": train["wall_time_s"] / 60.0,
                "discriminator": ddgan.discriminator_state(
                    train["history"], loss=config.get("ddgan_loss", "ns"))}

    return (cache or ResultCache()).load_or_run("ddgan_sweep_point", config, compute)


#: The hyper-parameter chapter's factors: (profile key varied, profile key listing its values).
#: One factor at a time around the profile's recipe, each value for every seed of ``hp_seeds``.
HYPERPARAMETER_FACTORS = (
    ("ddgan_timesteps", "hp_timesteps"),
    ("ddgan_nz", "hp_nz"),
    ("ddgan_r1_gamma", "hp_r1_gamma"),
    ("ddgan_d_steps", "hp_d_steps"),
    ("ddgan_channels", "hp_channels"),
)


def hyperparameter_points(profile: dict[str, Any],
                          seeds: list[int] | None = None) -> list[dict[str, Any]]:
    """The overrides of every run of the hyper-parameter study, once each: the profile's own
    recipe first, then each factor's values (:data:`HYPERPARAMETER_FACTORS`), each for every
    seed of ``hp_seeds`` (or ``seeds``)."""
    from .profiles import apply_overrides

    seeds = list(profile["hp_seeds"] if seeds is None else seeds)
    points: list[dict[str, Any]] = [{"seed": seed} for seed in seeds]
    for key, values_key in HYPERPARAMETER_FACTORS:
        for value in profile[values_key]:
            points += [{key: value, "seed": seed} for seed in seeds]
    unique, seen = [], set()
    for point in points:
        resolved = apply_overrides(dict(profile), point)  # checks every value before any run
        settings = tuple(json.dumps(resolved[k])
                         for k in ("seed", *(key for key, _ in HYPERPARAMETER_FACTORS)))
        if settings not in seen:
            seen.add(settings)
            unique.append(point)
    return unique


def hyperparameter_study(profile: dict[str, Any], cache: ResultCache | None = None,
                         seeds: list[int] | None = None) -> list[Result]:
    """Every point of :func:`hyperparameter_points` as a :func:`ddgan_sweep_point` entry
    (``seeds``: only these, e.g. one seed per process to run two side by side)."""
    from .profiles import apply_overrides

    cache = cache or ResultCache()
    results = []
    for point in hyperparameter_points(profile, seeds):
        check_deadline("ddgan_sweep_point " + ", ".join(f"{k}={v}" for k, v in point.items()))
        results.append(ddgan_sweep_point(apply_overrides(dict(profile), point), cache))
    return results


#: The factors that change the sampler's cost (the others change training only).
SPEED_FACTORS = ("ddgan_timesteps", "ddgan_nz", "ddgan_channels")
#: Training steps timed per setting by :func:`hyperparameter_speed` (after one warm-up step).
TIMED_TRAIN_STEPS = 6


def _mean_step_seconds(step: Callable[[], Any], device: torch.device) -> float:
    """Seconds per call of ``step``: one warm-up call (allocations, a first lazy-R1 step), then
    the mean of :data:`TIMED_TRAIN_STEPS` calls, synchronised on a GPU."""
    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(TIMED_TRAIN_STEPS):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / TIMED_TRAIN_STEPS


def _batches(data: torch.Tensor, batch: int) -> Callable[[], torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return lambda: data[torch.randint(0, data.shape[0], (batch,), generator=gen)]


def _ddgan_step_seconds(arch: dict[str, Any], data: torch.Tensor, device: torch.device) -> float:
    """Seconds per DDGAN training step of the resolved profile ``arch`` on a fresh trainer
    (``ddgan_d_steps`` D updates, lazy R1 included, and one G update)."""
    torch.manual_seed(0)
    trainer = ddgan.DDGANTrainer(
        ddgan.make_generator(arch), ddgan.make_discriminator(arch),
        ddgan.make_ddgan_diffusion(arch["ddgan_timesteps"]), nz=arch["ddgan_nz"],
        lr_g=arch["ddgan_lr_g"], lr_d=arch["ddgan_lr_d"], total_steps=100,
        r1_gamma=arch["ddgan_r1_gamma"], lazy_r1=arch["ddgan_lazy_r1"],
        r1_convention=arch["ddgan_r1_convention"], loss=arch["ddgan_loss"],
        d_steps=arch["ddgan_d_steps"], ema_decay=0.99, device=device, seed=0)
    next_batch = _batches(data, arch["ddgan_batch_size"])
    return _mean_step_seconds(lambda: trainer.train_step(next_batch), device)


def hyperparameter_speed(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """The cost of every setting of the hyper-parameter study, timed in one run on one device
    with one harness and the sweep runs' ``budget_threads`` threads (0: all):

    * sampling, for the factors that change the generator or the chain
      (:data:`SPEED_FACTORS`): seconds per image, warm-up then the median of 5 repeats, batch
      16 on a CPU and 64 on a GPU (chapter 4's harness);
    * training, for every factor: seconds per training step (``ddgan_d_steps`` discriminator
      updates and one generator update on batches of ``ddgan_batch_size`` real images, lazy R1
      included), the mean of :data:`TIMED_TRAIN_STEPS` steps after one warm-up step.

    Time does not depend on the weights, so every network is freshly initialised. The sweep
    runs' own times were measured beside another run (and, at times, other jobs)."""
    from .metrics.speed import measure_speed
    from .profiles import apply_overrides

    device = pick_device()
    batch = 64 if device.type == "cuda" else 16
    grid = {key: list(profile[values]) for key, values in HYPERPARAMETER_FACTORS}
    threads = int(profile["budget_threads"])
    # the recipe's settings without the seed and the step count (time depends on neither)
    settings = ddgan.training_config(profile, without=("seed", "ddgan_train_steps"))
    config = _keyed("hyperparameter_speed", profile, centre=settings, grid=grid, batch=batch,
                    device=device.type, threads=threads, timed_train_steps=TIMED_TRAIN_STEPS)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        with num_threads(threads):
            return {"rows": _speed_rows(), "threads": torch.get_num_threads()}

    def _speed_rows() -> list[dict[str, Any]]:
        from .data import load_fashion_mnist

        data = load_fashion_mnist("train")[0][:8192]
        rows = []
        for key, values in grid.items():
            for value in dict.fromkeys(json.dumps(v) for v in [*values, profile[key]]):
                arch = apply_overrides(dict(profile), {key: json.loads(value)})
                torch.manual_seed(0)
                generator = ddgan.make_generator(arch).to(device).eval()
                row = {"factor": key, "value": json.loads(value),
                       "parameters": sum(p.numel() for p in generator.parameters()),
                       "train_seconds_per_step": _ddgan_step_seconds(arch, data, device)}
                if key in SPEED_FACTORS:
                    diffusion = ddgan.make_ddgan_diffusion(arch["ddgan_timesteps"])
                    row.update(measure_speed(
                        lambda b, g=generator, d=diffusion, nz=arch["ddgan_nz"]:
                        ddgan.ddgan_sample(g, d, b, nz, batch_size=b, device=device,
                                           progress=False)[0],
                        4 * batch, batch, int(arch["ddgan_timesteps"]), device, warmup=1,
                        repeats=5, progress=False))
                rows.append(row)
        return rows

    return (cache or ResultCache()).load_or_run("hyperparameter_speed", config, compute,
                                                device=device)


def sweep_point_summary(result: Result) -> dict[str, Any]:
    """The flat row of one :func:`ddgan_sweep_point` (or :func:`image_kernel_point`, whose
    discriminator columns are None) entry: every metric with its 95% bootstrap
    interval (``_lo``/``_hi``), the class statistics with their test-set floor, seconds per
    image, training minutes, parameters and the discriminator's state."""
    metrics, final = result.metrics, result.metrics["final"]
    row: dict[str, Any] = {}
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        row[name] = final[name]
        interval = final.get("uncertainty", {}).get(name, {})
        row[f"{name}_lo"], row[f"{name}_hi"] = interval.get("lo"), interval.get("hi")
    row["fid_floor"] = final["fid_floor"]
    row["classes_covered"] = final["classes"]["classes_covered"]
    row["kl_to_uniform"] = final["classes"]["kl_to_uniform"]
    row["kl_to_uniform_floor"] = final["classes_floor"]["kl_to_uniform"]
    row["seconds_per_image"] = final["seconds_per_image"]
    row["train_minutes"] = metrics["train_minutes"]
    train = metrics["train"]
    row["generator_parameters"] = train.get("generator_parameters", train.get("parameters"))
    state = metrics.get("discriminator", {})  # none for a kernel without discriminator
    for name in ("gap_median", "near_parity_share", "loss_d_distance_median"):
        row[name] = state.get(name)
    return row


def toy_kernel_run(profile: dict[str, Any], method: str, mixture: str, seed: int,
                   cache: ResultCache | None = None) -> Result:
    """One method of the toy kernel study (:mod:`ddgan_core.toy_kernels`) on one mixture and
    seed: trained for ``toy_study_steps`` updates with a ``toy_study_T``-step chain, then
    scored exactly (:func:`~ddgan_core.toy_kernels.evaluate_kernel`). The entry keeps the
    scores, the chain's samples and 1,000 draws of the last step's kernel at the origin
    (``draws.npz``)."""
    import numpy as np

    from . import toy_kernels

    if mixture not in ("8gaussians", "25gaussians"):
        raise ValueError(f"mixture={mixture!r}: valid are 8gaussians and 25gaussians")
    config = _keyed("toy_kernel_run", profile, method=method, mixture=mixture, seed=int(seed),
                    steps=int(profile["toy_study_steps"]), T=int(profile["toy_study_T"]),
                    **toy_kernels.TOY_SETTINGS)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        with num_threads(1):  # small MLPs: one thread is as fast, and runs sit side by side
            kernel, train = toy_kernels.train_toy_kernel(method, mixture, config["T"],
                                                         config["steps"], config["seed"])
            scores = toy_kernels.evaluate_kernel(kernel, mixture, config["T"], config["seed"])
            chain = toy_kernels.sample_chain(kernel, config["T"], config["n_eval"],
                                             torch.Generator().manual_seed(config["seed"]))
            draws = toy_kernels.kernel_draws_at(kernel, torch.zeros(2), 0, 1000,
                                                config["seed"])
        np.savez_compressed(workdir / "draws.npz", chain=chain.numpy(), kernel=draws.numpy())
        return {**scores, **train}

    return (cache or ResultCache()).load_or_run("toy_kernel_run", config, compute)


def toy_kernel_study(profile: dict[str, Any], cache: ResultCache | None = None,
                     mixtures: list[str] | None = None) -> list[Result]:
    """Every method of :data:`~ddgan_core.toy_kernels.TOY_METHODS` on every mixture of
    ``toy_study_mixtures`` (or ``mixtures``) and seed of ``toy_study_seeds``."""
    from .toy_kernels import TOY_METHODS

    cache = cache or ResultCache()
    results = []
    for mixture in mixtures or profile["toy_study_mixtures"]:
        for method in TOY_METHODS:
            for seed in profile["toy_study_seeds"]:
                check_deadline(f"toy_kernel_run {method} {mixture} seed {seed}")
                results.append(toy_kernel_run(profile, method, mixture, seed, cache))
    return results


def _image_kernel_config(profile: dict[str, Any]) -> dict[str, Any]:
    """The cache key of :func:`image_kernel_point`: the generator's backbone and optimiser
    settings of :func:`_sweep_point_config` (its steps, EMA and evaluation), the kernel and, for
    the mixture, its component count."""
    from .metrics.features import CHECKPOINT_SHA256

    kernel = profile["image_kernel"]
    settings = {k: profile[k] for k in ("seed", "ddgan_timesteps", "ddgan_channels",
                                         "ddgan_res_blocks", "ddgan_batch_size", "ddgan_lr_g")}
    settings["ddgan_train_steps"] = int(profile["sweep_steps"])
    settings["ddgan_ema_decay"] = (profile["budget_ema_decay"]
                                   if float(profile["budget_ema_decay"]) > 0
                                   else profile["ddgan_ema_decay"])
    if kernel == "mixture":
        settings["image_kernel_components"] = int(profile["image_kernel_components"])
    return _keyed("image_kernel_point", profile, image_kernel=kernel, **settings,
                  n=int(profile["sweep_samples"]), eval_batch_size=profile["eval_batch_size"],
                  bootstrap=profile["bootstrap_replicates"], extractor=CHECKPOINT_SHA256)


def image_kernel_point(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """A non-adversarial kernel (``image_kernel``: :mod:`~ddgan_core.image_kernels`) on DDGAN's
    chain, trained for ``sweep_steps`` steps with the generator's settings and scored as a
    :func:`ddgan_sweep_point` (same samples, metrics, intervals and class histogram). The entry
    keeps metrics, history and a sample grid, not the network."""
    from . import image_kernels

    config = _image_kernel_config(profile)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        device = pick_device()
        kernel = config["image_kernel"]
        with num_threads(int(profile["budget_threads"])):
            model, train = image_kernels.train_image_kernel(
                config, workdir, device, checkpoint_every=profile["ddgan_checkpoint_every"])
            diffusion = ddgan.make_ddgan_diffusion(config["ddgan_timesteps"])
            final = _evaluate_sampler(
                lambda n: image_kernels.kernel_sample(
                    model, kernel, diffusion, n, seed=config["seed"] + 1,
                    batch_size=config["eval_batch_size"], device=device),
                config["n"], device, workdir, classes=True, bootstrap=config["bootstrap"])
            used = torch.get_num_threads()
        (workdir / "checkpoint.pt").unlink(missing_ok=True)
        return {"train": train, "final": final, "threads": used,
                "train_minutes": train["wall_time_s"] / 60.0}

    return (cache or ResultCache()).load_or_run("image_kernel_point", config, compute)


def _method_cost(arch: dict[str, Any], name: str, data: torch.Tensor, device: torch.device
                 ) -> tuple[float, Callable[[int], torch.Tensor], str]:
    """For :func:`kernel_speed`: (seconds per training step, ``sampler(b) -> images``, the
    sampler's name) of one method on fresh networks."""
    from . import image_kernels

    torch.manual_seed(0)
    diffusion = ddgan.make_ddgan_diffusion(arch["ddgan_timesteps"])
    if name != "image_kernel_point":
        generator = ddgan.make_generator(arch).to(device).eval()

        def sample_ddgan(b: int) -> torch.Tensor:
            return ddgan.ddgan_sample(generator, diffusion, b, arch["ddgan_nz"], batch_size=b,
                                      device=device, progress=False)[0]

        what = "DDGAN, no latent" if arch["ddgan_nz"] == 0 else "DDGAN generator"
        return _ddgan_step_seconds(arch, data, device), sample_ddgan, what
    kernel = arch["image_kernel"]
    net = image_kernels.make_kernel_network(arch).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)
    next_batch = _batches(data, arch["ddgan_batch_size"])

    def step() -> None:
        loss = image_kernels.kernel_loss(net, kernel, diffusion, next_batch().to(device), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds = _mean_step_seconds(step, device)

    def sample_kernel(b: int) -> torch.Tensor:
        return image_kernels.kernel_sample(net, kernel, diffusion, b, batch_size=b,
                                           device=device)[0]

    return seconds, sample_kernel, f"{kernel} kernel"


def kernel_speed(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """The cost of every method of :func:`kernel_image_points`, timed in one run on one device
    with :func:`hyperparameter_speed`'s harness and threads: seconds per training step of each
    (fresh networks; a DDGAN step trains G and D, a kernel step its one network) and the
    sampling seconds per image of each network (the losses share DDGAN's generator, so it is
    timed once)."""
    from .metrics.speed import measure_speed
    from .profiles import apply_overrides

    device = pick_device()
    batch = 64 if device.type == "cuda" else 16
    threads = int(profile["budget_threads"])
    methods = kernel_image_points(profile)
    resolved = [(label, apply_overrides(dict(profile), overrides), name)
                for label, overrides, name in methods]
    settings = [{"label": label,
                 **ddgan.training_config(arch, without=("seed", "ddgan_train_steps")),
                 **({"image_kernel": arch["image_kernel"],
                     "image_kernel_components": arch["image_kernel_components"]}
                    if name == "image_kernel_point" else {})}
                for label, arch, name in resolved]
    config = _keyed("kernel_speed", profile, losses=list(profile["kernel_study_losses"]),
                    methods=settings, batch=batch, device=device.type,
                    threads=threads, timed_train_steps=TIMED_TRAIN_STEPS)

    def rows() -> list[dict[str, Any]]:
        from .data import load_fashion_mnist

        data = load_fashion_mnist("train")[0][:8192]
        out, sampled = [], set()
        for label, arch, name in resolved:
            seconds, sampler, what = _method_cost(arch, name, data, device)
            row = {"label": label, "train_seconds_per_step": seconds, "sampler": what}
            if what not in sampled:  # the losses share one generator: timed once
                sampled.add(what)
                row.update(measure_speed(sampler, 4 * batch, batch,
                                         int(arch["ddgan_timesteps"]), device, warmup=1,
                                         repeats=5, progress=False))
            out.append(row)
        return out

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        with num_threads(threads):
            return {"rows": rows(), "threads": torch.get_num_threads()}

    return (cache or ResultCache()).load_or_run("kernel_speed", config, compute, device=device)


def kernel_image_points(profile: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """Every method of chapter 6's FashionMNIST comparison around the sweep recipe, without
    seeds: each loss of ``kernel_study_losses`` (WGAN-GP without R1, its gradient penalty taking
    R1's place), the generator without latent (``ddgan_nz`` 0), and the three kernels of
    :mod:`~ddgan_core.image_kernels`."""
    methods = []
    for loss in profile["kernel_study_losses"]:
        overrides: dict[str, Any] = {"ddgan_loss": loss}
        if loss == "wgan-gp":
            overrides["ddgan_r1_gamma"] = 0.0
        methods.append((f"DDGAN, {loss}", overrides, "ddgan_sweep_point"))
    methods.append(("DDGAN, no latent", {"ddgan_nz": 0}, "ddgan_sweep_point"))
    for kernel, label in (("gaussian", "Gaussian kernel (noise)"),
                          ("gaussian-x0", "Gaussian kernel (x0)"), ("mixture", "mixture kernel")):
        methods.append((label, {"image_kernel": kernel}, "image_kernel_point"))
    return methods


def kernel_image_study(profile: dict[str, Any], cache: ResultCache | None = None,
                       seeds: list[int] | None = None) -> list[tuple[str, int, Result]]:
    """Every method of :func:`kernel_image_points` for every seed of ``hp_seeds`` (or
    ``seeds``), as (label, seed, entry); entries shared with chapter 5 are the same ones."""
    from .profiles import apply_overrides

    cache = cache or ResultCache()
    run = {"ddgan_sweep_point": ddgan_sweep_point, "image_kernel_point": image_kernel_point}
    seeds = list(profile["hp_seeds"] if seeds is None else seeds)
    points = [(label, seed, apply_overrides(dict(profile), {**overrides, "seed": seed}), name)
              for label, overrides, name in kernel_image_points(profile) for seed in seeds]
    results = []
    for label, seed, resolved, name in points:  # every value checked above, before any run
        check_deadline(f"{name} {label} seed {seed}")
        results.append((label, seed, run[name](resolved, cache)))
    return results


#: The methods of chapter 4's comparison: DDGAN and the DDPM of the same budget (both trained on
#: this device), and the DDPM of chapter 3 as a separately labelled reference.
COMPARISON_METHODS = ("ddgan", "ddpm", "ddpm_reference")


def comparison_point(profile: dict[str, Any], method: str, sampler: str = "ddgan",
                     steps: int = 0, cache: ResultCache | None = None) -> Result:
    """One row of chapter 4's comparison: ``fid_samples`` images of ``method`` (see
    :data:`COMPARISON_METHODS`; DDPM with ``sampler`` "ancestral" or "ddim" and ``steps``
    steps), every metric with a bootstrap interval over the samples
    (``bootstrap_replicates``) under the pinned extractor and under an independent second one.
    """
    from . import ddpm
    from .metrics.features import CHECKPOINT_SHA256
    from .metrics.second import SECOND_SHA256

    if method not in COMPARISON_METHODS:
        raise ValueError(f"method={method!r} is unknown; valid: {list(COMPARISON_METHODS)}")
    cache = cache or ResultCache()
    if method == "ddgan":
        model = ddgan_model(profile, cache)
        sampler, steps = "ddgan", int(profile["ddgan_timesteps"])
    else:
        if sampler not in ("ancestral", "ddim") or int(steps) < 1:
            raise ValueError(f"sampler={sampler!r}, steps={steps}: a DDPM needs sampler "
                             "'ancestral' or 'ddim' and steps >= 1")
        model = (ddpm_budget_model if method == "ddpm" else ddpm_model)(profile, cache)
    config = _keyed(
        "comparison_point", profile, model_key=model.key, method=method, sampler=sampler,
        steps=int(steps), n=profile["fid_samples"], seed=profile["seed"],
        eval_batch_size=profile["eval_batch_size"], bootstrap=profile["bootstrap_replicates"],
        extractor=CHECKPOINT_SHA256, second_extractor=SECOND_SHA256)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        device = pick_device()
        seed = config["seed"] + 2  # apart from the seeds of the training-time evaluations
        if method == "ddgan":
            generator = ddgan.load_generator(find_model_file(model.path, "ddgan"), device)
            diffusion = ddgan.make_ddgan_diffusion(profile["ddgan_timesteps"])
            sample = _ddgan_sampler(generator, diffusion, profile, device, seed)
        else:
            net, diffusion = ddpm.load_model(find_model_file(model.path, "ddpm"), device)

            def sample(n: int):
                return ddpm.ddpm_sample(net, diffusion, n, config["steps"], config["sampler"],
                                        0.0, seed=seed, batch_size=config["eval_batch_size"],
                                        device=device)
        return _evaluate_sampler(sample, config["n"], device, workdir,
                                 bootstrap=config["bootstrap"], second_extractor=True)

    return cache.load_or_run("comparison_point", config, compute)


def comparison(profile: dict[str, Any], cache: ResultCache | None = None) -> list[Result]:
    """Chapter 4's table: DDGAN, then each (sampler, K) of ``comparison_ddpm`` for the DDPM of
    the same budget and of ``comparison_reference`` for the reference DDPM, cheapest first."""
    cache = cache or ResultCache()
    check_deadline("comparison_point ddgan")
    results = [comparison_point(profile, "ddgan", cache=cache)]
    for method, key in (("ddpm", "comparison_ddpm"), ("ddpm_reference", "comparison_reference")):
        for sampler, steps in sorted(((s, int(k)) for s, k in profile[key]),
                                     key=lambda p: p[1]):
            check_deadline(f"comparison_point {method} {sampler} K={steps}")
            results.append(comparison_point(profile, method, sampler, steps, cache))
    return results


def speed_comparison(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """DDGAN's speed-up over DDPM, three ways, timed in one run on one device with one harness
    (warm-up, median of repeats, same batch): per image at each method's own network (the
    budget pair), per network evaluation (generator against UNet), and at matched quality (the
    fewest-step DDPM sampler of :func:`comparison` whose FID is at most DDGAN's). The full
    chain is the longest ancestral K of ``ddpm_step_grid`` (T = 1000 in the book's profiles)."""
    from . import ddpm
    from .metrics.speed import measure_speed

    cache = cache or ResultCache()
    rows = comparison(profile, cache)
    ddpm_result, gan_result = ddpm_budget_model(profile, cache), ddgan_model(profile, cache)
    device = pick_device()
    batch = 64 if device.type == "cuda" else 16
    fids = {(r.config["method"], r.config["sampler"], r.config["steps"]): r.metrics["fid"]
            for r in rows if r.config["method"] in ("ddgan", "ddpm")}
    config = _keyed("speed_comparison", profile, ddpm_key=ddpm_result.key,
                    ddgan_key=gan_result.key, batch=batch, device=device.type,
                    points=sorted([s, k] for (m, s, k) in fids if m == "ddpm"),
                    ddpm_steps_ancestral=int(max(profile["ddpm_step_grid"])))

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        model, diffusion = ddpm.load_model(find_model_file(ddpm_result.path, "ddpm"), device)
        generator = ddgan.load_generator(find_model_file(gan_result.path, "ddgan"), device)
        gan_diffusion = ddgan.make_ddgan_diffusion(profile["ddgan_timesteps"])
        T = int(profile["ddgan_timesteps"])
        timed: dict[str, Any] = {"ddgan": measure_speed(
            lambda b: ddgan.ddgan_sample(generator, gan_diffusion, b, profile["ddgan_nz"],
                                         batch_size=b, device=device, progress=False)[0],
            4 * batch, batch, T, device, warmup=1, repeats=5, progress=False)}
        runs = {("ancestral", config["ddpm_steps_ancestral"])} | {tuple(p)
                                                                  for p in config["points"]}
        for sampler, k in sorted(runs, key=lambda p: p[1]):
            timed[f"{sampler}_{k}"] = measure_speed(
                lambda b, k=k, sampler=sampler: ddpm.ddpm_sample(
                    model, diffusion, b, k, sampler, batch_size=b, device=device,
                    progress=False)[0],
                batch, batch, k, device, warmup=1, repeats=3 if k < 500 else 2, progress=False)
        gan = timed["ddgan"]
        full = timed[f"ancestral_{config['ddpm_steps_ancestral']}"]
        out: dict[str, Any] = {
            "timed": timed,
            "per_image_vs_full_chain": full["seconds_per_image"] / gan["seconds_per_image"],
            "per_nfe_ratio": full["seconds_per_nfe"] / gan["seconds_per_nfe"],
            "nfe_ratio": config["ddpm_steps_ancestral"] / T,
        }
        gan_fid = fids[("ddgan", "ddgan", T)]
        matched = sorted((k, s) for (m, s, k), fid in fids.items()
                         if m == "ddpm" and fid <= gan_fid)
        if matched:
            k, s = matched[0]
            out["matched"] = {"sampler": s, "steps": k, "fid": fids[("ddpm", s, k)],
                              "ddgan_fid": gan_fid,
                              "ratio": (timed[f"{s}_{k}"]["seconds_per_image"]
                                        / gan["seconds_per_image"])}
        else:
            out["matched"] = {"sampler": None, "ddgan_fid": gan_fid,
                              "note": "no DDPM sampler of the comparison reaches DDGAN's FID"}
        return out

    return cache.load_or_run("speed_comparison", config, compute, device=device)



def distilled_student(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Chapter 4's DDPM of the equal-compute pair (:func:`ddpm_budget_model`) distilled by
    progressive distillation (:mod:`~ddgan_core.distillation`) into students of
    ``distill_start_steps``, ..., 2, 1 steps, for ``budget_minutes`` with ``budget_threads``
    threads (the budget of each model of the pair; 0: for ``distill_train_steps``). Keeps every
    round's student (``student_k{N}.safetensors``)."""
    from . import distillation

    cache = cache or ResultCache()
    teacher = ddpm_budget_model(profile, cache)
    settings = {"teacher_key": teacher.key, "seed": profile["seed"],
                **{k: profile[k] for k in DISTILL_KEYS}}
    settings = _budget_settings(profile, "distill_train_steps", settings, ema=False)
    config = _keyed("distilled_student", profile, **settings)
    distillation.distill_rounds(config["distill_start_steps"])  # a bad value fails here

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        device = pick_device()
        teacher_file = find_model_file(teacher.path, "ddpm")

        def train(run: dict[str, Any], where: Path, **kwargs: Any) -> dict[str, Any]:
            return distillation.train_distillation(run, teacher_file, where, device, **kwargs)

        with num_threads(int(config.get("budget_threads", 0))):
            run, plan = _budget_plan(train, config, "distill_train_steps", workdir)
            metrics = train(run, workdir, checkpoint_every=profile["ddpm_checkpoint_every"])
        if not metrics["finished"]:
            raise TrainingPaused(f"distillation stopped at step {metrics['train_steps']}; "
                                 "asking for this entry again resumes it")
        student, diffusion, steps = distillation.load_student(
            workdir / distillation.student_file(1), device)
        images, _ = distillation.distill_sample(student, diffusion, 64, steps,
                                                seed=config["seed"], device=device)
        save_grid(images, workdir / "samples.png", nrow=8)
        (workdir / BUDGET_FILE).unlink(missing_ok=True)
        return {**metrics, "budget": plan, "teacher_train_seconds":
                teacher.metrics.get("train_seconds")}

    return cache.load_or_run("distilled_student", config, compute)


#: The profile keys of a distillation run (with the teacher's key and the seed: its cache key).
DISTILL_KEYS = ("distill_start_steps", "distill_train_steps", "distill_batch_size",
                "distill_lr")

#: The methods of a :func:`frontier_point`: the DDPM of the equal-compute pair with a sampler of
#: ``frontier_ddpm``, its distilled students, and the DDGAN of the pair.
FRONTIER_METHODS = ("ddpm", "student", "ddgan")


def frontier_point(profile: dict[str, Any], method: str, sampler: str = "", steps: int = 0,
                   spacing: str = "trailing", cache: ResultCache | None = None, *,
                   precision: str = "auto", compile: bool = False) -> Result:
    """One point of chapter 7's frontier: ``sweep_samples`` images (the n of the
    hyper-parameter and kernel points drawn beside it) of a model of the equal-compute pair,
    every metric with its bootstrap interval and the class histogram, as a sweep point.
    ``precision`` and ``compile`` set up the network (:func:`~ddgan_core.device.sampling_network`;
    they enter the key only when they differ from the defaults, float32 eager on the CPU).

    ``method``: "ddpm" (:func:`ddpm_budget_model` with ``sampler``, ``spacing`` and ``steps``:
    a sampler of :func:`~ddgan_core.ddpm.ddpm_sample` or :data:`~ddgan_core.solvers.SOLVERS`),
    "student" (the :func:`distilled_student` of ``steps`` steps) or "ddgan"
    (:func:`ddgan_model`, its ``ddgan_timesteps`` steps)."""
    from . import ddpm, solvers
    from .metrics.features import CHECKPOINT_SHA256

    if method not in FRONTIER_METHODS:
        raise ValueError(f"method={method!r} is unknown; valid: {list(FRONTIER_METHODS)}")
    network = {"precision": check_precision(precision), "compile": bool(compile)}
    fast = {k: v for k, v in network.items() if v != {"precision": "auto", "compile": False}[k]}
    cache = cache or ResultCache()
    if method == "ddpm":
        if sampler not in (*ddpm.SAMPLERS, *solvers.SOLVERS) or spacing not in ddpm.SPACINGS:
            raise ValueError(f"sampler={sampler!r}, spacing={spacing!r}: allowed samplers "
                             f"{[*ddpm.SAMPLERS, *solvers.SOLVERS]}, spacings "
                             f"{list(ddpm.SPACINGS)}")
        model = ddpm_budget_model(profile, cache)
    elif method == "student":
        from .distillation import distill_rounds

        if int(steps) not in distill_rounds(profile["distill_start_steps"]):
            raise ValueError(f"steps={steps}: the students have "
                             f"{distill_rounds(profile['distill_start_steps'])} steps")
        model, sampler, spacing = distilled_student(profile, cache), "student", "grid"
    else:
        model, sampler, spacing = ddgan_model(profile, cache), "ddgan", "chain"
        steps = int(profile["ddgan_timesteps"])
    config = _keyed(
        "frontier_point", profile, model_key=model.key, method=method, sampler=sampler,
        spacing=spacing, steps=int(steps), n=profile["sweep_samples"], seed=profile["seed"],
        eval_batch_size=profile["eval_batch_size"], bootstrap=profile["bootstrap_replicates"],
        extractor=CHECKPOINT_SHA256, **fast)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        device = pick_device()
        seed, batch, k = config["seed"] + 3, config["eval_batch_size"], config["steps"]
        if method == "ddgan":
            generator = ddgan.load_generator(find_model_file(model.path, "ddgan"), device)
            diffusion = ddgan.make_ddgan_diffusion(profile["ddgan_timesteps"])
            sample = _ddgan_sampler(generator, diffusion, profile, device, seed, **network)
        elif method == "student":
            from .distillation import distill_sample, load_student, student_file

            net, diffusion, _ = load_student(model.path / student_file(k), device)
            student = {**network, "precision": "fp32" if precision == "auto" else precision}

            def sample(n: int):
                return distill_sample(net, diffusion, n, k, seed=seed, batch_size=batch,
                                      device=device, **student)
        else:
            net, diffusion = ddpm.load_model(find_model_file(model.path, "ddpm"), device)
            sample = _ddpm_sampler(net, diffusion, sampler, spacing, k, seed, batch, device,
                                   **network)
        return _evaluate_sampler(sample, config["n"], device, workdir, classes=True,
                                 bootstrap=config["bootstrap"])

    return cache.load_or_run("frontier_point", config, compute)


def frontier(profile: dict[str, Any], cache: ResultCache | None = None,
             methods: tuple[str, ...] = FRONTIER_METHODS) -> list[Result]:
    """Every :func:`frontier_point` of the equal-compute pair: the DDGAN, each student, and
    each (sampler, spacing, K) of ``frontier_ddpm``, cheapest first within each method."""
    from .distillation import distill_rounds

    cache = cache or ResultCache()
    points: list[tuple[str, str, int, str]] = []
    if "ddgan" in methods:
        points.append(("ddgan", "", 0, "trailing"))
    if "student" in methods:
        points += [("student", "", k, "trailing")
                   for k in sorted(distill_rounds(profile["distill_start_steps"]))]
    if "ddpm" in methods:
        points += [("ddpm", s, int(k), sp)
                   for s, sp, k in sorted(profile["frontier_ddpm"], key=lambda p: int(p[2]))]
    results = []
    for method, sampler, k, spacing in progress_bar(points, desc="frontier", unit="point"):
        check_deadline(f"frontier_point {method} {sampler} K={k}")
        results.append(frontier_point(profile, method, sampler, k, spacing, cache))
    return results


def _sampler_timing_setup(profile: dict[str, Any]
                          ) -> tuple[torch.device, int, int, dict[str, Any], dict[str, Any]]:
    """What :func:`frontier_speed` and :func:`fast_sampling_speed` share: the device, the batch
    (64 on a GPU, 16 on a CPU), ``budget_threads``, and the UNet's and the generator's settings
    (their keys' ``unet`` and ``generator``)."""
    from . import ddpm

    device = pick_device()
    unet = {k: profile[k] for k in ddpm.MODEL_KEYS + ddpm.DIFFUSION_KEYS}
    gan = ddgan.training_config(profile, without=("seed", "ddgan_train_steps"))
    return (device, 64 if device.type == "cuda" else 16, int(profile["budget_threads"]), unet,
            gan)


def _timing_repeats(nfe: int) -> int:
    """Timed repeats of a sampler of ``nfe`` evaluations: 5 up to 10, 3 below 500, else 2."""
    return 5 if nfe <= 10 else 3 if nfe < 500 else 2


def frontier_speed(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Seconds per image of every sampler on chapter 7's frontier, timed in one run on one
    device with chapter 4's harness (warm-up, median of repeats, batch 16 on a CPU, 64 on a
    GPU) and the runs' ``budget_threads`` threads: the DDPM UNet with each (sampler, spacing,
    K) of ``frontier_ddpm``, a student with each of its step counts, DDGAN's generator at each
    T of ``hp_timesteps`` and at ``ddgan_timesteps``, and the mixture kernel's network. Time
    does not depend on the weights, so every network is freshly initialised."""
    from . import ddpm, image_kernels
    from .distillation import distill_rounds, distill_sample
    from .metrics.speed import measure_speed
    from .profiles import apply_overrides

    device, batch, threads, unet, gan = _sampler_timing_setup(profile)
    config = _keyed("frontier_speed", profile, unet=unet, generator=gan,
                    ddpm_points=sorted(list(p) for p in profile["frontier_ddpm"]),
                    distill_start_steps=int(profile["distill_start_steps"]),
                    ddgan_timesteps=sorted({int(t) for t in profile["hp_timesteps"]}
                                           | {int(profile["ddgan_timesteps"])}),
                    image_kernel_components=profile["image_kernel_components"],
                    batch=batch, device=device.type, threads=threads)

    def time_sampler(sample: Callable[[int], torch.Tensor], nfe: int) -> dict[str, Any]:
        return measure_speed(sample, batch, batch, nfe, device, warmup=1,
                             repeats=_timing_repeats(nfe), progress=False)

    def rows() -> list[dict[str, Any]]:
        out = []
        torch.manual_seed(0)
        net = ddpm.make_model(unet).to(device).eval()
        diffusion = ddpm.make_diffusion(unet)
        for sampler, spacing, k in config["ddpm_points"]:
            sample = _ddpm_sampler(net, diffusion, sampler, spacing, k, 0, batch, device)
            out.append({"method": "ddpm", "sampler": sampler, "spacing": spacing, "steps": k,
                        **time_sampler(lambda b, f=sample: f(b)[0], k)})
        for k in distill_rounds(config["distill_start_steps"]):
            out.append({"method": "student", "sampler": "student", "spacing": "grid",
                        "steps": k, **time_sampler(
                            lambda b, k=k: distill_sample(net, diffusion, b, k, batch_size=b,
                                                          device=device)[0], k)})
        for T in config["ddgan_timesteps"]:
            arch = apply_overrides(dict(profile), {"ddgan_timesteps": T})
            generator = ddgan.make_generator(arch).to(device).eval()
            chain = ddgan.make_ddgan_diffusion(T)
            out.append({"method": "ddgan", "sampler": "ddgan", "spacing": "chain", "steps": T,
                        **time_sampler(lambda b, g=generator, c=chain, nz=arch["ddgan_nz"]:
                                       ddgan.ddgan_sample(g, c, b, nz, batch_size=b,
                                                          device=device, progress=False)[0],
                                       T)})
        arch = apply_overrides(dict(profile), {"image_kernel": "mixture"})
        kernel_net = image_kernels.make_kernel_network(arch).to(device).eval()
        chain = ddgan.make_ddgan_diffusion(arch["ddgan_timesteps"])
        out.append({"method": "mixture", "sampler": "mixture", "spacing": "chain",
                    "steps": int(arch["ddgan_timesteps"]), **time_sampler(
                        lambda b: image_kernels.kernel_sample(
                            kernel_net, "mixture", chain, b, batch_size=b, device=device)[0],
                        int(arch["ddgan_timesteps"]))})
        return out

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        with num_threads(threads):
            return {"rows": rows(), "threads": torch.get_num_threads()}

    return (cache or ResultCache()).load_or_run("frontier_speed", config, compute,
                                                device=device)


#: The network set-ups chapter 7 times: (precision, compile) of
#: :func:`~ddgan_core.device.sampling_network`, float32 eager (every committed sample) first.
NETWORK_MODES = (("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True))


def fast_sampling(profile: dict[str, Any], cache: ResultCache | None = None) -> list[Result]:
    """The DDGAN and each (sampler, spacing, K) of ``fast_sampling_ddpm`` drawn again as
    :func:`frontier_point` entries with the network in bf16 through ``torch.compile``: the same
    seeds, n and extractor as their float32 frontier points, so the two rows differ by the
    arithmetic alone."""
    cache = cache or ResultCache()
    points = [("ddgan", "", 0, "trailing")] + [
        ("ddpm", s, int(k), sp) for s, sp, k in profile["fast_sampling_ddpm"]]
    results = []
    for method, sampler, k, spacing in points:
        check_deadline(f"fast_sampling {method} {sampler} K={k}")
        results.append(frontier_point(profile, method, sampler, k, spacing, cache,
                                      precision="bf16", compile=True))
    return results


def fast_sampling_speed(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Seconds per image of the samplers of :func:`fast_sampling` in every
    :data:`NETWORK_MODES`, timed in one run on one device with :func:`frontier_speed`'s harness
    (warm-up, median of repeats, batch 16 on a CPU, 64 on a GPU, ``budget_threads`` threads) on
    freshly initialised networks. ``first_call_seconds`` is the first, untimed call: with
    ``compile``, it includes compiling the network for the batch's shape, from scratch (the
    compiler's on-disk caches are off for this run; a network two samplers share is compiled
    once, for the first)."""
    from . import ddpm
    from .metrics.speed import measure_speed

    device, batch, threads, unet, gan = _sampler_timing_setup(profile)
    config = _keyed("fast_sampling_speed", profile, unet=unet, generator=gan,
                    ddpm_points=sorted(list(p) for p in profile["fast_sampling_ddpm"]),
                    modes=[list(m) for m in NETWORK_MODES], batch=batch, device=device.type,
                    threads=threads, torch=torch.__version__)

    def time_sampler(sample: Callable[[int], torch.Tensor], nfe: int) -> dict[str, Any]:
        synchronize(device)
        start = time.perf_counter()
        sample(batch)
        synchronize(device)
        first = time.perf_counter() - start
        return {"first_call_seconds": first, **measure_speed(
            sample, batch, batch, nfe, device, warmup=1,
            repeats=_timing_repeats(nfe), progress=False)}

    def rows() -> list[dict[str, Any]]:
        out = []
        torch.manual_seed(0)
        net = ddpm.make_model(unet).to(device).eval()
        diffusion = ddpm.make_diffusion(unet)
        generator = ddgan.make_generator(profile).to(device).eval()
        chain = ddgan.make_ddgan_diffusion(profile["ddgan_timesteps"])
        T, nz = int(profile["ddgan_timesteps"]), int(profile["ddgan_nz"])
        for precision, compile in NETWORK_MODES:
            mode = {"precision": precision, "compile": compile}
            out.append({"method": "ddgan", "sampler": "ddgan", "spacing": "chain", "steps": T,
                        **mode, **time_sampler(
                            lambda b, m=mode: ddgan.ddgan_sample(
                                generator, chain, b, nz, batch_size=b, device=device,
                                progress=False, **m)[0], T)})
            for sampler, spacing, k in config["ddpm_points"]:
                sample = _ddpm_sampler(net, diffusion, sampler, spacing, k, 0, batch, device,
                                       **mode)
                out.append({"method": "ddpm", "sampler": sampler, "spacing": spacing,
                            "steps": k, **mode,
                            **time_sampler(lambda b, f=sample: f(b)[0], k)})
        return out

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        import torch._dynamo
        import torch._inductor.config

        torch._dynamo.reset()  # nothing compiled earlier in this process is reused
        with num_threads(threads), torch._inductor.config.patch(force_disable_caches=True):
            return {"rows": rows(), "threads": torch.get_num_threads()}

    return (cache or ResultCache()).load_or_run("fast_sampling_speed", config, compute,
                                                device=device)


def _read_progress(path: Path) -> list[dict[str, Any]]:
    """The progress evaluations an interrupted DDGAN run has made so far ([] when none)."""
    if not path.exists():
        return []
    try:
        progress = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} is unreadable ({type(err).__name__}: {err}); it lists the FID evaluations "
            "along this interrupted run. Delete the whole .partial folder to retrain from "
            "scratch (the training checkpoint alone cannot redo the earlier evaluations)"
        ) from None
    if not isinstance(progress, list):
        raise ValueError(f"{path} should hold a list of evaluations; delete the .partial folder "
                         "to retrain")
    return progress


EXPERIMENTS: dict[str, Callable[[dict[str, Any], ResultCache | None], Any]] = {
    "dataset_statistics": dataset_statistics,
    "ddpm_model": ddpm_model,
    "ddpm_fig1": ddpm_fig1,
    "solver_grid": solver_grid,
    "ddpm_budget_model": ddpm_budget_model,
    "ddgan_model": ddgan_model,
    "r1_convention_study": r1_convention_study,
    "comparison": comparison,
    "speed_comparison": speed_comparison,
    "hyperparameter_study": hyperparameter_study,
    "hyperparameter_speed": hyperparameter_speed,
    "toy_kernel_study": toy_kernel_study,
    "kernel_image_study": kernel_image_study,
    "kernel_speed": kernel_speed,
    "distilled_student": distilled_student,
    "frontier": frontier,
    "frontier_speed": frontier_speed,
    "fast_sampling": fast_sampling,
    "fast_sampling_speed": fast_sampling_speed,
}


def reproduce(
    profile: str,
    overrides: dict[str, Any] | None = None,
    only: list[str] | None = None,
    cache: ResultCache | None = None,
    budget_s: float | None = None,
) -> list[Result]:
    """Compute (or load) every experiment of ``profile``; returns their results in order.

    With ``budget_s``, no new experiment (or grid point) starts after that many seconds; what
    finished is returned and stays in the cache, so a later call continues where this one ended.
    """
    config = get_profile(profile, **(overrides or {}))
    names = list(EXPERIMENTS)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown experiment(s) {unknown}; valid: {names}")
        names = [n for n in names if n in only]
    cache = cache or ResultCache()
    results: list[Result] = []
    _DEADLINE[:] = [time.monotonic() + budget_s] if budget_s else []
    start = time.monotonic()
    try:
        for index, name in enumerate(names, 1):
            check_deadline(name)
            print(f"[{index}/{len(names)}] {name} ...{_eta(start, index - 1, len(names))}",
                  flush=True)
            results += _run_experiment(name, config, cache, index, len(names))
    except DeadlineReached as stop:
        print(f"stopped: {stop}; {len(results)} entries done, the rest can resume later")
    finally:
        _DEADLINE.clear()
    return results


def _eta(start: float, done: int, total: int) -> str:
    """`` (elapsed 3m10s, about 6m left)``: the mean time per finished experiment times those left
    (a rough guide: experiments differ in cost, and cached ones take seconds)."""
    if not done:
        return ""
    elapsed = time.monotonic() - start
    left = elapsed / done * (total - done)
    return f" (elapsed {_minutes(elapsed)}, about {_minutes(left)} left)"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _run_experiment(name: str, config: dict[str, Any], cache: ResultCache, index: int,
                    total: int) -> list[Result]:
    produced = EXPERIMENTS[name](config, cache)
    results = produced if isinstance(produced, list) else [produced]
    for result in results:
        state = "computed" if result.computed else "cached"
        print(f"[{index}/{total}] {name}: {state} {result.path}", flush=True)
    return results
