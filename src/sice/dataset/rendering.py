"""Badly exposed test photos rendered from HDR radiance maps, reproducibly.

Real photos of both kinds without labels are what the no-reference tone figures
(:mod:`sice.evaluation.tone`) need; the CC0 panoramas of ``../shared/data/hdri-cc0`` hold true
scene radiance, so one command (``sice render``) turns them into an over- and under-exposed test
set that anyone can rebuild bit for bit and that, being CC0, may appear in committed figures.

A rendering is what a simple camera would record: a view of the panorama's horizon band,
exposed so that the view's median luminance is middle grey (0.18) at 0 EV and scaled by
``2**ev``, Poisson-Gaussian sensor noise in linear light (seeded by the file name), clipped at
the sensor's white, encoded with the sRGB curve, 8 bit, and saved as a 4:2:0 JPEG at quality
90: dark renderings carry the chroma noise and block edges a brightened phone photo shows, and
bright ones the clipped, featureless highlights of a blown-out sky.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..imageops import linear_to_srgb

__all__ = ["horizon_views", "expose", "render_set", "render_brackets", "UNDER_EVS", "OVER_EVS", "BRACKET_EVS"]

#: Exposures of the rendered set (EV relative to the median-at-middle-grey exposure).
UNDER_EVS = (-4.0, -2.5)
OVER_EVS = (1.5, 2.5)
#: Exposures of a rendered multi-exposure sequence (``sice render --brackets``).
BRACKET_EVS = (-3.0, -1.5, 0.0, 1.5, 3.0)
#: Sensor noise in linear light: variance = SHOT * signal + READ**2 (signal 1 = sensor white).
#: SHOT = 1/4000 is a full well of about 4000 electrons, READ a few electrons: a phone-sized
#: pixel at a moderate ISO.
SHOT, READ = 1 / 4000, 8e-4
#: Rendered views are this wide (3:2): the panoramas are 1024 px around, so a third of them is
#: about this size and is not invented detail.
VIEW_WIDTH = 512


def horizon_views(radiance: np.ndarray, views: int = 3, *, width: int = VIEW_WIDTH) -> list[np.ndarray]:
    """``views`` 3:2 windows on the horizon band of an equirectangular panorama (its least
    distorted part), at evenly spaced headings, each resized (INTER_AREA / linear) to ``width``.

    Parameters
    ----------
    radiance : (H, W, 3) float32
        Linear RGB panorama, 2:1.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    h, w = radiance.shape[:2]
    cw = w // 3
    ch = cw * 2 // 3
    y0 = int(np.clip(h // 2 - ch // 2 - h // 20, 0, h - ch))
    out = []
    for k in range(views):
        cx = int(w * (2 * k + 1) / (2 * views))
        cols = np.arange(cx - cw // 2, cx - cw // 2 + cw) % w  # wraps around the seam
        crop = np.ascontiguousarray(radiance[y0:y0 + ch][:, cols])
        interp = cv2.INTER_AREA if cw > width else cv2.INTER_LINEAR
        out.append(cv2.resize(crop, (width, width * 2 // 3), interpolation=interp))
    return out


def expose(radiance: np.ndarray, ev: float, *, noise: bool = True, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 sRGB rendering of linear ``radiance`` at ``ev`` (see the module notes).

    The median of the mean of R, G and B lands on 0.18 at 0 EV; noise is added in linear light
    before clipping, from ``np.random.default_rng(seed)``.
    """
    scale = 0.18 / max(float(np.median(radiance.mean(axis=2))), 1e-6) * 2.0 ** ev
    signal = radiance.astype(np.float32) * np.float32(scale)
    if noise:
        rng = np.random.default_rng(seed)
        sigma = np.sqrt(SHOT * np.clip(signal, 0, 1) + READ ** 2).astype(np.float32)
        signal = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.round(linear_to_srgb(np.clip(signal, 0, 1)) * 255).astype(np.uint8)


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def render_set(sources: Sequence[os.PathLike | str], out_dir: os.PathLike | str, *,
               under: Sequence[float] = UNDER_EVS, over: Sequence[float] = OVER_EVS, views: int = 3,
               noise: bool = True, quality: int = 90) -> list[Path]:
    """Render every panorama in ``sources`` at every EV into ``out_dir/under`` and ``out_dir/over``.

    Files are named ``<panorama>-<view>_ev<+-EV>.jpg`` and written atomically; the same inputs
    give the same bytes (noise is seeded by the file name).

    Returns
    -------
    list of Path
        The files written, in order.

    Raises
    ------
    ImageReadError
        A panorama cannot be read (:func:`sice.io.read_radiance`).
    ValueError
        An EV in ``under`` is not negative, or one in ``over`` not positive.
    """
    from ..io import read_radiance, write_image

    if any(ev >= 0 for ev in under) or any(ev <= 0 for ev in over):
        raise ValueError(f"under EVs must be < 0 and over EVs > 0, got {list(under)} and {list(over)}")
    out_dir = Path(out_dir)
    written = []
    for src in sources:
        src = Path(src)
        for k, view in enumerate(horizon_views(read_radiance(src), views), start=1):
            for group, evs in (("under", under), ("over", over)):
                for ev in evs:
                    name = f"{src.stem}-{k}_ev{ev:+g}.jpg"
                    pixels = expose(view, ev, noise=noise, seed=_seed(name))
                    dst = out_dir / group / name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    written.append(write_image(dst, pixels, quality=quality))
    return written


def render_brackets(sources: Sequence[os.PathLike | str], out_dir: os.PathLike | str, *,
                    evs: Sequence[float] = BRACKET_EVS, views: int = 3, noise: bool = True,
                    quality: int = 90) -> list[Path]:
    """Render every view of every panorama as a multi-exposure sequence, in the layout
    ``sice build-dataset`` reads: ``out_dir/<panorama>-<view>/<k>.jpg``, k = 1..n from the
    darkest EV to the brightest. A dataset built from them has CC0 labels that may be shown
    in committed figures (docs/dataset.md).

    Returns
    -------
    list of Path
        The scene folders written.
    """
    from ..io import read_radiance, write_image

    evs = sorted(float(e) for e in evs)
    if len(evs) < 2:
        raise ValueError(f"a sequence needs at least 2 exposures, got {evs}")
    out_dir = Path(out_dir)
    scenes = []
    for src in sources:
        src = Path(src)
        for k, view in enumerate(horizon_views(read_radiance(src), views), start=1):
            folder = out_dir / f"{src.stem}-{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, ev in enumerate(evs, start=1):
                pixels = expose(view, ev, noise=noise, seed=_seed(f"{folder.name}_ev{ev:+g}"))
                write_image(folder / f"{i}.jpg", pixels, quality=quality)
            scenes.append(folder)
    return scenes
