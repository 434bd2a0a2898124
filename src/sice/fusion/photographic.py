"""Photographic tone reproduction of Reinhard, Stark, Shirley and Ferwerda (2002), local operator.

The radiance is first scaled so that its log-average luminance becomes the key ``a`` (0.18,
"middle grey"): ``L = a / Lw_avg * Lw`` with ``Lw_avg = exp(mean(log(delta + Lw)))``. The local
operator ("automatic dodging and burning") then divides every pixel by one plus the average of
its neighbourhood, ``Ld = L / (1 + V1(x, y, s_m))``, where ``V1(s)`` is ``L`` blurred by the
Gaussian ``R1`` of scale ``s`` and ``s_m`` is the largest scale over which the neighbourhood is
uniform: the centre-surround difference
``V(s) = (V1(s) - V2(s)) / (2^phi a / s^2 + V1(s))`` (``V2`` the Gaussian of scale 1.6 s) stays
below ``epsilon`` in magnitude. A pixel next to a much brighter or darker region thus adapts to
a small neighbourhood, which avoids halos, and a pixel inside a uniform region to a large one,
which compresses the range like the global operator ``L / (1 + L)`` [1]_.

Choices: the paper's parameters (``a = 0.18``, ``phi = 8``, ``epsilon = 0.05``, 9 scales
``s = 1.6^i`` from 1 to 43 pixels, ``alpha1 = 1 / (2 sqrt 2)``, ``alpha2 = 1.6 alpha1``); the scales
are walked from the smallest and the last one whose ``|V|`` is below ``epsilon`` is kept (the
usual reading of "the largest scale with ``|V| < epsilon``"). Colour: every channel is scaled by
``Ld / Lw``; display gamma 2.2 and the common black/white-point stretch
(:func:`sice.fusion.tonemap.auto_levels`) follow, as for the other tone-mapping generators.

References
----------
.. [1] E. Reinhard, M. Stark, P. Shirley, J. Ferwerda, "Photographic tone reproduction for
   digital images", ACM Trans. Graph. 21(3):267-276 (SIGGRAPH 2002). doi:10.1145/566654.566575
"""
from __future__ import annotations

import cv2
import numpy as np

from .tonemap import display_encode, radiance_and_luminance

#: The key: the display value of the scene's log-average luminance ("middle grey").
KEY = 0.18
#: Sharpening parameter and threshold of the scale selection.
PHI = 8.0
EPSILON = 0.05
#: Scales s = 1.6^i pixels, i = 0..8 (1 to 43 pixels), and the two Gaussians' widths.
SCALE_RATIO = 1.6
N_SCALES = 9
ALPHA1 = 1.0 / (2.0 * np.sqrt(2.0))
ALPHA2 = SCALE_RATIO * ALPHA1
#: Added before taking logs of the luminance (black pixels), relative to its maximum.
_DELTA = 1e-6


def _blur(image: np.ndarray, s: float, alpha: float) -> np.ndarray:
    """Convolution with the paper's ``R(x, y, s) = exp(-(x^2 + y^2) / (alpha s)^2) / (pi (alpha s)^2)``,
    a normalised Gaussian of standard deviation ``alpha s / sqrt(2)``."""
    sigma = alpha * s / np.sqrt(2.0)
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def photographic_luminance(lum: np.ndarray, *, key: float = KEY, phi: float = PHI,
                           epsilon: float = EPSILON, n_scales: int = N_SCALES) -> np.ndarray:
    """Display luminance of the local photographic operator (before any display encoding).

    Parameters
    ----------
    lum : (H, W) float32 ndarray >= 0
        World luminance, any scale.
    key, phi, epsilon, n_scales : float, float, float, int
        The operator's parameters (see the module docstring).

    Returns
    -------
    (H, W) float32 ndarray in [0, 1): ``L / (1 + V1(x, y, s_m))``. A uniform image maps to
    ``key / (1 + key)`` everywhere.
    """
    lum = np.maximum(np.asarray(lum, dtype=np.float32), 0.0)
    delta = _DELTA * max(float(lum.max()), 1e-30)
    log_average = float(np.exp(np.mean(np.log(delta + lum.astype(np.float64)))))
    scaled = (key / log_average * lum).astype(np.float32)
    scales = SCALE_RATIO ** np.arange(n_scales + 1)
    # V2 at scale s_i is V1 at s_(i+1) (alpha2 / alpha1 is the scale ratio), so one blur per scale.
    v1 = [_blur(scaled, s, ALPHA1) for s in scales]
    adapt = v1[0].copy()
    searching = np.ones(scaled.shape, dtype=bool)
    for i in range(n_scales):
        s = scales[i]
        centre_surround = (v1[i] - v1[i + 1]) / (2.0 ** phi * key / s ** 2 + v1[i])
        searching &= np.abs(centre_surround) < epsilon
        adapt[searching] = v1[i][searching]
    return scaled / (1.0 + adapt)


def reinhard02(radiance: np.ndarray) -> np.ndarray:
    """Reinhard et al. 2002 local photographic operator [1]_, then gamma 2.2 and auto levels.

    Parameters
    ----------
    radiance : (H, W, 3) float32 ndarray >= 0
        Linear RGB radiance, any scale.

    Returns
    -------
    (H, W, 3) float32 ndarray, display-referred, in [0, 1].
    """
    rad, lum, _ = radiance_and_luminance(radiance)
    return display_encode(rad * (photographic_luminance(lum) / lum)[..., None])
