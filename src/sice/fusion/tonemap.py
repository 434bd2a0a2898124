"""Tone-mapping operators that turn a relative radiance map into a displayable image.

OpenCV's photo module provides Reinhard and Devlin 2005, Drago et al. 2003 and Mantiuk et al.
2006. Durand and Dorsey 2002 is written here by hand: OpenCV's ``xphoto.TonemapDurand`` is
compiled out of the published wheels (it sits behind OPENCV_ENABLE_NONFREE).

All operators end with the display gamma 2.2 (OpenCV's operators default to gamma 1, i.e.
linear output, which looks far too dark). The OpenCV operators normalise by the maximum, so one
specular highlight leaves the rest of the picture dark; their output then goes through
:func:`auto_levels`, the black/white-point stretch that HDR tools apply after tone mapping
(luminance-hdr's ``--autolevels``).

References
----------
.. [1] E. Reinhard, K. Devlin, "Dynamic range reduction inspired by photoreceptor physiology",
   IEEE Trans. Vis. Comput. Graph. 11(1):13-24, 2005. doi:10.1109/TVCG.2005.9
.. [2] F. Drago, K. Myszkowski, T. Annen, N. Chiba, "Adaptive logarithmic mapping for displaying
   high contrast scenes", Computer Graphics Forum 22(3):419-426, 2003.
   doi:10.1111/1467-8659.00689
.. [3] R. Mantiuk, K. Myszkowski, H.-P. Seidel, "A perceptual framework for contrast processing
   of high dynamic range images", ACM Trans. Appl. Percept. 3(3):286-308, 2006.
   doi:10.1145/1166087.1166095
.. [4] F. Durand, J. Dorsey, "Fast bilateral filtering for the display of high-dynamic-range
   images", ACM Trans. Graph. 21(3):257-266 (SIGGRAPH 2002). doi:10.1145/566654.566574
"""
from __future__ import annotations

import cv2
import numpy as np

from ..imageops import luminance
from ._common import LUMINANCE, opencv_errors_only

GAMMA = 2.2


#: Percentiles of the luma mapped to 0 and 1 by :func:`auto_levels`.
LEVELS_BLACK, LEVELS_WHITE = 0.1, 99.5


def auto_levels(image: np.ndarray, black: float = LEVELS_BLACK, white: float = LEVELS_WHITE) -> np.ndarray:
    """Stretch ``image`` linearly so that the given luma percentiles map to 0 and 1.

    Parameters
    ----------
    image : (H, W, 3) float32 ndarray
        Display-referred RGB.
    black, white : float
        Percentiles (0-100) of the Rec. 601 luma that become black and white.

    Returns
    -------
    (H, W, 3) float32 ndarray, clipped to [0, 1]. An image whose two percentiles are (almost)
    equal is only clipped.
    """
    img = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    lum = luminance(img)
    lo, hi = np.percentile(lum, [black, white])
    if hi - lo > 1e-3:
        img = (img - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(img, 0.0, 1.0)


def radiance_and_luminance(radiance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """The operators' common start: radiance made non-negative float32, and its luminance.

    Parameters
    ----------
    radiance : (H, W, 3) ndarray
        Linear RGB radiance, any scale.

    Returns
    -------
    rad : (H, W, 3) float32 ndarray >= 0
    lum : (H, W) float32 ndarray
        Rec. 709 luminance, floored at ``floor`` so that logs and ratios stay finite in black pixels.
    floor : float32
        1e-6 of the maximum luminance (1e-30 for a black image).
    """
    rad = np.maximum(np.asarray(radiance, dtype=np.float32), 0.0)
    lum = rad @ LUMINANCE
    floor = np.float32(max(float(lum.max()), 1e-30) * 1e-6)
    return rad, np.maximum(lum, floor), floor


def display_encode(linear_rgb: np.ndarray) -> np.ndarray:
    """Display gamma 2.2, then :func:`auto_levels`: the last step of the tone mappers written here.

    Values above 1 (saturated colours, the detail of local operators) are not clipped first: the
    white point of :func:`auto_levels` decides what clips.
    """
    return auto_levels(np.power(np.maximum(linear_rgb, 0.0), 1.0 / GAMMA))


def _opencv(tonemapper, radiance: np.ndarray) -> np.ndarray:
    bgr = np.ascontiguousarray(radiance[..., ::-1], dtype=np.float32)
    with opencv_errors_only():
        mapped = tonemapper.process(bgr)
    return auto_levels(np.ascontiguousarray(mapped[..., ::-1]))


def reinhard(radiance: np.ndarray) -> np.ndarray:
    """Reinhard and Devlin 2005 photoreceptor operator [1]_ (OpenCV ``TonemapReinhard``, defaults).

    Parameters
    ----------
    radiance : (H, W, 3) float32 ndarray >= 0
        Linear RGB radiance, any scale.

    Returns
    -------
    (H, W, 3) float32 ndarray, display-referred, about [0, 1].
    """
    return _opencv(cv2.createTonemapReinhard(GAMMA, 0.0, 1.0, 0.0), radiance)


def drago(radiance: np.ndarray) -> np.ndarray:
    """Drago et al. 2003 adaptive logarithmic mapping [2]_ (OpenCV ``TonemapDrago``, bias 0.85)."""
    return _opencv(cv2.createTonemapDrago(GAMMA, 1.0, 0.85), radiance)


def mantiuk(radiance: np.ndarray) -> np.ndarray:
    """Mantiuk et al. 2006 contrast-domain operator [3]_ (OpenCV ``TonemapMantiuk``).

    Contrast scale 0.5 instead of OpenCV's 0.7: at 0.7 the shadows of SICE's 10-14 EV outdoor
    stacks stay black (mean 0.19 on sice512/001); below 0.4 colours turn garish. Saturation 0.8
    for the same reason.
    """
    return _opencv(cv2.createTonemapMantiuk(GAMMA, 0.5, 0.8), radiance)


#: Durand and Dorsey's parameters: spatial sigma 2% of the image size, range sigma 0.4 in log10
#: units, and the base layer compressed to a 5:1 contrast (the paper's "base contrast of 5"),
#: its maximum mapped to 1.
DURAND_SPATIAL = 0.02
DURAND_RANGE = 0.4
DURAND_TARGET_CONTRAST = 5.0
#: The bilateral filter runs on a grid whose longer side is this (the paper's own acceleration,
#: section 5.2: subsampling plus piecewise-linear interpolation in intensity).
DURAND_GRID_SIDE = 256


def fast_bilateral(log_lum: np.ndarray, sigma_spatial: float, sigma_range: float, *,
                   grid_side: int = DURAND_GRID_SIDE) -> np.ndarray:
    """Durand and Dorsey's piecewise-linear, subsampled bilateral filter (section 5 of [4]_).

    The range axis is cut at levels ``sigma_range`` apart; for each level the range-weighted
    image and its weights are blurred spatially on a subsampled grid, their ratio gives the
    filtered value for pixels of that intensity, and every full-resolution pixel interpolates
    linearly between the two levels around its own value, which keeps edges sharp although the
    blur runs at low resolution. Written by hand: OpenCV's ``bilateralFilter`` costs O(sigma^2)
    per pixel (0.26 s at 512x512 with a 2% sigma) and has no such approximation.

    Parameters
    ----------
    log_lum : (H, W) float32 ndarray
        Log luminance.
    sigma_spatial : float
        Spatial Gaussian sigma in full-resolution pixels.
    sigma_range : float
        Range Gaussian sigma in the units of ``log_lum``.
    grid_side : int
        Longer side of the subsampled grid.

    Returns
    -------
    (H, W) float32 ndarray, the base layer.
    """
    h, w = log_lum.shape
    factor = max(1.0, max(h, w) / grid_side)
    sh, sw = max(1, round(h / factor)), max(1, round(w / factor))
    small = cv2.resize(log_lum, (sw, sh), interpolation=cv2.INTER_AREA) if factor > 1 else log_lum
    lo, hi = float(log_lum.min()), float(log_lum.max())
    if hi - lo < 1e-6:
        # A constant image is its own filtered version (the two levels below would coincide).
        return np.array(log_lum, dtype=np.float32)
    n = max(2, int(np.ceil((hi - lo) / sigma_range)) + 1)
    levels = np.linspace(lo, hi, n, dtype=np.float32)
    step = max(float(levels[1] - levels[0]), 1e-6)
    sigma_small = max(sigma_spatial / factor, 0.5)
    out = np.zeros_like(log_lum)
    for level in levels:
        g = np.exp(-0.5 * ((small - level) / sigma_range) ** 2).astype(np.float32)
        gb = cv2.GaussianBlur(g, (0, 0), sigma_small, borderType=cv2.BORDER_REFLECT)
        hb = cv2.GaussianBlur(g * small, (0, 0), sigma_small, borderType=cv2.BORDER_REFLECT)
        j = hb / np.maximum(gb, 1e-12)
        if factor > 1:
            j = cv2.resize(j, (w, h), interpolation=cv2.INTER_LINEAR)
        weight = np.maximum(0.0, 1.0 - np.abs(log_lum - level) / step)
        out += weight * j
    return out


def durand(radiance: np.ndarray) -> np.ndarray:
    """Durand and Dorsey 2002 bilateral-filter tone mapping [4]_.

    Intensity ``I = (20 R + 40 G + B) / 61``; base = fast bilateral of log10 I; the base's
    range (0.5-99.5 percentiles, robust to a few hot pixels) is scaled to log10 of the target
    contrast with its top mapped to 1, the detail layer kept; colour ratios R/I, G/I, B/I are
    reapplied, then gamma 2.2.

    Parameters
    ----------
    radiance : (H, W, 3) float32 ndarray >= 0
        Linear RGB radiance, any scale.

    Returns
    -------
    (H, W, 3) float32 ndarray, display-referred, about [0, 1].
    """
    rad = np.asarray(radiance, dtype=np.float32)
    intensity = rad @ np.array([20 / 61, 40 / 61, 1 / 61], dtype=np.float32)
    positive = intensity[intensity > 0]
    floor = np.float32(positive.min() if positive.size else 1e-6)
    intensity = np.maximum(intensity, floor)
    log_i = np.log10(intensity)
    h, w = log_i.shape
    base = fast_bilateral(log_i, DURAND_SPATIAL * max(h, w), DURAND_RANGE)
    b_lo, b_hi = np.percentile(base, [0.5, 99.5])
    scale = np.log10(DURAND_TARGET_CONTRAST) / max(float(b_hi - b_lo), 1e-6)
    log_out = (base - b_hi) * scale + (log_i - base)
    out = rad / intensity[..., None] * (10.0 ** log_out)[..., None]
    return np.power(np.clip(out, 0.0, 1.0), 1.0 / GAMMA).astype(np.float32)
