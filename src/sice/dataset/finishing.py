"""Photographic finishing of fused references: a black point, a white point, the same mid-tones.

Exposure fusion (Mertens, GFF, SPD-MEF...) and the MEF-SSIM choice among its candidates keep
every region's detail by compressing the tonal range: on SICE scenes the chosen references hold
almost no pixel below 5 or above 250 (of 255), clipped skies sit at 190-200, and a network
trained on them learns to paint highlights grey and blacks charcoal. The first step a
photographer takes on such an image is "levels": set the black and the white point. That is
what :func:`photo_finish` does, with two guards so that it never invents a look:

1. **Levels.** The 0.5th percentile of the luma becomes black and the 99.5th white (at most
   ``max_stretch`` times the original contrast, so a scene without highlights is not forced to
   have some).
2. **Same mid-tones.** A gamma puts the median luma back where the fusion had it: the overall
   exposure the fusion chose is kept; only the ends are opened (a classic contrast S-curve's
   effect, with a monotone curve pinned at 0 and 1).
3. **What no frame held stays white.** Pixels clipped (every channel >= 250) even in the
   sequence's darkest frame are light sources or sky that the whole bracket could not hold;
   the fusion paints them light grey, the finished reference paints them white.

The curve is applied to R, G and B alike (a levels/curves adjustment on the RGB composite, as in
any photo editor), so hues are kept and colours gain the saturation that the fusion's flat curve
had taken away.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..imageops import luminance

__all__ = ["photo_finish", "finish_curve", "FINISHES"]

#: Label finishes that ``sice build-dataset --finish`` accepts: "none" keeps the fused candidate
#: as it is (the behaviour before finishing existed), "photo" applies :func:`photo_finish`.
FINISHES = ("none", "photo")
#: Input levels (8-bit scale) that count as clipped in the darkest frame.
CLIPPED_LEVEL = 250


def finish_curve(luma: np.ndarray, *, black_percentile: float = 0.5, white_percentile: float = 99.5,
                 max_stretch: float = 1.6, gamma_range: tuple[float, float] = (0.6, 1.6)
                 ) -> tuple[float, float, float]:
    """The ``(black, white, gamma)`` of :func:`photo_finish` for an image with ``luma``.

    ``out = clip((x - black) / (white - black), 0, 1) ** gamma``. ``black`` and ``white`` are the
    luma percentiles, except that the contrast gain ``1 / (white - black)`` is held to
    ``max_stretch`` (by lowering the stretch of the white end first, then of the black end);
    ``gamma`` maps the stretched median back onto the original median, within ``gamma_range``.
    """
    luma = np.asarray(luma, dtype=np.float32)
    black = float(np.percentile(luma, black_percentile))
    white = float(np.percentile(luma, white_percentile))
    if white - black < 1.0 / max_stretch:
        # Too flat to open up fully: keep the black point if there is room, then the white one.
        white = min(1.0, black + 1.0 / max_stretch)
        black = white - 1.0 / max_stretch
    black, white = max(0.0, black), min(1.0, max(white, black + 1e-3))
    median = float(np.median(luma))
    stretched = (median - black) / (white - black)
    gamma = 1.0
    if 0.0 < median < 1.0 and 0.0 < stretched < 1.0:
        gamma = float(np.clip(math.log(median) / math.log(stretched), *gamma_range))
    return black, white, gamma


def photo_finish(fused: np.ndarray, darkest: np.ndarray | None = None, **curve_options) -> np.ndarray:
    """Finish a fused reference like a photograph: black and white points, same mid-tones.

    Parameters
    ----------
    fused : (H, W, 3) float ndarray in [0, 1]
        A fused candidate (sRGB-encoded RGB).
    darkest : (H, W, 3) float ndarray in [0, 1], optional
        The sequence's darkest frame: where it is clipped, the output is white.
    **curve_options
        Passed to :func:`finish_curve`.

    Returns
    -------
    (H, W, 3) float32 ndarray in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> flat = np.linspace(0.2, 0.8, 300, dtype=np.float32).reshape(10, 10, 3)
    >>> out = photo_finish(flat)
    >>> float(out.min()) < 0.01, float(out.max()) > 0.99
    (True, True)
    """
    fused = np.asarray(fused)
    if fused.ndim != 3 or fused.shape[2] != 3:
        raise ValueError(f"fused must be (H, W, 3), got shape {fused.shape}")
    fused = np.clip(fused.astype(np.float32, copy=False), 0.0, 1.0)
    black, white, gamma = finish_curve(luminance(fused), **curve_options)
    # one 4096-entry lookup table instead of a power per pixel and channel
    xs = np.linspace(0.0, 1.0, 4096, dtype=np.float32)
    table = np.clip((xs - black) / (white - black), 0.0, 1.0) ** gamma
    out = np.interp(fused, xs, table).astype(np.float32)
    if darkest is not None:
        darkest = np.asarray(darkest, dtype=np.float32)
        if darkest.shape != fused.shape:
            raise ValueError(f"darkest must have fused's shape {fused.shape}, got {darkest.shape}")
        lost = (np.round(darkest * 255).min(axis=2) >= CLIPPED_LEVEL).astype(np.float32)
        if lost.any():
            # white inside, a soft edge outside: the fusion blends a few pixels around a light
            lost = np.maximum(lost, cv2.GaussianBlur(lost, (0, 0), 1.5))[..., None]
            out = out * (1.0 - lost) + lost
    return out
