"""Every cached experiment of the book, by name, and ``reproduce``: all of a profile at once.

Each experiment takes a resolved profile (see :mod:`ddgan_core.profiles`), picks the keys it
depends on into its configuration, and returns a verified :class:`~ddgan_core.cache.Result`
from the cache, computing it only when missing. Notebooks call the same functions, so the book
and ``python -m ddgan_core reproduce`` produce the same entries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import ddgan
from .cache import Result, ResultCache, write_json_atomic
from .checkpoint import find_model_file
from .device import pick_device, synchronize
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
    "ddgan_model": 1,
    "ddgan_head_ablation": 1,
    "sampling_speed": 1,
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


def ddpm_grid_point(
    profile: dict[str, Any], sampler: str, steps: int, cache: ResultCache | None = None
) -> Result:
    """FID, KID, precision/recall, density/coverage of the DDPM sampled with ``steps`` steps.

    One cache entry per (model, sampler, K, n): Fig. 1 is assembled from these, and a long grid
    can stop and continue without redoing finished points.
    """
    from . import ddpm
    from .metrics.features import CHECKPOINT_SHA256

    cache = cache or ResultCache()
    model_result = ddpm_model(profile, cache)
    config = _keyed(
        "ddpm_grid_point", profile, model_key=model_result.key, sampler=sampler, eta=0.0,
        steps=int(steps), n=profile["ddpm_grid_samples"], seed=profile["seed"],
        extractor=CHECKPOINT_SHA256,
        # sampling is seeded per batch, so the batch size changes the images and the numbers
        eval_batch_size=profile["eval_batch_size"],
    )

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        model, diffusion = ddpm.load_model(find_model_file(model_result.path, "ddpm"))
        device = next(model.parameters()).device
        metrics = _evaluate_sampler(
            lambda n: ddpm.ddpm_sample(
                model, diffusion, n, config["steps"], config["sampler"], config["eta"],
                seed=config["seed"], batch_size=config["eval_batch_size"], device=device),
            config["n"], device, workdir)
        metrics["sampling_batch_size"] = config["eval_batch_size"]
        return metrics

    return cache.load_or_run("ddpm_grid_point", config, compute)


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


def _evaluate_sampler(sample, n: int, device: torch.device, workdir: Path | None) -> dict:
    """Sample ``n`` images with ``sample(n) -> (images, nfe)``, time it, and run every metric."""
    from .metrics.evaluate import evaluate_samples

    synchronize(device)
    start = time.perf_counter()
    images, nfe = sample(n)
    synchronize(device)
    seconds = time.perf_counter() - start
    if workdir is not None:
        save_grid(images[:64], workdir / "samples.png", nrow=8)
    metrics = evaluate_samples(images, device=device)
    metrics.pop("timings_s", None)
    metrics.update(nfe=nfe, sampling_seconds=seconds, seconds_per_image=seconds / n)
    return metrics


DDGAN_PROGRESS = (0.25, 0.5, 0.75, 1.0)


def ddgan_progress_samples(profile: dict[str, Any]) -> int:
    """Samples per FID evaluation along DDGAN training: ``max(fid_samples // 4, 200)``."""
    return max(profile["fid_samples"] // 4, 200)


def _ddgan_config(name: str, profile: dict[str, Any]) -> dict[str, Any]:
    """The configuration (cache key) of a DDGAN run of experiment ``name``: its
    :func:`ddgan.training_config` and the evaluation settings (sample count, and the batch
    size, since sampling is seeded per batch)."""
    from . import ddgan

    return _keyed(name, profile, fid_samples=profile["fid_samples"],
                  eval_batch_size=profile["eval_batch_size"], **ddgan.training_config(profile))


def _ddgan_cadence(profile: dict[str, Any]) -> dict[str, int | None]:
    """How often a DDGAN run checkpoints and logs (``train_ddgan`` arguments; not in keys)."""
    return {"checkpoint_every": profile["ddgan_checkpoint_every"],
            "log_every": profile["ddgan_log_every"] or None}


def _ddgan_sampler(generator, diffusion, config, device, seed: int):
    """``sample(n) -> (images, nfe)`` for :func:`_evaluate_sampler` from a DDGAN generator."""
    from . import ddgan

    return lambda n: ddgan.ddgan_sample(generator, diffusion, n, config["ddgan_nz"], seed=seed,
                                        batch_size=config["eval_batch_size"], device=device)


def ddgan_model(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Train the DDGAN of ``profile``; FID/KID/recall of the EMA generator along the way.

    Training runs in :data:`DDGAN_PROGRESS` chunks; after each, the EMA generator is evaluated
    on ``fid_samples // 4`` samples (``progress`` in the metrics). The final generator is
    evaluated with ``fid_samples`` samples and timed.
    """
    from . import ddgan

    config = _ddgan_config("ddgan_model", profile)

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        from .metrics.features import CHECKPOINT_SHA256

        total = int(config["ddgan_train_steps"])
        diffusion = ddgan.make_ddgan_diffusion(config["ddgan_timesteps"])
        device = pick_device()
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
            metrics = ddgan.train_ddgan(config, workdir, device=device, stop_after=target,
                                        **_ddgan_cadence(profile))
            generator = (ddgan.load_generator(workdir / ddgan.GENERATOR_FILE, device)
                         if metrics["finished"]
                         else ddgan.ema_generator_from_checkpoint(workdir, device))
            point = _evaluate_sampler(sampler(generator, config["seed"]), n_progress, device, None)
            progress.append({"step": target, "images_seen": metrics["images_seen"],
                             **{k: point[k] for k in ("fid", "kid", "precision", "recall",
                                                      "density", "coverage", "fid_floor")}})
            write_json_atomic(progress_file, progress)
        if not metrics:  # every chunk was done before an interruption: reload the trainer state
            metrics = ddgan.train_ddgan(config, workdir, device=device,
                                        **_ddgan_cadence(profile))
        generator = ddgan.load_generator(workdir / ddgan.GENERATOR_FILE, device)
        final = _evaluate_sampler(sampler(generator, config["seed"] + 1), config["fid_samples"],
                                  device, workdir)
        (workdir / "checkpoint.pt").unlink(missing_ok=True)
        progress_file.unlink(missing_ok=True)
        return {"train": metrics, "progress": progress, "final": final,
                "extractor": CHECKPOINT_SHA256}

    return (cache or ResultCache()).load_or_run("ddgan_model", config, compute)


DISCRIMINATOR_HEADS = ("mean", "flatten")


def ddgan_head_ablation(profile: dict[str, Any], cache: ResultCache | None = None) -> list[Result]:
    """Short DDGAN runs that differ only in the discriminator's head (``mean``, ``flatten``).

    Each run is the profile's DDGAN cut to ``head_ablation_steps`` generator steps (the cosine
    learning-rate decay spans the short run), with an EMA decay of 0.99 so that the evaluated
    EMA generator reflects those few steps. Metrics: the training history (logged every
    ``max(1, steps // 60)`` steps: losses, the logit gap, R1) and FID/KID/PR of
    ``fid_samples // 2`` samples. One cache entry per head.
    """
    from . import ddgan

    cache = cache or ResultCache()
    steps = int(profile["head_ablation_steps"])
    base = {**_ddgan_config("ddgan_head_ablation", profile), "head_ablation_steps": steps,
            "ddgan_train_steps": steps, "ddgan_ema_decay": 0.99}

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        n_eval = max(config["fid_samples"] // 2, 200)
        device = pick_device()
        train = ddgan.train_ddgan(config, workdir, device=device,
                                  log_every=max(1, steps // 60), progress=False,
                                  checkpoint_every=max(1, steps // 4))
        generator = ddgan.load_generator(workdir / ddgan.GENERATOR_FILE, device)
        diffusion = ddgan.make_ddgan_diffusion(config["ddgan_timesteps"])
        final = _evaluate_sampler(
            _ddgan_sampler(generator, diffusion, config, device, config["seed"] + 1),
            n_eval, device, workdir)
        (workdir / "checkpoint.pt").unlink(missing_ok=True)
        return {"train": train, "final": final}

    results = []
    for head in DISCRIMINATOR_HEADS:
        check_deadline(f"ddgan_head_ablation head={head}")
        results.append(cache.load_or_run("ddgan_head_ablation", {**base, "ddgan_d_head": head},
                                         compute))
    return results


def sampling_speed(profile: dict[str, Any], cache: ResultCache | None = None) -> Result:
    """Seconds per image of DDGAN (T steps) and DDPM (every K of the grid's extremes) on one
    device, with the speed harness (warm-up, median of repeats, synchronised), same batch size.

    The trained networks of :func:`ddpm_model` and :func:`ddgan_model` are timed; the ratio
    DDPM-1000 / DDGAN is the headline speed-up.
    """
    from . import ddgan, ddpm
    from .metrics.speed import measure_speed

    cache = cache or ResultCache()
    ddpm_result, gan_result = ddpm_model(profile, cache), ddgan_model(profile, cache)
    device = pick_device()
    batch = 64 if device.type == "cuda" else 16
    config = _keyed("sampling_speed", profile, ddpm_key=ddpm_result.key,
                    ddgan_key=gan_result.key, batch=batch, device=device.type,
                    ddpm_steps=[1, 10, 100, max(profile["ddpm_step_grid"])])

    def compute(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
        model, diffusion = ddpm.load_model(find_model_file(ddpm_result.path, "ddpm"), device)
        generator = ddgan.load_generator(find_model_file(gan_result.path, "ddgan"), device)
        gan_diffusion = ddgan.make_ddgan_diffusion(profile["ddgan_timesteps"])
        out: dict[str, Any] = {"ddgan": measure_speed(
            lambda b: ddgan.ddgan_sample(generator, gan_diffusion, b, profile["ddgan_nz"],
                                         batch_size=b, device=device, progress=False)[0],
            4 * batch, batch, profile["ddgan_timesteps"], device, warmup=1, repeats=5)}
        for k in config["ddpm_steps"]:
            repeats = 3 if k < 1000 else 2
            out[f"ddpm_{k}"] = measure_speed(
                lambda b, k=k: ddpm.ddpm_sample(model, diffusion, b, k, "ancestral",
                                                batch_size=b, device=device,
                                                progress=False)[0],
                batch, batch, k, device, warmup=1, repeats=repeats)
        last = max(config["ddpm_steps"])
        out["speedup_vs_ddpm_last"] = (out[f"ddpm_{last}"]["seconds_per_image"]
                                       / out["ddgan"]["seconds_per_image"])
        return out

    return cache.load_or_run("sampling_speed", config, compute, device=device)


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
    "ddgan_model": ddgan_model,
    "ddgan_head_ablation": ddgan_head_ablation,
    "sampling_speed": sampling_speed,
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
