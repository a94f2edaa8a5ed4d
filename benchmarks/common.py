"""What the benchmarks share: the options every timed run takes (imported by the scripts of this
folder, which run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import argparse


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--profile``, ``--device``, ``--threads``, ``--repeats`` (timed calls, median) and
    ``--warmup`` (untimed calls before them)."""
    parser.add_argument("--profile", default="cpu", choices=["cpu", "full", "smoke"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before them")
