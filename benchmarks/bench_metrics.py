"""Benchmark: FID + KID + precision/recall/density/coverage of 10,000 images, end to end.

The 10,000 FashionMNIST test images stand in for a generated set (sampling is not timed). The
reference statistics and the real-data floor are cached once first (timed separately, as the
one-off cost); then ``evaluate_samples`` runs on warm caches: feature extraction of the 10k
images, FID, KID (100 subsets of 1,000) and PR/DC (k=5, 10k x 10k). Target: < 30 s.

    python benchmarks/bench_metrics.py [--device cpu|cuda] [--threads 2] [--n 10000]
"""

from __future__ import annotations

import argparse
import time

import torch

from ddgan_core.data import load_fashion_mnist
from ddgan_core.metrics.evaluate import evaluate_samples
from ddgan_core.metrics.features import default_device, get_feature_extractor
from ddgan_core.metrics.fid import fid_floor, reference_stats
from ddgan_core.metrics.speed import device_name

TARGET_S = 30.0


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[0]
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = args.device or default_device()

    images, _ = load_fashion_mnist("test")
    images = images[: args.n]
    model = get_feature_extractor(device)

    t = time.perf_counter()
    ref = reference_stats(model=model, device=device)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    fid_floor(min(args.n, ref["test_features"].shape[0]), reference=ref, device=device)
    t_floor = time.perf_counter() - t

    cpu0, load0 = time.process_time(), _loadavg()
    result = evaluate_samples(images, device=device, reference=ref)
    cpu = time.process_time() - cpu0
    timings = result["timings_s"]
    timed = timings["load"] + timings["features"] + timings["fid"] + timings["kid"] + timings[
        "prdc"]
    print(f"device           {device} ({device_name(device)}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"one-off caches   reference stats {t_ref:.1f} s ({ref['path']}), "
          f"floor at n={args.n} {t_floor:.1f} s (0 s when already cached)")
    print(f"samples          {result['n_samples']} test images as the generated set")
    parts = ("imports", "load", "features", "fid", "kid", "prdc")
    print("breakdown (s)    " + ", ".join(f"{key} {timings[key]:.2f}" for key in parts))
    print(f"end to end       {timed:.2f} s for FID+KID+PR/DC (evaluate_samples total "
          f"{timings['total']:.2f} s incl. the first import of clean-fid, the cached floor "
          "lookup and the inception check)")
    print(f"cpu time         {cpu:.2f} s of process CPU over {timings['total']:.2f} s wall; load "
          f"average {load0} before, {_loadavg()} after (> {torch.get_num_threads()} means other "
          "work shared the cores)")
    print(f"target < {TARGET_S:.0f} s   {'MET' if timed < TARGET_S else 'NOT MET'}")
    print(f"values           FID {result['fid']:.3f} (floor {result['fid_floor']:.3f}), "
          f"KID {result['kid']:.5f} +- {result['kid_std']:.5f}, precision "
          f"{result['precision']:.4f}, recall {result['recall']:.4f}, density "
          f"{result['density']:.4f}, coverage {result['coverage']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
