"""Time registered models through the enhancement core: ms per megapixel and peak memory.

Each (model, size) runs in a fresh child process, so the peak resident memory reported is that
model's alone (torch import included, ~0.3 GB). The image is synthetic (speed does not depend on
content or on the weights) and goes through :class:`sice.enhancement.Enhancer` with the torch
backend, i.e. the path ``sice enhance --model NAME`` takes: tiles for fully convolutional
models (CAN, SICE), one whole-image pass for HDRNet, a gain field at a 1024-px working
resolution for gaingrid. Reported: the median of ``--runs`` timed runs after one warm-up.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_models.py --models gaingrid,hdrnet,can32 --mp 1,4 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_CHILD = r"""
import json, sys, time, resource
import numpy as np, torch
name, h, w, runs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if threads:
    torch.set_num_threads(threads)
from sice.enhancement import Enhancer
from sice.models import create_model
rgb = np.random.default_rng(0).random((h, w, 3), dtype=np.float32) * 0.4
enh = Enhancer(create_model(name), backend="torch")
enh.enhance_rgb(rgb)
times = []
for _ in range(runs):
    t = time.perf_counter()
    enh.enhance_rgb(rgb)
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(name: str, megapixels: float, *, runs: int, threads: int) -> dict:
    """Run one model at one size (3:2 aspect) in a child process; return its timings and RSS."""
    w = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    h = int(round(megapixels * 1e6 / w))
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-c", _CHILD, name, str(h), str(w), str(runs), str(threads)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"model": name, "size": f"{w}x{h}", "error": proc.stderr.strip().splitlines()[-1:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    t = statistics.median(res["times"])
    return {"model": name, "size": f"{w}x{h}", "mp": h * w / 1e6, "s": t,
            "ms_per_mp": 1e3 * t / (h * w / 1e6), "rss_mib": res["rss_mib"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gaingrid,hdrnet,can32", help="comma-separated registry names")
    ap.add_argument("--mp", default="1,4", help="comma-separated image sizes in megapixels")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per child (0: torch default)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"{'model':<20} {'size':>11} {'s':>8} {'ms/MP':>9} {'peak RSS MiB':>13}")
    for name in args.models.split(","):
        for mp in (float(s) for s in args.mp.split(",")):
            r = measure(name, mp, runs=args.runs, threads=args.threads)
            if "error" in r:
                print(f"{name:<20} {r['size']:>11}  failed: {r['error']}")
                continue
            print(f"{name:<20} {r['size']:>11} {r['s']:8.2f} {r['ms_per_mp']:9.0f} {r['rss_mib']:13.0f}", flush=True)
    print(f"(threads={args.threads}, median of {args.runs}, load average "
          f"{os.getloadavg()[0]:.1f}, total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
