"""Time every reference generator of sice.fusion on real 512x512 SICE sequences.

Prints, per generator, the median wall-clock and CPU seconds (this process plus the external
tools it starts) per sequence and per megapixel of frames fused (standalone: the shared radiance
caches are cleared before each call, so every HDR generator pays its own merge), then the time
of the whole set run in table order the way the dataset builder runs it (caches warm after the
first HDR generator of each kind), and the MEF-SSIM cost (stack part once, then per candidate).
CPU seconds are the figure to trust on a shared machine: wall time grows with other users' load.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_generators.py [--sequences 001,003,...] [--count 5]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sice import exposure, fusion, io, scoring
from sice.fusion._common import RADIANCE_CACHE

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sice512"


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu() - self.cpu


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
    rows: dict[str, list[tuple[float, float, float]]] = {g: [] for g in usable}   # (wall, cpu, MP)
    totals, mef = [], []
    for seq in names:
        frames = [io.read_rgb(p) for p in io.list_images(args.data / seq)]
        times = 2.0 ** exposure.estimate_exposures(frames).ev
        mp = sum(f.shape[0] * f.shape[1] for f in frames) / 1e6
        outputs = {}
        for g in usable:
            RADIANCE_CACHE.clear()
            with _Timer() as t:
                outputs[g] = fusion.run_generator(g, frames, times)
            rows[g].append((t.wall, t.cpu, mp))
        RADIANCE_CACHE.clear()
        with _Timer() as total:
            for g in usable:
                fusion.run_generator(g, frames, times)
        totals.append((total.wall, total.cpu))
        with _Timer() as ref_t:
            ref = scoring.MefSsimReference(frames)
        with _Timer() as score_t:
            for out in outputs.values():
                ref.score(out)
        mef.append((ref_t.cpu, score_t.cpu / max(1, len(outputs))))
        print(f"{seq}: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, all generators "
              f"{total.wall:.2f} s wall / {total.cpu:.2f} s CPU; MEF-SSIM stack {ref_t.cpu:.2f} s + "
              f"{mef[-1][1]:.3f} s per candidate (CPU)", flush=True)
    med = statistics.median
    print("\n| generator | family | wall s / sequence | CPU s / sequence | CPU s / MP of frames |")
    print("| --- | --- | --- | --- | --- |")
    for g in usable:
        wall, cpu, mp = zip(*rows[g])
        print(f"| {g} | {fusion.GENERATORS[g].family} | {med(wall):.3f} | {med(cpu):.3f} | "
              f"{med([c / m for c, m in zip(cpu, mp)]):.3f} |")
    wall, cpu = zip(*totals)
    print(f"\nall {len(usable)} generators in builder order (shared merges cached), median per sequence: "
          f"{med(wall):.2f} s wall, {med(cpu):.2f} s CPU; MEF-SSIM median {med([m[0] for m in mef]):.2f} s "
          f"per stack + {med([m[1] for m in mef]):.3f} s per candidate (CPU); {len(names)} sequences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
