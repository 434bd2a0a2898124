"""No-reference tone figures: what a photographer sees in an output, measured against its input.

PSNR against a fused label rewards whatever the label looks like; a label with grey skies and
charcoal blacks makes a model that paints them (docs/evaluation.md, "Photographic tone"). These
figures need no label: each compares an output with its own input, so they also run on plain
folders of photos (``sice eval FOLDER --protocol photos``). All are on the 8-bit scale (0-255)
so they read like a histogram; luma is Rec. 601 (:func:`sice.imageops.luminance`).

=====================  ======================================================  ==================
name                   definition                                              target (docs)
=====================  ======================================================  ==================
white-point            99.5th percentile of the output's luma                  >= 245 on
                                                                               over-exposed input
black-point            0.5th percentile of the output's luma                   low (a black exists)
clipped-luma           mean output luma where the input is clipped             >= 240: blown-out
                       (every channel >= 250)                                  areas stay white
black-luma             mean output luma where the input is black               <= 12: blacks stay
                       (every channel <= 2)                                    black
colourfulness          Hasler-Suesstrunk colourfulness, output / input         >= 0.95 on
                                                                               over-exposed input
shadow-noise           robust std of the output's high-passed chroma (Cb, Cr)  lower is better
                       in the input's darkest quarter
=====================  ======================================================  ==================

A figure whose region is empty (no clipped or no black pixel in the input, a grey input for the
colourfulness ratio) is NaN: "not applicable", which the report counts apart from failures.

References
----------
.. [1] D. Hasler, S. Suesstrunk, "Measuring colourfulness in natural images", Proc. SPIE 5007,
   Human Vision and Electronic Imaging VIII, 2003.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..imageops import checked_rgb, luminance

__all__ = ["white_point", "black_point", "clipped_luma", "black_luma", "colourfulness",
           "colourfulness_ratio", "shadow_noise", "CLIPPED_LEVEL", "BLACK_LEVEL"]

#: An input pixel is clipped when every channel is at least this (8-bit scale): it holds no
#: detail, so the output has nothing to recover there and should stay white.
CLIPPED_LEVEL = 250
#: An input pixel is black when every channel is at most this (8-bit scale).
BLACK_LEVEL = 2
#: Regions smaller than this fraction of the image make the region figures "not applicable":
#: a handful of hot pixels must not decide an image's score.
MIN_REGION = 1e-3
#: Share of the input's darkest pixels where shadow noise is measured.
SHADOW_SHARE = 0.25
#: Gaussian sigma (pixels) of the low-pass whose residual is taken as noise.
NOISE_SIGMA = 2.0


def _pair(output: np.ndarray, original: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out, inp = checked_rgb(output, "output"), checked_rgb(original, "input")
    if out.shape != inp.shape:
        raise ValueError(f"output and input must have the same shape, got {out.shape} and {inp.shape}")
    return out, inp


def white_point(output: np.ndarray, original: np.ndarray | None = None) -> float:
    """99.5th percentile of the output's luma, 0-255 (``original`` is not used)."""
    return float(np.percentile(luminance(checked_rgb(output, "output")), 99.5)) * 255.0


def black_point(output: np.ndarray, original: np.ndarray | None = None) -> float:
    """0.5th percentile of the output's luma, 0-255 (``original`` is not used)."""
    return float(np.percentile(luminance(checked_rgb(output, "output")), 0.5)) * 255.0


def _region_mean_luma(output: np.ndarray, mask: np.ndarray) -> float:
    if mask.mean() < MIN_REGION:
        return math.nan
    return float(luminance(output)[mask].mean()) * 255.0


def clipped_luma(output: np.ndarray, original: np.ndarray) -> float:
    """Mean output luma (0-255) where every input channel is >= :data:`CLIPPED_LEVEL`; NaN when
    that region is under :data:`MIN_REGION` of the image."""
    out, inp = _pair(output, original)
    return _region_mean_luma(out, np.round(inp * 255).min(axis=2) >= CLIPPED_LEVEL)


def black_luma(output: np.ndarray, original: np.ndarray) -> float:
    """Mean output luma (0-255) where every input channel is <= :data:`BLACK_LEVEL`; NaN when
    that region is under :data:`MIN_REGION` of the image."""
    out, inp = _pair(output, original)
    return _region_mean_luma(out, np.round(inp * 255).max(axis=2) <= BLACK_LEVEL)


def colourfulness(image: np.ndarray) -> float:
    """Hasler-Suesstrunk colourfulness [1]_ on the 0-255 scale.

    ``rg = R - G``, ``yb = (R + G) / 2 - B``; ``M = sqrt(std_rg^2 + std_yb^2) +
    0.3 sqrt(mean_rg^2 + mean_yb^2)``. 0 for a grey image; about 33 is "moderately colourful"
    and 59 "quite colourful" in the paper's scale.
    """
    rgb = checked_rgb(image, "image").astype(np.float64) * 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def colourfulness_ratio(output: np.ndarray, original: np.ndarray) -> float:
    """``colourfulness(output) / colourfulness(input)``; NaN for a (nearly) grey input (< 1)."""
    out, inp = _pair(output, original)
    base = colourfulness(inp)
    return math.nan if base < 1.0 else colourfulness(out) / base


def shadow_noise(output: np.ndarray, original: np.ndarray) -> float:
    """Colour noise the output shows in the input's shadows, 0-255.

    The output's chroma (BT.601 Cb and Cr) minus its Gaussian low-pass (sigma
    :data:`NOISE_SIGMA` px) is the fine colour texture, which in lifted shadows is noise and JPEG
    block edges. Over the darkest :data:`SHADOW_SHARE` of the input's pixels, the robust standard
    deviation of each (1.4826 x the median absolute deviation) is taken, and the figure is their
    root sum of squares. Brightening a dark photo multiplies it by the chroma gain; lower is
    better at equal brightness.
    """
    out, inp = _pair(output, original)
    luma_in = luminance(inp)
    mask = luma_in <= np.quantile(luma_in, SHADOW_SHARE)
    ycc = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)  # float32: Cr, Cb centred on 0.5
    spread = []
    for ch in (1, 2):
        c = ycc[..., ch]
        high = (c - cv2.GaussianBlur(c, (0, 0), NOISE_SIGMA, borderType=cv2.BORDER_REFLECT))[mask]
        high = high.astype(np.float64) * 255.0
        spread.append(1.4826 * np.median(np.abs(high - np.median(high))))
    return float(math.hypot(*spread))
