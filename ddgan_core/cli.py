"""The command line: ``python -m ddgan_core <command>`` (also installed as ``ddgan``).

Commands:
  profiles                         print every profile's parameters
  reproduce --profile P            compute every experiment of a profile, pack an archive
  unpack ARCHIVE                   merge a results archive into the cache
  sweep NOTEBOOK -p NAME V1 V2 ... papermill over a grid, glued numbers into CSV + plot
  eval --samples FILE.npz          FID, KID, precision/recall, density/coverage
  train classifier|ddpm|ddgan      train the feature extractor, a DDPM or a DDGAN (--profile P)
  sample --checkpoint PATH ...     draw samples of a DDPM or DDGAN model file into an .npz
  book --profile P                 execute the chapters and build the book
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .profiles import PROFILES, describe, parse_assignments


def _reproduce(args: argparse.Namespace) -> int:
    from .cache import ResultCache
    from .experiments import reproduce

    cache = ResultCache(args.cache_dir)
    budget = args.budget_minutes * 60 if args.budget_minutes else None
    reproduce(args.profile, parse_assignments(args.overrides), args.only, cache, budget)
    if args.archive:
        entries = cache.entries()  # everything complete, including points of a stopped grid
        archive = cache.pack(args.archive, entries)
        print(f"archive: {archive} ({len(entries)} entries)")
    return 0


def _unpack(args: argparse.Namespace) -> int:
    from .cache import ResultCache

    report = ResultCache(args.cache_dir).unpack(args.archive)
    for line in report.lines():
        print(line)
    print(report.summary())
    return 1 if report.skipped else 0  # an entry of the archive was corrupt


def _sweep(args: argparse.Namespace) -> int:
    from .sweep import run_sweep

    grid = {}
    for spec in args.param:
        if len(spec) < 2:
            raise ValueError(f"-p {' '.join(spec)}: expected NAME VALUE [VALUE ...]")
        grid[spec[0]] = [parse_assignments([f"v={v}"])["v"] for v in spec[1:]]
    run_sweep(args.notebook, grid, args.profile, args.out)
    return 0


def _eval(argv: list[str]) -> int:
    from .metrics.evaluate import cli_eval

    return cli_eval(argv) or 0


TRAINABLE = ("classifier", "ddpm", "ddgan")


def _train(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m ddgan_core train {{{','.join(TRAINABLE)}}} [options]\n\n"
              "classifier: the FID feature extractor; ddpm, ddgan: a model of a profile, into the "
              "result cache or --out DIR (resumable: rerun the same command after an "
              "interruption). See train <model> --help.")
        return 0 if argv else 2
    what, rest = argv[0], argv[1:]
    if what == "classifier":
        from .metrics.features import cli_train_classifier

        return cli_train_classifier(rest) or 0
    if what not in TRAINABLE:
        raise ValueError(f"train {what!r}: unknown model; valid: {list(TRAINABLE)}")
    parser = argparse.ArgumentParser(prog=f"python -m ddgan_core train {what}")
    parser.add_argument("--profile", required=True, choices=sorted(PROFILES))
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, help="train into this folder instead of the cache; "
                        "an interrupted run resumes from its checkpoint there")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--device")
    args = parser.parse_args(rest)
    from .profiles import get_profile

    profile = get_profile(args.profile, **parse_assignments(args.overrides))
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder to train into")
    if args.device is not None:
        from .training import pick_device

        pick_device(args.device)  # a bad device fails here, before any work
    if what == "ddpm":
        return _train_ddpm(profile, args)
    return _train_ddgan(profile, args)


def _train_ddpm(profile: dict, args: argparse.Namespace) -> int:
    from . import ddpm
    from .cache import ResultCache
    from .experiments import ddpm_model

    ddpm.make_diffusion(profile)  # a schedule with beta = 1 (e.g. linear, T = 20) fails here
    ddpm.make_model(profile)
    if args.out:
        metrics = ddpm.train_ddpm(ddpm.training_config(profile), args.out, device=args.device,
                                  checkpoint_every=profile["ddpm_checkpoint_every"])
        checkpoint = args.out / "model_ema.pt"
    else:
        result = ddpm_model(profile, ResultCache(args.cache_dir))
        metrics, checkpoint = result.metrics, result.file("model_ema.pt")
    print(f"trained {metrics['train_steps']} steps ({metrics['images_seen']:,} images) in "
          f"{metrics['train_seconds']:.0f} s; final loss {metrics['final_loss']:.4f}")
    print(f"checkpoint: {checkpoint}")
    return 0


def _train_ddgan(profile: dict, args: argparse.Namespace) -> int:
    from . import ddgan
    from .cache import ResultCache
    from .experiments import ddgan_model

    ddgan.make_generator(profile)  # shapes checked before any work
    ddgan.make_discriminator(profile)
    if args.out:
        config = {"seed": profile["seed"],
                  **{k: v for k, v in profile.items() if k.startswith("ddgan_")}}
        metrics = ddgan.train_ddgan(config, args.out, device=args.device)
        checkpoint = args.out / "generator_ema.pt"
        summary = metrics
    else:
        result = ddgan_model(profile, ResultCache(args.cache_dir))
        metrics, checkpoint = result.metrics["train"], result.file("generator_ema.pt")
        summary = metrics
    print(f"trained {summary['train_steps']} generator steps ({summary['images_seen']:,} real "
          f"images) in {summary['wall_time_s']:.0f} s; D loss {summary['loss_d']:.4f}, "
          f"logit gap {summary['gap']:.4f}")
    print(f"checkpoint: {checkpoint}")
    return 0


def checkpoint_kind(path: Path) -> str:
    """``"ddpm"`` or ``"ddgan"`` for a model file that ``sample`` can draw from (one-line error
    otherwise)."""
    from . import ddgan, ddpm
    from .training import CheckpointError, load_checkpoint

    saved = load_checkpoint(path)
    fmt = saved.get("format") if isinstance(saved, dict) else None
    if fmt == ddgan.GENERATOR_FORMAT:
        return "ddgan"
    if fmt in (ddpm.MODEL_FORMAT, None) and isinstance(saved, dict) and "config" in saved:
        return "ddpm"
    hint = ""
    if fmt in (ddgan.CHECKPOINT_FORMAT, ddpm.CHECKPOINT_FORMAT):
        hint = ("; it is a training state: sample from generator_ema.pt (DDGAN) or model_ema.pt "
                "(DDPM), written when training finishes")
    raise CheckpointError(f"{path} is not a model file that sample can use (format {fmt!r}){hint}")


def _sample(argv: list[str]) -> int:
    import io
    import time

    import numpy as np
    import torch

    from .cache import atomic_write_bytes
    from .data import model_to_uint8

    parser = argparse.ArgumentParser(
        prog="python -m ddgan_core sample",
        description="Draw samples from a DDPM (model_ema.pt) or DDGAN (generator_ema.pt) model "
                    "file into an .npz (key 'images', uint8 [N, 28, 28]).")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--steps", type=int,
                        help="DDPM: reverse steps K in [1, T] (default: all T); DDGAN: always T")
    parser.add_argument("--sampler", default="ancestral", choices=["ancestral", "ddim"],
                        help="DDPM only")
    parser.add_argument("--eta", type=float, default=None,
                        help="DDIM only: 0 (default) deterministic, 1 ancestral-like")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--device")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.out.suffix != ".npz":
        raise ValueError(f"--out {args.out}: samples are written as .npz")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a file name ending in .npz")
    if not args.out.parent.is_dir():
        raise ValueError(f"--out {args.out}: folder {args.out.parent} does not exist; create it "
                         "first")
    if args.n < 1:
        raise ValueError(f"--n {args.n}: must be >= 1")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps {args.steps}: must be >= 1 (omit it for all T steps)")
    if args.eta is not None and args.sampler != "ddim":
        raise ValueError(f"--eta {args.eta}: applies to --sampler ddim only (the ancestral "
                         "sampler's variance is fixed)")
    if args.eta is not None and not 0.0 <= args.eta <= 1.0:
        raise ValueError(f"--eta {args.eta}: must be in [0, 1]")
    if args.device is not None:
        from .training import pick_device

        pick_device(args.device)
    kind = checkpoint_kind(args.checkpoint)
    start = time.perf_counter()
    if kind == "ddpm":
        from . import ddpm

        model, diffusion = ddpm.load_model(args.checkpoint, args.device)
        steps = diffusion.num_timesteps if args.steps is None else args.steps
        if steps > diffusion.num_timesteps:
            raise ValueError(f"--steps {steps}: must be in [1, {diffusion.num_timesteps}] (T of "
                             "this model)")
        start = time.perf_counter()
        images, nfe = ddpm.ddpm_sample(model, diffusion, args.n, steps, args.sampler,
                                       args.eta or 0.0, args.seed, args.batch_size, args.device)
        sampler = args.sampler
    else:
        from . import ddgan

        if args.sampler != "ancestral" or args.eta is not None:
            raise ValueError("--sampler/--eta apply to DDPM models; a DDGAN samples its own chain")
        generator = ddgan.load_generator(args.checkpoint, args.device)
        config = generator.arch
        T = int(config["ddgan_timesteps"])
        if args.steps is not None and args.steps != T:
            raise ValueError(f"--steps {args.steps}: a DDGAN samples exactly its T = {T} steps")
        steps = T
        start = time.perf_counter()
        images, nfe = ddgan.ddgan_sample(generator, ddgan.make_ddgan_diffusion(T), args.n,
                                         int(config["ddgan_nz"]), args.seed, args.batch_size,
                                         args.device)
        sampler = "ddgan"
    seconds = time.perf_counter() - start
    if not bool(torch.isfinite(images).all()):
        raise RuntimeError(f"{kind} sampling produced NaN/inf values (a diverged model or a "
                           f"broken schedule); nothing written to {args.out}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=model_to_uint8(images).numpy(), nfe=nfe,
                        seconds=seconds, sampler=sampler, steps=steps, seed=args.seed,
                        model=kind)
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"{args.n} images, NFE {nfe}, {seconds / args.n:.4f} s/image -> {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ddgan_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("profiles", help="print every profile's parameters")

    rep = sub.add_parser("reproduce", help="compute every experiment of a profile")
    rep.add_argument("--profile", required=True, choices=sorted(PROFILES))
    rep.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    rep.add_argument("--only", action="append", metavar="EXPERIMENT")
    rep.add_argument("--archive", type=Path, help="pack the results into this .tar.gz")
    rep.add_argument("--cache-dir", type=Path)
    rep.add_argument("--budget-minutes", type=float,
                     help="start nothing new after this long; finished entries are kept")

    unp = sub.add_parser("unpack", help="merge a results archive into the cache")
    unp.add_argument("archive", type=Path)
    unp.add_argument("--cache-dir", type=Path)

    swp = sub.add_parser("sweep", help="run a chapter over a parameter grid")
    swp.add_argument("notebook")
    swp.add_argument("-p", "--param", nargs="+", action="append", required=True,
                     metavar="NAME VALUE", help="parameter and its values (repeat for a grid)")
    swp.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    swp.add_argument("--out", type=Path)

    sub.add_parser("eval", help="metrics of a samples file (see eval --help)", add_help=False)
    sub.add_parser("train", help="train a model (see train --help)", add_help=False)
    sub.add_parser("sample", help="sample a checkpoint into .npz (see sample --help)",
                   add_help=False)
    sub.add_parser("book", help="execute chapters and build the book", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = {"eval": _eval, "train": _train, "sample": _sample}
    try:
        if argv and argv[0] in passthrough:
            return passthrough[argv[0]](argv[1:])
        if argv and argv[0] == "book":
            from .book import main as book_main

            return book_main(argv[1:])
        args = build_parser().parse_args(argv)
        if args.command == "profiles":
            print(describe())
            return 0
        handlers = {"reproduce": _reproduce, "unpack": _unpack, "sweep": _sweep}
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
