"""Time every reference generator of sice.fusion on real 512x512 SICE sequences.

Prints, per generator, the median seconds per sequence and per megapixel of frames fused
(standalone: the shared HDR radiance cache is cleared before each call, so every HDR generator
pays its own merge), then the time of the whole set run in table order the way the dataset
builder runs it (cache warm after the first HDR generator).

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_generators.py [--sequences 001,003,...] [--count 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sice import exposure, fusion, io
from sice.fusion._common import RADIANCE_CACHE

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sice512"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder of sequences (default ../shared/data/sice512)")
    ap.add_argument("--sequences", default="", help="comma-separated sequence names (default: the first --count)")
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--generators", default="", help="comma-separated names (default: all usable)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"{args.data}: no such folder", file=sys.stderr)
        return 2
    names = args.sequences.split(",") if args.sequences else sorted(p.name for p in args.data.iterdir() if p.is_dir())[: args.count]
    usable, skipped = fusion.available_generators(args.generators.split(",") if args.generators else None)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    per_seq: dict[str, list[float]] = {g: [] for g in usable}
    per_mp: dict[str, list[float]] = {g: [] for g in usable}
    totals = []
    for seq in names:
        frames = [io.read_rgb(p) for p in io.list_images(args.data / seq)]
        times = 2.0 ** exposure.estimate_exposures(frames).ev
        mp = sum(f.shape[0] * f.shape[1] for f in frames) / 1e6
        for g in usable:
            RADIANCE_CACHE.clear()
            t0 = time.perf_counter()
            fusion.run_generator(g, frames, times)
            dt = time.perf_counter() - t0
            per_seq[g].append(dt)
            per_mp[g].append(dt / mp)
        RADIANCE_CACHE.clear()
        t0 = time.perf_counter()
        for g in usable:
            fusion.run_generator(g, frames, times)
        totals.append(time.perf_counter() - t0)
        print(f"{seq}: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, all generators {totals[-1]:.2f} s",
              flush=True)
    print(f"\n| generator | family | s / sequence (median) | s / MP of frames (median) |\n| --- | --- | --- | --- |")
    for g in usable:
        print(f"| {g} | {fusion.GENERATORS[g].family} | {statistics.median(per_seq[g]):.3f} | "
              f"{statistics.median(per_mp[g]):.3f} |")
    print(f"\nall {len(usable)} generators, builder order (shared merge cached): median {statistics.median(totals):.2f} s "
          f"per sequence, mean {np.mean(totals):.2f} s over {len(totals)} sequences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
