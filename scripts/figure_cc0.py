"""Before/after figure on CC0 photographs: rows of badly exposed inputs, one column per method.

The inputs are rendered from the CC0 HDR panoramas in ``../shared/data/hdri-cc0`` (Greg Zaal,
Poly Haven, CC0): a crop of the panorama's horizon band, scaled so its median is middle grey,
exposed at the given EVs through the sRGB curve and rounded to 8 bit. Because the source is
CC0, the figure may be committed (figures from the SICE images may not: they are research-use
only). The 0 EV rendering (sRGB, clipped) is shown as a guide, not as ground truth.

Usage::

    .venv/bin/python scripts/figure_cc0.py -o docs/cc0-before-after.jpg \\
        -m gamma,default --scenes courtyard,forest,interior --evs -2.5,2
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from sice.evaluation.report import caption, join_grid, tile
from sice.evaluation.runner import resolve_method
from sice.imageops import linear_to_srgb
from sice.io import write_image

HEIGHT = 200  # rows of each tile in the figure


def read_exr(path: Path) -> np.ndarray:
    """(H, W, 3) float32 linear RGB from an OpenEXR file (the OpenEXR package, as the tests do)."""
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        return np.asarray(f.channels()["RGB"].pixels, np.float32)


def horizon_crop(radiance: np.ndarray, width: int = 768) -> np.ndarray:
    """A 3:2 window on the horizon of an equirectangular panorama (its least distorted band),
    reduced to ``width`` columns."""
    h, w = radiance.shape[:2]
    cw = w // 4
    ch = cw * 2 // 3
    y0, x0 = max(0, h // 2 - ch // 2 - h // 20), w // 2 - cw // 2
    crop = radiance[y0:y0 + ch, x0:x0 + cw]
    return cv2.resize(crop, (width, width * 2 // 3), interpolation=cv2.INTER_AREA)


def render(radiance: np.ndarray, ev: float) -> np.ndarray:
    """8-bit-rounded sRGB float image of ``radiance`` exposed at ``ev`` (median = middle grey at 0)."""
    scaled = radiance * (0.18 / max(float(np.median(radiance.mean(-1))), 1e-6)) * 2.0 ** ev
    return np.round(linear_to_srgb(np.clip(scaled, 0, 1)) * 255).astype(np.float32) / 255


def to_tile(rgb: np.ndarray) -> np.ndarray:
    return tile(rgb, HEIGHT)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, type=Path)
    ap.add_argument("-m", "--methods", default="gamma,default",
                    help="comma-separated baselines, model names or checkpoint paths (as sice eval)")
    ap.add_argument("--labels", default="", help="comma-separated column captions for the methods")
    ap.add_argument("--scenes", default="courtyard,forest,interior")
    ap.add_argument("--evs", default="-2.5,2", help="comma-separated exposures of the rendered inputs")
    ap.add_argument("--hdri", type=Path,
                    default=Path(os.environ.get("SICE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
                    / "hdri-cc0")
    args = ap.parse_args(argv)

    methods = args.methods.split(",")
    labels = args.labels.split(",") if args.labels else methods
    if len(labels) != len(methods):
        ap.error("--labels needs one caption per method")
    fns = [resolve_method(m) for m in methods]
    rows = []
    for scene in args.scenes.split(","):
        radiance = horizon_crop(read_exr(args.hdri / f"{scene}.exr"))
        for ev in (float(e) for e in args.evs.split(",")):
            x = render(radiance, ev)
            tiles = [caption(to_tile(x), f"{scene} {ev:+g} EV (input)")]
            tiles += [caption(to_tile(fn(x)), label) for fn, label in zip(fns, labels)]
            tiles.append(caption(to_tile(render(radiance, 0.0)), "0 EV rendering (guide)"))
            rows.append(tiles)
    figure = join_grid(rows)
    write_image(args.output, figure, quality=88)
    print(f"wrote {args.output} ({figure.shape[1]}x{figure.shape[0]})")


if __name__ == "__main__":
    main()
