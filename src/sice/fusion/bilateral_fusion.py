"""Bilateral-filter compositing of Raman and Chaudhuri (2009).

A pixel of a frame is trusted in proportion to the detail the frame shows there: the absolute
difference between the frame's luminance and its bilateral-filtered version, which is large on
texture and small edges and near zero in flat, clipped or noise-free regions. The fused image is
the per-pixel weighted mean ``sum_k W_k I_k / sum_k W_k`` with ``W_k = C + |L_k - BF(L_k)|``;
``C`` keeps every frame in the mix where none shows detail [1]_. There is no multiresolution
blending, so the result is a smooth, low-contrast composite, unlike the pyramid methods.

Parameters as in the paper: ``C = 70 / 255``, spatial sigma ``K1 min(H, W)`` with ``K1 = 1``,
range sigma ``K2 (max - min)`` of the stack with ``K2 = 0.1``. The bilateral filter is Durand
and Dorsey's piecewise-linear approximation (:func:`sice.fusion.tonemap.fast_bilateral`): at a
spatial sigma as large as the image a direct filter would cost O(H W min(H, W)^2).

References
----------
.. [1] S. Raman, S. Chaudhuri, "Bilateral filter based compositing for variable exposure
   photography", Eurographics 2009 Short Papers, pp. 1-4.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..imageops import luminance
from .tonemap import fast_bilateral

#: The paper's constants.
C = 70.0 / 255.0
K1 = 1.0
K2 = 0.1
#: Grid of the fast bilateral filter: with a spatial sigma of the image's size a coarse grid
#: loses nothing (the spatial blur is nearly global).
GRID_SIDE = 64


def detail_weights(frames: Sequence[np.ndarray]) -> np.ndarray:
    """The paper's weights ``C + |L_k - BF(L_k)|`` (not normalised).

    Parameters
    ----------
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        Aligned RGB frames.

    Returns
    -------
    (K, H, W) float32 ndarray >= C.
    """
    lums = [luminance(f) for f in frames]
    h, w = lums[0].shape
    sigma_spatial = K1 * min(h, w)
    sigma_range = max(K2 * float(max(l.max() for l in lums) - min(l.min() for l in lums)), 1e-3)
    return np.stack([np.float32(C) + np.abs(l - fast_bilateral(l, sigma_spatial, sigma_range, grid_side=GRID_SIDE))
                     for l in lums])


def bilateral_fusion(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None = None) -> np.ndarray:
    """Raman and Chaudhuri 2009 bilateral-filter compositing (no exposure times needed).

    Parameters
    ----------
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        Aligned RGB frames.
    exposure_times : ignored
        Accepted for the common generator signature.

    Returns
    -------
    (H, W, 3) float32 ndarray in [0, 1].
    """
    weights = detail_weights(frames)
    fused = np.zeros_like(frames[0], dtype=np.float32)
    for wk, f in zip(weights, frames):
        fused += wk[..., None] * f
    return fused / weights.sum(axis=0)[..., None]
