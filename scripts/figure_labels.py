"""Before/after figure of label finishing: middle frame | fused label (MEF-SSIM's pick) | finished.

Reads a dataset built by ``sice build-dataset`` (its ``candidates/`` keep the unfinished fusions,
its ``Label/`` the finished labels). Built from the CC0 panoramas, the figure may be committed::

    sice render ../shared/data/hdri-cc0 --brackets=-3,-1.5,0,1.5,3 -o data-built/cc0-seqs
    sice build-dataset data-built/cc0-seqs -o data-built/cc0-ds --generators \\
        mertens,mertens-exposedness,gff,debevec-reinhard,debevec-drago,debevec-mantiuk,debevec-durand
    python scripts/figure_labels.py data-built/cc0-ds -o docs/label-finish.jpg \\
        --scenes courtyard-2,interior-3,sunset-2,forest-1
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sice.evaluation.report import caption, join_grid, tile
from sice.imageops import luminance
from sice.io import read_rgb, write_image


def _levels(rgb: np.ndarray) -> str:
    luma = luminance(rgb) * 255
    return f"black {np.percentile(luma, 0.5):.0f} white {np.percentile(luma, 99.5):.0f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("-o", "--output", required=True, type=Path)
    ap.add_argument("--scenes", required=True, help="comma-separated scene names")
    ap.add_argument("--height", type=int, default=220)
    args = ap.parse_args(argv)

    rows = []
    for scene in args.scenes.split(","):
        entry = json.loads((args.dataset / ".manifest" / f"{scene}.json").read_text())
        frames = entry["frames"]
        middle = read_rgb(args.dataset / frames[(len(frames) - 1) // 2]["file"])
        generator = entry["label"]["generator"]
        fused = read_rgb(args.dataset / "candidates" / scene / f"{generator}.png")
        finished = read_rgb(args.dataset / "Label" / f"{scene}.png")
        h = args.height
        rows.append([caption(tile(middle, h), f"{scene}: middle frame"),
                     caption(tile(fused, h), f"fused ({generator}) {_levels(fused)}"),
                     caption(tile(finished, h), f"finished {_levels(finished)}")])
    figure = join_grid(rows)
    write_image(args.output, figure, quality=88)
    print(f"wrote {args.output} ({figure.shape[1]}x{figure.shape[0]})")


if __name__ == "__main__":
    main()
