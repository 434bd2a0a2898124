"""Pyramid fusion by salience and match of Burt and Kolczynski (1993).

Every frame is decomposed into a Laplacian pyramid. At each level and position the two
sources' coefficients ``D_A``, ``D_B`` are compared by their salience, the local energy
``S = w * D^2`` (``w`` a small weighting window), and by their match
``M = 2 w * (D_A D_B) / (S_A + S_B)``, a normalised correlation in [-1, 1]. Where the sources
differ (``M <= alpha``) the more salient coefficient is selected; where they agree they are
averaged with weights ``w_min = 1/2 - 1/2 (1 - M) / (1 - alpha)`` for the less and
``1 - w_min`` for the more salient one. The pyramid is collapsed into the fused image [1]_. Unlike
exposure fusion (Mertens et al.), no frame is preferred for being well exposed: the detail of
every scale comes from the frame that shows the most of it there, so the result has strong
local contrast.

Choices: the match and salience are measured on the luma of the coefficients (Rec. 601) and
the same weights blend the R, G and B coefficients; ``w`` is the 5x5 binomial window,
``alpha = 0.85``; the pyramid stops when the shorter side falls below 8 pixels, and its
coarsest (Gaussian) level is the mean of the frames' (the paper fuses pairs; a stack is fused
one frame after the other, dark to bright, each new frame against the running result).

References
----------
.. [1] P. J. Burt, R. J. Kolczynski, "Enhanced image capture through fusion", Proc. 4th
   International Conference on Computer Vision (ICCV), 1993, pp. 173-182.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..imageops import luminance

#: Match threshold between selection and averaging.
ALPHA = 0.85
#: The pyramid's coarsest level has a shorter side of at least this.
MIN_SIDE = 8
#: Separable 5x5 binomial window of the salience and match measures.
_WINDOW = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` band-pass images (finest first) and the coarsest Gaussian level.

    Parameters
    ----------
    image : (H, W[, C]) float32 ndarray
    levels : int
        Number of band-pass levels.

    Returns
    -------
    list of ``levels + 1`` float32 ndarrays; :func:`collapse` inverts it exactly.
    """
    pyramid, current = [], np.asarray(image, dtype=np.float32)
    for _ in range(levels):
        down = cv2.pyrDown(current)
        up = cv2.pyrUp(down, dstsize=(current.shape[1], current.shape[0]))
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def collapse(pyramid: Sequence[np.ndarray]) -> np.ndarray:
    """Rebuild the image from :func:`laplacian_pyramid`'s output."""
    current = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        current = cv2.pyrUp(current, dstsize=(band.shape[1], band.shape[0])) + band
    return current


def _local(image: np.ndarray) -> np.ndarray:
    return cv2.sepFilter2D(image, -1, _WINDOW, _WINDOW, borderType=cv2.BORDER_REFLECT)


def fuse_bands(band_a: np.ndarray, band_b: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Burt and Kolczynski's rule for one pyramid level of two sources.

    Parameters
    ----------
    band_a, band_b : (h, w, 3) float32 ndarray
        Band-pass coefficients of the two sources.
    alpha : float
        Match threshold.

    Returns
    -------
    (h, w, 3) float32 ndarray: the selected or weighted coefficients.
    """
    da, db = luminance(band_a), luminance(band_b)
    sa, sb = _local(da * da), _local(db * db)
    match = 2.0 * _local(da * db) / np.maximum(sa + sb, np.float32(1e-12))
    w_min = np.where(match > alpha, 0.5 - 0.5 * (1.0 - match) / (1.0 - alpha), 0.0).astype(np.float32)
    w_a = np.where(sa >= sb, 1.0 - w_min, w_min)[..., None]
    return w_a * band_a + (1.0 - w_a) * band_b


def pyramid_fusion(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None = None) -> np.ndarray:
    """Burt and Kolczynski 1993 salience/match pyramid fusion (no exposure times needed).

    Parameters
    ----------
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        Aligned RGB frames, dark to bright.
    exposure_times : ignored
        Accepted for the common generator signature.

    Returns
    -------
    (H, W, 3) float32 ndarray, unclipped (the collapse can overshoot [0, 1]).
    """
    h, w = frames[0].shape[:2]
    levels = max(1, int(np.floor(np.log2(min(h, w) / MIN_SIDE))))
    pyramids = [laplacian_pyramid(f, levels) for f in frames]
    fused = list(pyramids[0])
    for pyr in pyramids[1:]:
        fused[:-1] = [fuse_bands(a, b) for a, b in zip(fused[:-1], pyr[:-1])]
    fused[-1] = np.mean([pyr[-1] for pyr in pyramids], axis=0)
    return collapse(fused)
