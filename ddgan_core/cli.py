"""The command line: ``python -m ddgan_core <command>`` (also installed as ``ddgan``).

Commands:
  profiles                         print every profile's parameters
  reproduce --profile P            compute every experiment of a profile, pack an archive
  unpack ARCHIVE                   merge a results archive into the cache
  sweep NOTEBOOK -p NAME V1 V2 ... papermill over a grid, glued numbers into CSV + plot
  eval --samples FILE.npz          FID, KID, precision/recall, density/coverage
  train classifier|ddpm            train the feature extractor or a DDPM (--profile P)
  sample --checkpoint PATH ...     draw samples into an .npz file
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

    added = ResultCache(args.cache_dir).unpack(args.archive)
    for path in added:
        print(f"unpacked {path}")
    print(f"{len(added)} entries merged")
    return 0


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


TRAINABLE = ("classifier", "ddpm")


def _train(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m ddgan_core train {{{','.join(TRAINABLE)}}} [options]")
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
    parser.add_argument("--out", type=Path, help="train into this folder instead of the cache")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--device")
    args = parser.parse_args(rest)
    from .profiles import get_profile

    profile = get_profile(args.profile, **parse_assignments(args.overrides))
    from . import ddpm
    from .cache import ResultCache
    from .experiments import ddpm_model

    if args.out:
        metrics = ddpm.train_ddpm(ddpm.training_config(profile), args.out, device=args.device)
        checkpoint = args.out / "model_ema.pt"
    else:
        result = ddpm_model(profile, ResultCache(args.cache_dir))
        metrics, checkpoint = result.metrics, result.file("model_ema.pt")
    print(f"trained {metrics['train_steps']} steps ({metrics['images_seen']:,} images) in "
          f"{metrics['train_seconds']:.0f} s; final loss {metrics['final_loss']:.4f}")
    print(f"checkpoint: {checkpoint}")
    return 0


def _sample(argv: list[str]) -> int:
    import time

    import numpy as np

    from .data import model_to_uint8

    parser = argparse.ArgumentParser(prog="python -m ddgan_core sample")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--steps", type=int, help="reverse steps K (DDPM; default: all)")
    parser.add_argument("--sampler", default="ancestral", choices=["ancestral", "ddim"])
    parser.add_argument("--eta", type=float, default=0.0)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--device")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.out.suffix != ".npz":
        raise ValueError(f"--out {args.out}: samples are written as .npz")
    if args.n < 1:
        raise ValueError(f"--n {args.n}: must be >= 1")
    from . import ddpm

    model, diffusion = ddpm.load_model(args.checkpoint, args.device)
    steps = args.steps or diffusion.num_timesteps
    start = time.perf_counter()
    images, nfe = ddpm.ddpm_sample(model, diffusion, args.n, steps, args.sampler, args.eta,
                                   args.seed, args.batch_size, args.device)
    seconds = time.perf_counter() - start
    np.savez_compressed(args.out, images=model_to_uint8(images).numpy(), nfe=nfe,
                        seconds=seconds, sampler=args.sampler, steps=steps, seed=args.seed)
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
