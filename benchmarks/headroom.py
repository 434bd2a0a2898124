"""How much PSNR a *global* tone curve could reach on a protocol, if it knew the label.

For every input of the ``levels`` protocol (frames -2, -1, +1, +2 of each scene around its
middle frame, against the scene's label) this prints, per level, the mean PSNR of:

* ``identity`` and ``gamma`` (sice's automatic gamma baseline, mean luma -> 0.5);
* ``gamma@label``: the same gamma rule aimed at the *label's* mean luma (the best a global
  brightness choice can do when it knows how bright the reference is);
* ``gain@label``: the least-squares per-channel gain to the label;
* ``lut@label``: the least-squares per-channel 256-entry look-up table to the label (the mean
  label value of the pixels sharing an input value): the ceiling of *any* global per-channel
  curve, learned or not.

Models with local (spatially varying) tone changes can beat ``lut@label``; a model that must guess
the reference's brightness from the input alone usually stays well below it. The numbers bound
what a target such as "+3 dB over the best baseline" asks of a model.

With ``--model M`` (``default``, a registry name or a checkpoint) two more columns:

* ``model``: M's output, as ``sice eval`` scores it (rounded to 8 bit);
* ``model@mean``: that output scaled in linear light so its mean luma is the label's: what M
  would score if it only had to be told how bright the reference is. If this stays far below
  a target, the gap is not the global exposure M picks but tones and detail it cannot know.

Usage::

    .venv/bin/python benchmarks/headroom.py data-built/sice512-fast --split val --split-seed 0 --model default
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from sice.dataset.layout import read_sice_layout, split_scenes
from sice.evaluation.baselines import auto_gamma
from sice.evaluation.metrics import psnr
from sice.evaluation.protocols import items_for
from sice.imageops import linear_to_srgb, srgb_to_linear
from sice.imageops import luminance
from sice.io import read_rgb


def best_gain(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-channel ``g`` minimising ``||g x - y||^2`` (closed form), applied and clipped."""
    g = (x * y).sum((0, 1)) / np.maximum((x * x).sum((0, 1)), 1e-12)
    return np.clip(x * g, 0, 1)


def best_lut(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-channel 8-bit LUT minimising the squared error: each entry is the mean label value
    of the pixels with that input value (the conditional mean, the L2-optimal pointwise map)."""
    out = np.empty_like(x)
    for c in range(3):
        q = np.clip(np.rint(x[..., c] * 255), 0, 255).astype(np.intp)
        sums = np.bincount(q.ravel(), y[..., c].ravel(), 256)
        counts = np.bincount(q.ravel(), None, 256)
        out[..., c] = (sums / np.maximum(counts, 1))[q]
    return out


def at_mean_luma(x: np.ndarray, target: float) -> np.ndarray:
    """``x`` scaled in linear light (one factor) so its mean Rec. 601 luma is ``target``; the
    factor is found by bisection because clipping at 1 makes the mean non-linear in it."""
    lin = srgb_to_linear(x)
    lo, hi = 0.0, 64.0
    for _ in range(40):
        k = 0.5 * (lo + hi)
        lo, hi = (k, hi) if luminance(linear_to_srgb(lin * k)).mean() < target else (lo, k)
    return linear_to_srgb(lin * 0.5 * (lo + hi))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--split", default="val", choices=["train", "val", "test", "all"])
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--model", help="also score this model, and it at the label's mean luma")
    args = ap.parse_args(argv)
    enhancer = None
    if args.model:
        from sice.enhancement import Enhancer

        enhancer = Enhancer(args.model)

    scenes = read_sice_layout(args.dataset)
    if args.split != "all":
        scenes = split_scenes(scenes, seed=args.split_seed)[args.split]
    rows: dict[int, list[dict[str, float]]] = {}
    for item in items_for("levels", scenes):
        x, y = read_rgb(item.frame), read_rgb(item.reference)
        if y.shape != x.shape:
            y = cv2.resize(y, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_AREA)
        label_luma = float(luminance(y).mean())
        row = {
            "identity": psnr(x, y),
            "gamma": psnr(auto_gamma(x), y),
            "gamma@label": psnr(auto_gamma(x, target=label_luma), y),
            "gain@label": psnr(best_gain(x, y), y),
            "lut@label": psnr(best_lut(x, y), y),
        }
        if enhancer is not None:
            out = np.round(enhancer.enhance_rgb(x) * 255) / 255
            row["model"] = psnr(out, y)
            row["model@mean"] = psnr(np.round(at_mean_luma(out, label_luma) * 255) / 255, y)
        rows.setdefault(item.level, []).append(row)
    names = list(next(iter(rows.values()))[0])
    print(f"mean PSNR (dB) on {args.dataset}, split {args.split} (seed {args.split_seed}), protocol levels")
    print(f"{'level':>5} {'n':>3} " + " ".join(f"{n:>12}" for n in names))
    for level in sorted(rows):
        r = rows[level]
        print(f"{level:>5} {len(r):>3} " + " ".join(f"{np.mean([v[n] for v in r]):12.2f}" for n in names))


if __name__ == "__main__":
    main()
