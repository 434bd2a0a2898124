"""Optimal tone curve of Mai, Mansour, Mantiuk, Nasiopoulos, Ward and Heidrich (2011).

A global, piecewise-linear tone curve from log luminance to display value that minimises the
expected squared error of the HDR image reconstructed from its 8-bit tone-mapped version. With
the log10 luminance axis cut into bins of width ``delta`` and ``p_k`` the fraction of pixels in
bin ``k``, the optimal slope of the curve over bin ``k`` has the closed form
``s_k = p_k^(1/3) / (delta sum_i p_i^(1/3))``: the curve rises by
``p_k^(1/3) / sum_i p_i^(1/3)`` across bin ``k``, from 0 at the darkest bin to 1 at the
brightest, so crowded luminance ranges get more display levels than a linear or logarithmic
curve gives them, though less than histogram equalisation (exponent 1/3, not 1). The curve is
applied to the log10 of each colour channel.

Choices: ``delta = 0.1`` (as in the authors' pfstmo_mai11); the bins are aligned to multiples
of ``delta`` and span the image's luminance range (pfstmo uses a fixed 10^-6..10^9 range, but
the merged radiance here has an arbitrary scale); the display value is used as is (the curve
targets gamma-encoded 8-bit values), then the common black/white-point stretch
(:func:`sice.fusion.tonemap.auto_levels`) follows, as for the other tone-mapping generators.

References
----------
.. [1] Z. Mai, H. Mansour, R. Mantiuk, P. Nasiopoulos, R. Ward, W. Heidrich, "Optimizing a tone
   curve for backward-compatible high dynamic range image and video compression", IEEE Trans.
   Image Process. 20(6):1558-1571, 2011. doi:10.1109/TIP.2010.2095866
"""
from __future__ import annotations

import numpy as np

from .tonemap import auto_levels, radiance_and_luminance

#: Width of the log10-luminance bins.
DELTA = 0.1


def optimal_tone_curve(log_lum: np.ndarray, delta: float = DELTA) -> tuple[np.ndarray, np.ndarray]:
    """Nodes of the optimal piecewise-linear tone curve for the given log10 luminances.

    Parameters
    ----------
    log_lum : ndarray
        log10 luminance of every pixel.
    delta : float
        Bin width in log10 units.

    Returns
    -------
    nodes : (N + 1,) float64 ndarray
        Bin edges in log10 luminance, multiples of ``delta``, from the bin of the smallest value
        to the end of the bin of the largest.
    values : (N + 1,) float64 ndarray
        Display values at the nodes, non-decreasing from 0 to 1.
    """
    log_lum = np.asarray(log_lum, dtype=np.float64).ravel()
    first = int(np.floor(log_lum.min() / delta))
    n_bins = max(1, int(np.floor(log_lum.max() / delta)) - first + 1)
    index = np.clip(np.floor(log_lum / delta).astype(np.int64) - first, 0, n_bins - 1)
    p = np.bincount(index, minlength=n_bins) / log_lum.size
    rise = np.cbrt(p)
    rise /= rise.sum()
    nodes = (first + np.arange(n_bins + 1)) * delta
    return nodes, np.concatenate([[0.0], np.cumsum(rise)])


def mai(radiance: np.ndarray) -> np.ndarray:
    """Mai et al. 2011 optimal tone curve [1]_ on every channel, then auto levels.

    Parameters
    ----------
    radiance : (H, W, 3) float32 ndarray >= 0
        Linear RGB radiance, any scale.

    Returns
    -------
    (H, W, 3) float32 ndarray, display-referred, in [0, 1].
    """
    rad, lum, floor = radiance_and_luminance(radiance)
    nodes, values = optimal_tone_curve(np.log10(lum))
    out = np.interp(np.log10(np.maximum(rad, floor)), nodes, values)
    return auto_levels(out.astype(np.float32))
