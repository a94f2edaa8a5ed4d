"""The command line: ``python -m ddgan_core <command>`` (also installed as ``ddgan``).

Every parser of the project is defined here, once (:func:`build_parser`), with argparse
subcommands: ``data``, ``profiles``, ``train {classifier,ddpm,ddgan}``, ``sample``, ``eval``,
``book``, ``sweep``, ``reproduce`` and ``unpack``. The older entry points
(``python -m ddgan_core.book``, :func:`metrics.evaluate.cli_eval`,
:func:`metrics.features.cli_train_classifier`) parse with :func:`command_parser` and run the same
handlers. A handler checks its input and then calls the module that does the work.

Bad input (a refused option, a wrong value, a missing file) is one ``error: ...`` line on stderr
and exit status 2, before any long work. Exceptions: ``data`` exits 1 when FashionMNIST is
missing or corrupt (printing the fixes), ``book`` exits 1 when a chapter or the build fails, and
``unpack`` exits 1 when an entry of the archive was skipped as corrupt.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from . import __version__
from .profiles import PROFILES, describe, parse_assignments

PROG = "python -m ddgan_core"
TRAINABLE = ("classifier", "ddpm", "ddgan")
CACHE_HELP = ("result cache to read and write (default: $DDGAN_CACHE_DIR or .cache/results, "
              "read before the committed results/, which are never written)")


class UsageError(ValueError):
    """argparse refused the command line (unknown option, missing or malformed argument)."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (one line, handled like any
    other bad input) instead of printing the usage and exiting; ``--help`` still exits 0."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see {self.prog} --help)")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with room for the command names before their help (argparse sizes
    that column by the options only, and wraps ``reproduce`` onto a line of its own)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog)
        self._action_max_length = 16


# ----------------------------------------------------------------------------------------------
# handlers: input checks, then the module that does the work


def _profiles(args: argparse.Namespace) -> int:
    print(describe())
    return 0


def _data(args: argparse.Namespace) -> int:
    from . import data

    try:
        found = data.ensure_dataset(args.root, download=args.download, apt=args.apt)
    except (data.DatasetNotFoundError, data.DatasetCorruptError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for split, directory in found.items():
        names = ", ".join(data.FILES[split])
        print(f"FashionMNIST {split}: {directory.resolve()} ({names}; MD5 verified)")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from .cache import ResultCache
    from .experiments import reproduce

    cache = ResultCache(args.cache_dir, read_committed=True)
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


def _promote(args: argparse.Namespace) -> int:
    from .cache import ResultCache

    if not args.entries and not args.all:
        raise ValueError("promote: name the entries (NAME/KEY ...) or pass --all")
    cache = ResultCache(args.cache_dir, read_committed=True)
    for entry, what in cache.promote(None if args.all else args.entries):
        print(f"{what}: {entry}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from . import sweep

    grid = {}
    for spec in args.param:
        if len(spec) < 2:
            raise ValueError(f"-p {' '.join(spec)}: expected NAME VALUE [VALUE ...]")
        grid[spec[0]] = [parse_assignments([f"v={v}"])["v"] for v in spec[1:]]
    sweep.run_sweep(args.notebook, grid, args.profile, args.out)
    return 0


def run_book(args: argparse.Namespace) -> int:
    """``book``: execute the chapters and build; a failure is one ``error:`` line and exit 1."""
    from . import book

    try:
        html = book.run(args.profile, parse_assignments(args.overrides), args.only,
                        args.book_dir, args.cache_dir, build=not args.no_build)
    except (ValueError, FileNotFoundError, RuntimeError) as err:  # NotebookFailed included
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"book: {html / 'index.html'}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``eval``: every input (``--k``, ``--n``, the samples path, its dtype, shape and values) is
    checked before any feature is extracted; a bad one raises ``ValueError`` in one line."""
    from .metrics import evaluate

    evaluate.check_positive("--k ", args.k, "the number of nearest neighbours")
    if args.bootstrap == 1 or args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: must be 0 (none) or >= 2 resamples")
    if args.n is not None:
        evaluate.check_positive("--n ", args.n, "the number of images")
    if not Path(args.samples).exists():
        raise evaluate.SamplesNotFoundError(
            f"--samples {args.samples}: not found (expected {evaluate._SOURCES})")
    try:
        result = evaluate.evaluate_samples(
            args.samples, n=args.n, k=args.k, device=args.device, inception=args.inception,
            cache_dir=args.cache_dir, value_range=args.value_range,
            bootstrap=args.bootstrap, second_extractor=args.second_extractor,
        )
    except ValueError as err:  # name the options as the command line spells them
        renamed = evaluate._cli_names(str(err))
        if renamed == str(err):
            raise
        raise ValueError(renamed) from None
    if args.json:
        import json

        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(evaluate.format_report(result, source=args.samples))
    return 0


def run_train_classifier(args: argparse.Namespace) -> int:
    """``train classifier``: refuses the pinned asset (without ``--overwrite-pinned``) before
    minutes of training, then :func:`metrics.features.train_classifier` (or, with
    ``--second``, :func:`metrics.second.train_second_extractor`)."""
    from .metrics import features, second

    if args.second:
        pinned, default_out, pinned_sha = (second.SECOND_CHECKPOINT, second.SECOND_TRAIN_OUT,
                                           second.SECOND_SHA256)
    else:
        pinned, default_out, pinned_sha = (features.DEFAULT_CHECKPOINT,
                                           features.DEFAULT_TRAIN_OUT, features.CHECKPOINT_SHA256)
    out = args.out or (pinned if args.overwrite_pinned else default_out)
    manifest = args.manifest or out.with_suffix(".json")
    features.check_not_pinned([out, manifest], args.overwrite_pinned)
    if args.second:
        if args.device != "cpu":
            raise ValueError("--second trains on the CPU only (its pinned file is reproducible "
                             "there); drop --device")
        info = second.train_second_extractor(
            out=out, epochs=args.epochs or second.SECOND_TRAIN_CONFIG["epochs"],
            seed=args.seed if args.seed is not None else second.SECOND_TRAIN_CONFIG["seed"],
            manifest=manifest, num_threads=args.threads, overwrite_pinned=args.overwrite_pinned)
        seconds = info["train_wall_time_s"]
    else:
        info = features.train_classifier(
            epochs=args.epochs or features.DEFAULT_TRAIN_CONFIG["epochs"],
            seed=args.seed if args.seed is not None else 0, device=args.device,
            num_threads=args.threads, out=out, manifest=manifest,
            overwrite_pinned=args.overwrite_pinned,
        )
        seconds = info["train_wall_time_s"]
    print(
        f"saved {out} ({info['checkpoint_bytes']} bytes, sha256 {info['sha256']}); "
        f"test accuracy {info['test_accuracy']:.4f}; {seconds} s; manifest {manifest}"
    )
    if info["sha256"] != pinned_sha:
        constant = "SECOND_SHA256 in ddgan_core/metrics/second.py" if args.second else \
            "CHECKPOINT_SHA256 in ddgan_core/metrics/features.py"
        print(
            f"note: the sha256 differs from the pinned {constant}; to evaluate with this "
            "checkpoint, install it with --overwrite-pinned and update that constant (reference "
            "statistics are cached per checksum, so they are recomputed)."
        )
    return 0


def _train_model(args: argparse.Namespace) -> int:
    """``train ddpm|ddgan``: profile, ``--out`` and ``--device`` checked before any work."""
    from .profiles import get_profile

    profile = get_profile(args.profile, **parse_assignments(args.overrides))
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; give a folder to train into")
    if args.device is not None:
        from .training import pick_device

        pick_device(args.device)  # a bad device fails here, before any work
    if args.model == "ddpm":
        if args.equal_budget and args.out is not None:
            raise ValueError("--equal-budget trains the cached model of the DDGAN chapter's "
                             "comparison; it cannot be combined with --out")
        return _train_ddpm(profile, args)
    return _train_ddgan(profile, args)


def _train_ddpm(profile: dict, args: argparse.Namespace) -> int:
    from . import ddpm
    from .cache import ResultCache
    from .checkpoint import find_model_file
    from .experiments import ddpm_budget_model, ddpm_model

    ddpm.make_diffusion(profile)  # a schedule with beta = 1 (e.g. linear, T = 20) fails here
    ddpm.make_model(profile)
    if args.out:
        metrics = ddpm.train_ddpm(ddpm.training_config(profile), args.out, device=args.device,
                                  checkpoint_every=profile["ddpm_checkpoint_every"])
        checkpoint = args.out / ddpm.MODEL_FILE
    else:
        experiment = ddpm_budget_model if args.equal_budget else ddpm_model
        result = experiment(profile, ResultCache(args.cache_dir, read_committed=True))
        metrics, checkpoint = result.metrics, find_model_file(result.path, "ddpm")
    over = (f" over {metrics['processes']} processes"
            if metrics.get("processes", 1) > 1 else "")
    print(f"trained {metrics['train_steps']} steps ({metrics['images_seen']:,} images) in "
          f"{metrics['train_seconds']:.0f} s{over}; final loss {metrics['final_loss']:.4f}")
    print(f"checkpoint: {checkpoint}")
    return 0


def _train_ddgan(profile: dict, args: argparse.Namespace) -> int:
    from . import ddgan
    from .cache import ResultCache
    from .checkpoint import find_model_file
    from .experiments import ddgan_model

    ddgan.make_generator(profile)  # shapes checked before any work
    ddgan.make_discriminator(profile)
    if args.out:
        metrics = ddgan.train_ddgan(ddgan.training_config(profile), args.out, device=args.device,
                                    checkpoint_every=profile["ddgan_checkpoint_every"],
                                    log_every=profile["ddgan_log_every"] or None)
        checkpoint = args.out / ddgan.GENERATOR_FILE
    else:
        result = ddgan_model(profile, ResultCache(args.cache_dir, read_committed=True))
        metrics, checkpoint = result.metrics["train"], find_model_file(result.path, "ddgan")
    over = (f" over {metrics['processes']} processes"
            if metrics.get("processes", 1) > 1 else "")
    print(f"trained {metrics['train_steps']} generator steps ({metrics['images_seen']:,} real "
          f"images) in {metrics['wall_time_s']:.0f} s{over}; D loss {metrics['loss_d']:.4f}, "
          f"logit gap {metrics['gap']:.4f}")
    print(f"checkpoint: {checkpoint}")
    return 0


def checkpoint_kind(path: Path) -> str:
    """``"ddpm"``, ``"ddgan"`` or ``"student"`` for a model file that ``sample`` can draw from,
    safetensors or the torch files of before (one-line error otherwise)."""
    from .checkpoint import model_kind

    return model_kind(path)


def _check_sample_args(args: argparse.Namespace) -> None:
    """Every ``sample`` option that can be checked without the model file (one-line errors)."""
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


def _sample(args: argparse.Namespace) -> int:
    """``sample``: draw from a DDPM (``model_ema.safetensors``), DDGAN
    (``generator_ema.safetensors``) or distilled-student (``student_k{N}.safetensors``) model
    file into an ``.npz``, written aside and renamed; NaN/inf samples are refused."""
    import io
    import time

    import numpy as np
    import torch

    from .cache import atomic_write_bytes
    from .data import model_to_uint8

    _check_sample_args(args)
    network = {"precision": args.precision, "compile": args.compile}
    kind = checkpoint_kind(args.checkpoint)
    if kind != "ddpm" and (args.sampler != "ancestral" or args.eta is not None
                           or args.spacing is not None):
        own = {"ddgan": "a DDGAN samples its own chain",
               "student": "a distilled student samples its own DDIM grid"}[kind]
        raise ValueError(f"--sampler/--eta/--spacing apply to DDPM models; {own}")
    if kind == "ddpm":
        from . import ddpm

        model, diffusion = ddpm.load_model(args.checkpoint, args.device)
        steps = diffusion.num_timesteps if args.steps is None else args.steps
        if steps > diffusion.num_timesteps:
            raise ValueError(f"--steps {steps}: must be in [1, {diffusion.num_timesteps}] (T of "
                             "this model)")
        start = time.perf_counter()
        if args.sampler in ddpm.SAMPLERS:
            images, nfe = ddpm.ddpm_sample(model, diffusion, args.n, steps, args.sampler,
                                           args.eta or 0.0, args.seed, args.batch_size,
                                           args.device, spacing=args.spacing or "linspace",
                                           **network)
        else:  # a fast ODE solver (diffusers)
            from .solvers import solver_sample

            images, nfe = solver_sample(model, diffusion, args.n, steps, args.sampler,
                                        args.spacing or "trailing", args.seed, args.batch_size,
                                        args.device, **network)
        sampler = args.sampler
    elif kind == "student":
        from .distillation import distill_sample, load_student

        model, diffusion, steps = load_student(args.checkpoint, args.device)
        if args.steps is not None and args.steps != steps:
            raise ValueError(f"--steps {args.steps}: this student was distilled for exactly "
                             f"{steps} steps (each round's file holds one step count)")
        start = time.perf_counter()
        if args.precision == "auto":  # the students were distilled in float32 everywhere
            network["precision"] = "fp32"
        images, nfe = distill_sample(model, diffusion, args.n, steps, args.seed,
                                     args.batch_size, args.device, progress=True, **network)
        sampler = "student"
    else:
        from . import ddgan

        generator = ddgan.load_generator(args.checkpoint, args.device)
        config = generator.arch
        T = int(config["ddgan_timesteps"])
        if args.steps is not None and args.steps != T:
            raise ValueError(f"--steps {args.steps}: a DDGAN samples exactly its T = {T} steps")
        steps = T
        start = time.perf_counter()
        images, nfe = ddgan.ddgan_sample(generator, ddgan.make_ddgan_diffusion(T), args.n,
                                         int(config["ddgan_nz"]), args.seed, args.batch_size,
                                         args.device, **network)
        sampler = "ddgan"
    seconds = time.perf_counter() - start
    if not bool(torch.isfinite(images).all()):
        raise RuntimeError(f"{kind} sampling produced NaN/inf values (a diverged model or a "
                           f"broken schedule); nothing written to {args.out}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=model_to_uint8(images).numpy(), nfe=nfe,
                        seconds=seconds, sampler=sampler, steps=steps, seed=args.seed,
                        model=kind, precision=network["precision"], compile=args.compile)
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"{args.n} images, NFE {nfe}, {seconds / args.n:.4f} s/image -> {args.out}")
    return 0


# ----------------------------------------------------------------------------------------------
# parsers: one definition of each


def _command(sub: argparse._SubParsersAction, name: str, summary: str, description: str,
             handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """A subcommand with a one-line ``summary`` (in the parent's help) and its own help."""
    parser = sub.add_parser(name, help=summary, description=description,
                            formatter_class=HelpFormatter)
    parser.set_defaults(handler=handler)
    return parser


def _add_data(sub: argparse._SubParsersAction) -> None:
    from .data import DEBIAN_DIR, DEBIAN_PACKAGE, ENV_VAR, TORCHVISION_DIR

    parser = _command(
        sub, "data", "check (or fetch) FashionMNIST and print where it is",
        "Check that the four FashionMNIST files are found and match their official MD5 sums, "
        f"and print where they are. Looked for in: --root DIR or ${ENV_VAR} (and DIR/"
        f"FashionMNIST/raw), {TORCHVISION_DIR}, {DEBIAN_DIR}. When they are missing: with "
        f"--download or --apt, as root with apt-get, `apt-get install -y {DEBIAN_PACKAGE}`; "
        "then, with --download, torchvision's download. Otherwise (or if that fails) exit 1 "
        "with the three fixes. Nothing is installed or downloaded without a flag.",
        _data,
    )
    parser.add_argument("--download", action="store_true",
                        help="when missing: the Debian package (as root), else download with "
                        f"torchvision into DIR/FashionMNIST/raw (--root) or {TORCHVISION_DIR} "
                        "(needs internet)")
    parser.add_argument("--apt", action="store_true",
                        help=f"when missing: install the Debian package {DEBIAN_PACKAGE} "
                        "(root and apt-get only); no download")
    parser.add_argument("--root", type=Path, default=None, metavar="DIR",
                        help="look here first (DIR or DIR/FashionMNIST/raw); --download saves "
                        "into DIR/FashionMNIST/raw")


def _add_profiles(sub: argparse._SubParsersAction) -> None:
    _command(sub, "profiles", "print every profile's parameters",
             "Print a table of every parameter of every profile (smoke: seconds, tests only; "
             "cpu: the reference run on a 2-core CPU; full: paper scale on one GPU).", _profiles)


def _add_profile_options(parser: argparse.ArgumentParser, required: bool = True,
                         default: str | None = None, what: str = "") -> None:
    """``--profile`` and ``--set KEY=VALUE`` (overrides of the profile's parameters)."""
    parser.add_argument("--profile", required=required, default=default,
                        choices=sorted(PROFILES),
                        help="the profile (see the profiles command)"
                        + (f"; default: {default}" if default else ""))
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help=f"override {what or 'a profile parameter'} (value parsed as JSON "
                        "when possible; repeatable)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train", help="train the feature extractor, a DDPM or a DDGAN",
        formatter_class=HelpFormatter,
        description="Train a model. classifier: the FID feature extractor; ddpm, ddgan: the "
        "model of a profile, into the result cache or --out DIR (resumable: rerun the same "
        "command after an interruption). See train MODEL --help.")
    models = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    _add_train_classifier(models)
    for name, title, checkpoint in (("ddpm", "a DDPM", "model_ema.safetensors"),
                                    ("ddgan", "a Denoising Diffusion GAN",
                                     "generator_ema.safetensors")):
        parser = _command(
            models, name, f"train {title} of a profile",
            f"Train {title} with a profile's parameters, into the result cache (the entry the "
            f"book reads) or into --out DIR. Checkpoints are written as it goes; after an "
            f"interruption the same command resumes. The model file is {checkpoint}.",
            _train_model,
        )
        _add_profile_options(parser)
        parser.add_argument("--out", type=Path,
                            help="train into this folder instead of the cache; an interrupted "
                            "run resumes from its checkpoint there")
        parser.add_argument("--cache-dir", type=Path,
                            help=CACHE_HELP)
        parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
        if name == "ddpm":
            parser.add_argument(
                "--equal-budget", action="store_true",
                help="the DDPM of the DDGAN chapter's comparison: trained for the profile's "
                "budget_minutes with budget_threads threads (as train ddgan is when the "
                "profile has a budget) instead of ddpm_train_steps")


def _add_train_classifier(models: argparse._SubParsersAction) -> None:
    from .metrics.features import DEFAULT_CHECKPOINT, DEFAULT_TRAIN_CONFIG, DEFAULT_TRAIN_OUT

    parser = _command(
        models, "classifier", "train the FashionMNIST feature extractor of the metrics",
        "Train the FashionMNIST feature extractor used by FID/KID/PR metrics. The result goes "
        f"to {DEFAULT_TRAIN_OUT} under the working directory unless --out is given; the pinned "
        "extractor inside the package is replaced only with --overwrite-pinned.",
        run_train_classifier,
    )
    parser.add_argument("--second", action="store_true",
                        help="train the independent second extractor fmnist-cnn-b instead "
                        "(another architecture and recipe; the metrics' cross-check)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (default: {DEFAULT_TRAIN_CONFIG['epochs']}; "
                        "10 with --second)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: 0; 1 with --second)")
    parser.add_argument(
        "--device", default="cpu",
        help="cpu (default: the pinned checkpoint was trained on CPU, which reproduces it byte "
        "for byte) or cuda (faster; a different, equally valid file with its own checksum)",
    )
    parser.add_argument("--threads", type=int, default=DEFAULT_TRAIN_CONFIG["num_threads"],
                        help="CPU threads (default: "
                        f"{DEFAULT_TRAIN_CONFIG['num_threads']}, for a reproducible file)")
    parser.add_argument(
        "--out", type=Path, default=None,
        help=f"checkpoint path (default: {DEFAULT_TRAIN_OUT}; with --overwrite-pinned: the "
        "pinned asset in the package)",
    )
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest path (default: the checkpoint path with .json)")
    parser.add_argument(
        "--overwrite-pinned", action="store_true",
        help=f"allow writing over the pinned extractor {DEFAULT_CHECKPOINT.name} in the package "
        "(then update CHECKPOINT_SHA256 if the checksum changes)",
    )


def _add_sample(sub: argparse._SubParsersAction) -> None:
    parser = _command(
        sub, "sample", "draw samples of a DDPM, DDGAN or distilled-student model file into an "
        ".npz",
        "Draw samples from a DDPM (model_ema.safetensors), DDGAN (generator_ema.safetensors; "
        "the .pt files of earlier versions too) or distilled student (student_k{N}.safetensors, "
        "its N steps) model file into an "
        ".npz (key 'images', uint8 [N, 28, 28], with nfe, seconds, sampler, steps, seed, model).",
        _sample,
    )
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="model_ema.safetensors (DDPM), generator_ema.safetensors (DDGAN) "
                        "or student_k{N}.safetensors (a distilled student)")
    parser.add_argument("--steps", type=int,
                        help="DDPM: reverse steps K in [1, T] (default: all T); DDGAN: always T; "
                        "a student: always its N")
    parser.add_argument("--sampler", default="ancestral",
                        choices=["ancestral", "ddim", "dpmsolver++", "dpmsolver++3m", "unipc"],
                        help="DDPM only (default: ancestral); dpmsolver++ (2M), dpmsolver++3m "
                        "and unipc are diffusers' fast ODE solvers, one evaluation per step")
    parser.add_argument("--spacing", choices=["linspace", "trailing"], default=None,
                        help="DDPM only: which K of the T steps to visit; linspace keeps t = 0 "
                        "and T-1 (default for ancestral and ddim), trailing ends at T-1 and "
                        "skips t = 0 (default for the solvers)")
    parser.add_argument("--eta", type=float, default=None,
                        help="DDIM only: 0 (default) deterministic, 1 ancestral-like")
    parser.add_argument("--n", type=int, required=True, help="number of images (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="images per batch (default: 1000)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="the network's arithmetic: auto (default) is bf16 on CUDA and "
                        "float32 on the CPU (float32 everywhere for a student); bf16 on a CPU "
                        "with AVX-512 BF16 or AMX runs about 1.3x faster, 2x with --compile "
                        "(chapter 7 measures what it does to FID)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the network with torch.compile first (20-30 s per batch "
                        "shape on a 2-core CPU, which needs a C++ compiler; pays over thousands "
                        "of network evaluations)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the .npz to write (its folder must exist)")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from .metrics.evaluate import _SHAPES, _SOURCES, VALUE_RANGES, VALUE_RULE

    parser = _command(
        sub, "eval", "FID, KID, precision/recall, density/coverage of a samples file",
        "FID/KID/precision/recall/density/coverage of generated FashionMNIST images on the "
        f"project's classifier features, beside the real-data floor. Values: {VALUE_RULE}.",
        run_eval,
    )
    parser.add_argument("--samples", required=True,
                        help=f"{_SOURCES}; images {_SHAPES}, uint8 0..255 or float in [-1, 1]")
    parser.add_argument("--n", type=int, default=None,
                        help="use the first N images (N >= 1; default: all)")
    parser.add_argument("--k", type=int, default=5,
                        help="nearest neighbours for PR/DC (K >= 1, fewer than the images; "
                        "default: 5)")
    parser.add_argument(
        "--range", dest="value_range", choices=VALUE_RANGES, default="-11",
        help="range of float images: -11 (default) for [-1, 1]; 01 for [0, 1], mapped by "
        "x * 2 - 1 (floats all in [0, 1] are refused as ambiguous without --range 01; "
        "uint8 images are always 0..255)",
    )
    parser.add_argument("--bootstrap", type=int, default=0,
                        help="95%% intervals from this many resamples of the generated images "
                        "(default: 0, none; the book uses 200)")
    parser.add_argument("--second-extractor", action="store_true",
                        help="also report every metric under the independent second "
                        "extractor (fmnist-cnn-b)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--inception", default=None,
                        help="Inception weights file or folder (default: $DDGAN_INCEPTION_WEIGHTS)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--cache-dir", default=None,
                        help="reference-statistics cache (default: $DDGAN_CACHE_DIR or results/)")


def _add_book(sub: argparse._SubParsersAction) -> None:
    parser = _command(
        sub, "book", "execute the chapters and build the book",
        "Execute every chapter with papermill (a profile and overrides), then build the book "
        "strictly into _build/html. Every override is checked before the first chapter runs; "
        "a failing chapter stops the run (exit 1) and keeps the last good executed notebook. "
        "Same as python -m ddgan_core.book.",
        run_book,
    )
    _add_profile_options(parser, required=False, default="cpu", what="a notebook parameter")
    parser.add_argument("--only", action="append", metavar="CHAPTER",
                        help="execute only this chapter (repeatable)")
    parser.add_argument("--book-dir", type=Path, help="build elsewhere (a copy of the pages)")
    parser.add_argument("--cache-dir", type=Path, help=CACHE_HELP)
    parser.add_argument("--no-build", action="store_true", help="execute notebooks only")


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    parser = _command(
        sub, "sweep", "run a chapter or an experiment over a parameter grid into a CSV and a plot",
        "Execute a chapter once per point of a parameter grid (several -p make a grid), read "
        "every number it glues and write results.csv and plot.png; or compute (or load) a "
        "cached experiment per point (ddgan_sweep_point: one DDGAN recipe trained for "
        "sweep_steps and scored, the hyper-parameter chapter's unit) and write its metrics. "
        "Every value is checked before the first point runs.",
        _sweep,
    )
    parser.add_argument("notebook", help="a chapter, e.g. notebooks/01_forward_process, or "
                        "the experiment ddgan_sweep_point")
    parser.add_argument("-p", "--param", nargs="+", action="append", required=True,
                        metavar="NAME VALUE", help="parameter and its values (repeat for a grid)")
    parser.add_argument("--profile", required=True, choices=sorted(PROFILES),
                        help="the profile of every point (smoke numbers mean nothing)")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: sweeps/<chapter>/<date-time>)")


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    parser = _command(
        sub, "reproduce", "compute every experiment of a profile, optionally pack an archive",
        "Compute (or load from the result cache) every experiment of a profile without "
        "Jupyter; with --archive, pack every complete entry into a .tar.gz for unpack.",
        _reproduce,
    )
    _add_profile_options(parser)
    parser.add_argument("--only", action="append", metavar="EXPERIMENT",
                        help="compute only this experiment (repeatable)")
    parser.add_argument("--archive", type=Path, help="pack the results into this .tar.gz")
    parser.add_argument("--cache-dir", type=Path, help=CACHE_HELP)
    parser.add_argument("--budget-minutes", type=float,
                        help="start nothing new after this long; finished entries are kept")


def _add_unpack(sub: argparse._SubParsersAction) -> None:
    parser = _command(
        sub, "unpack", "merge a results archive into the cache (verified)",
        "Merge a results archive (from reproduce --archive) into the cache. Each entry is "
        "verified before it is merged and never replaces a good local entry; exit 1 when an "
        "entry was skipped as corrupt.",
        _unpack,
    )
    parser.add_argument("archive", type=Path, help="the .tar.gz to merge")
    parser.add_argument("--cache-dir", type=Path, help=CACHE_HELP)


def _add_promote(sub: argparse._SubParsersAction) -> None:
    parser = _command(
        sub, "promote", "copy verified local runs into the committed results/",
        "Runs write into the local cache (.cache/results, git-ignored); the book reads it "
        "first, then the committed reference results in results/. promote is the one explicit "
        "way a local entry becomes a reference result: each entry is verified, copied aside and "
        "renamed into results/ (a verified committed copy is left alone).",
        _promote,
    )
    parser.add_argument("entries", nargs="*", metavar="NAME/KEY",
                        help="entries of the local cache, e.g. ddgan_model/6575a30717743ba2")
    parser.add_argument("--all", action="store_true", help="every complete local entry")
    parser.add_argument("--cache-dir", type=Path,
                        help="the local cache to promote from (default: .cache/results)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command, each with its own ``--help``."""
    parser = Parser(
        prog=PROG, formatter_class=HelpFormatter,
        description="DDGAN against DDPM on FashionMNIST: data, training, sampling, metrics, "
        "the executable book and its result cache.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"ddgan_core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_data, _add_profiles, _add_train, _add_sample, _add_eval, _add_book,
                _add_sweep, _add_reproduce, _add_unpack, _add_promote):
        add(sub)
    return parser


def command_parser(*path: str) -> argparse.ArgumentParser:
    """The parser of one command, e.g. ``command_parser("train", "classifier")``, for the entry
    points that take that command's arguments only (``python -m ddgan_core.book``)."""
    parser = build_parser()
    for name in path:
        choices = next(action.choices for action in parser._actions
                       if isinstance(action, argparse._SubParsersAction))
        parser = choices[name]
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help and --version print and exit 0
            return int(done.code or 0)
        return args.handler(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
