"""Tone mapping for high contrast images of Ashikhmin (2002).

Three steps [1]_. (1) Local adaptation luminance: for every pixel the average luminance
``G_s`` over the largest neighbourhood (scale ``s``, up to ``s_max``) whose band-limited local
contrast ``|G_s - G_2s| / G_s`` stays below a threshold (0.5): a pixel next to a strong edge
adapts to a small neighbourhood, one in a uniform region to a large one. (2) A global
compression of the adaptation luminance ``L_a`` through the "perceptual capacity" ``C(L)``, the
integral of the inverse threshold-versus-intensity function (piecewise: linear below
0.0034 cd/m^2, logarithmic up to 1, linear up to 7.2444, logarithmic above),
``TM(L) = (C(L) - C(L_min)) / (C(L_max) - C(L_min))``, so that equal numbers of
just-noticeable differences get equal display ranges. (3) Detail is put back by the ratio of
the pixel to its adaptation luminance: ``L_d = L TM(L_a) / L_a``.

Choices: ``s`` runs over 1..10 pixels (Gaussian sigma ``s``; the paper's ``s_max`` is one degree
of visual angle, 10 pixels in the authors' examples) and the scales are walked from the smallest,
keeping the last one below the threshold; ``L_min`` and ``L_max`` are the 0.05th and 99.95th
percentiles of ``L_a`` (robust to a few hot pixels). ``C`` needs absolute luminances, which a
stack without EXIF cannot give: the radiance is scaled so that its log-average luminance is
:data:`ADAPTATION_CD_M2` (a dim interior's level). Colour: every channel is scaled by ``L_d / L``;
display gamma 2.2 and the common black/white-point stretch
(:func:`sice.fusion.tonemap.auto_levels`) follow, as for the other tone-mapping generators.

References
----------
.. [1] M. Ashikhmin, "A tone mapping algorithm for high contrast images", Proc. 13th Eurographics
   Workshop on Rendering (EGWR), 2002, pp. 145-156.
"""
from __future__ import annotations

import cv2
import numpy as np

from .tonemap import display_encode, radiance_and_luminance

#: Local contrast threshold and largest scale (pixels) of the adaptation luminance.
THRESHOLD = 0.5
S_MAX = 10
#: Percentiles of the adaptation luminance taken as the scene's minimum and maximum.
ROBUST_PERCENTILES = (0.05, 99.95)
#: Log-average luminance (cd/m^2) that the relative radiance is scaled to.
ADAPTATION_CD_M2 = 10.0

#: Breakpoints (cd/m^2) of the piecewise capacity function.
_C_BREAKS = (0.0034, 1.0, 7.2444)


def capacity(lum: np.ndarray) -> np.ndarray:
    """Ashikhmin's perceptual capacity ``C(L)`` of luminances ``L`` in cd/m^2.

    ``L / 0.0014`` below 0.0034; ``2.4483 + ln(L / 0.0034) / 0.4027`` below 1;
    ``16.5630 + (L - 1) / 0.4027`` below 7.2444; ``32.0693 + ln(L / 7.2444) / 0.0556`` above:
    continuous and increasing.

    Parameters
    ----------
    lum : ndarray
        Luminances >= 0, cd/m^2.

    Returns
    -------
    float64 ndarray of the same shape.
    """
    lum = np.maximum(np.asarray(lum, dtype=np.float64), 1e-30)
    b0, b1, b2 = _C_BREAKS
    return np.select(
        [lum < b0, lum < b1, lum < b2],
        [lum / 0.0014, 2.4483 + np.log(lum / b0) / 0.4027, 16.5630 + (lum - 1.0) / 0.4027],
        32.0693 + np.log(lum / b2) / 0.0556)


def adaptation_luminance(lum: np.ndarray, threshold: float = THRESHOLD, s_max: int = S_MAX) -> np.ndarray:
    """Local adaptation luminance ``L_a`` (step 1 of the module docstring).

    Parameters
    ----------
    lum : (H, W) float32 ndarray > 0
    threshold : float
        Band-limited local contrast that stops the growth of the neighbourhood.
    s_max : int
        Largest scale, pixels.

    Returns
    -------
    (H, W) float32 ndarray: ``G_s`` at each pixel's scale; ``lum`` blurred at ``s_max`` where the
    image is uniform.
    """
    lum = np.asarray(lum, dtype=np.float32)
    blurred = {s: cv2.GaussianBlur(lum, (0, 0), float(s), borderType=cv2.BORDER_REFLECT)
               for s in sorted({*range(1, s_max + 1), *range(2, 2 * s_max + 1, 2)})}
    adapt = blurred[1].copy()
    searching = np.ones(lum.shape, dtype=bool)
    for s in range(1, s_max + 1):
        g, g2 = blurred[s], blurred[2 * s]
        searching &= np.abs(g - g2) < threshold * np.maximum(g, np.float32(1e-30))
        adapt[searching] = g[searching]
    return adapt


def ashikhmin_luminance(lum: np.ndarray) -> np.ndarray:
    """Display luminance in [0, 1] (before gamma) of the Ashikhmin operator, for ``lum`` in cd/m^2."""
    lum = np.maximum(np.asarray(lum, dtype=np.float32), np.float32(1e-30))
    adapt = adaptation_luminance(lum)
    lo, hi = np.percentile(adapt, ROBUST_PERCENTILES)
    c_lo, c_hi = capacity(lo), capacity(hi)
    tm = (capacity(adapt) - c_lo) / max(float(c_hi - c_lo), 1e-12)
    return (lum * np.clip(tm, 0.0, None) / adapt).astype(np.float32)


def ashikhmin(radiance: np.ndarray) -> np.ndarray:
    """Ashikhmin 2002 local tone mapping [1]_, then gamma 2.2 and auto levels.

    Parameters
    ----------
    radiance : (H, W, 3) float32 ndarray >= 0
        Linear RGB radiance, any scale (scaled to :data:`ADAPTATION_CD_M2` log-average).

    Returns
    -------
    (H, W, 3) float32 ndarray, display-referred, in [0, 1].
    """
    rad, lum, _ = radiance_and_luminance(radiance)
    scale = np.float32(ADAPTATION_CD_M2 / np.exp(np.mean(np.log(lum.astype(np.float64)))))
    display = ashikhmin_luminance(lum * scale)
    return display_encode(rad * (display / lum)[..., None])
