"""The command line: ``python -m ddgan_core <command>`` (also installed as ``ddgan``).

Commands:
  profiles                         print every profile's parameters
  reproduce --profile P            compute every experiment of a profile, pack an archive
  unpack ARCHIVE                   merge a results archive into the cache
  sweep NOTEBOOK -p NAME V1 V2 ... papermill over a grid, glued numbers into CSV + plot
  eval --samples FILE.npz          FID, KID, precision/recall, density/coverage
  train classifier                 the FashionMNIST feature extractor used by the metrics
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
    results = reproduce(args.profile, parse_assignments(args.overrides), args.only, cache)
    if args.archive:
        archive = cache.pack(args.archive, [r.path for r in results])
        print(f"archive: {archive} ({len(results)} entries)")
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


def _train(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m ddgan_core train {classifier} [options]")
        return 0 if argv else 2
    what, rest = argv[0], argv[1:]
    if what == "classifier":
        from .metrics.features import cli_train_classifier

        return cli_train_classifier(rest) or 0
    raise ValueError(f"train {what!r}: unknown model; valid: ['classifier']")


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
    sub.add_parser("book", help="execute chapters and build the book", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = {"eval": _eval, "train": _train}
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
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
