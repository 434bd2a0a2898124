"""Structural-patch-decomposition fusion (SPD-MEF) of Ma, Li, Yong, Wang, Meng and Zhang (2017).

Every colour patch x_k (N x N x 3, all frames at the same place) is split into signal strength
``c_k = |x_k - l_k|``, structure ``s_k = (x_k - l_k) / c_k`` and mean intensity ``l_k`` (one
scalar over the three channels). The fused patch takes the largest strength ``max_k c_k``, the
structure ``sum_k c_k^p s_k`` renormalised to unit length (p = 4), and the mean intensity
``sum_k L_k l_k / sum_k L_k`` with ``L_k = exp(-(g_k - 0.5)^2 / (2 0.2^2) - (l_k - 0.5)^2 /
(2 0.5^2))``, g_k the frame's global mean. Patches at a stride of 2 pixels overlap; each pixel of
the result is the mean of every fused patch that covers it [1]_. This is the static-scene
method; the structural-consistency ghost removal of the paper is left to the builder's
alignment and ghost flags.

Written here (no library implements it), after the authors' MATLAB release ``spd_mef.m``
(21x21 patches, stride 2, the last row and column of patches always included), but without its
loop over patches: the patch sums are expanded into per-pixel cross moments of the frames and the
overlap-averaging into box sums, so the cost is O(K^2) box filters of the image for K frames.

References
----------
.. [1] K. Ma, H. Li, H. Yong, Z. Wang, D. Meng, L. Zhang, "Robust multi-exposure image fusion:
   a structural patch decomposition approach", IEEE Trans. Image Process. 26(5):2519-2532,
   2017. doi:10.1109/TIP.2017.2671921
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

#: Parameters of the authors' release.
PATCH = 21
STRIDE = 2
P = 4.0
GLOBAL_SIGMA = 0.2
LOCAL_SIGMA = 0.5
STRENGTH_EPS = 0.001


def _valid_mean(img: np.ndarray, n: int) -> np.ndarray:
    """Mean over every n x n window lying inside the image ('valid', top-left indexed)."""
    h, w = img.shape
    return cv2.blur(img, (n, n), anchor=(0, 0), borderType=cv2.BORDER_REFLECT)[: h - n + 1, : w - n + 1]


def _cover_sum(values: np.ndarray, n: int, shape: tuple[int, int]) -> np.ndarray:
    """For each pixel, the sum of ``values`` (indexed by patch top-left) over the patches covering it."""
    full = np.zeros(shape, np.float32)
    full[: values.shape[0], : values.shape[1]] = values
    return cv2.boxFilter(full, -1, (n, n), anchor=(n - 1, n - 1), normalize=False,
                         borderType=cv2.BORDER_CONSTANT)


def _grid(length: int, stride: int) -> np.ndarray:
    idx = np.arange(0, length, stride)
    return np.unique(np.append(idx, length - 1))


def spd_mef(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None = None, *,
            patch: int = PATCH, stride: int = STRIDE, p: float = P,
            global_sigma: float = GLOBAL_SIGMA, local_sigma: float = LOCAL_SIGMA) -> np.ndarray:
    """Ma et al. 2017 SPD-MEF, static scenes (no exposure times needed).

    Parameters
    ----------
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        Aligned RGB frames.
    exposure_times : ignored
        Accepted for the common generator signature.
    patch, stride : int
        Patch side N and the step between patches (21 and 2 in the release); the patch shrinks
        to the image's shorter side for tiny images.
    p : float
        Exponent of the strength weights of the structures.
    global_sigma, local_sigma : float
        Spreads of the global and local well-exposedness of the mean intensity.

    Returns
    -------
    (H, W, 3) float32 ndarray, unclipped.
    """
    # float32 on frames centred on 0.5: three times faster than float64 (OpenCV's float32
    # paths), and centring keeps the cancellation error of E[xy] - E[x]E[y] near 1e-7.
    x = [np.asarray(f, dtype=np.float32) - np.float32(0.5) for f in frames]
    h, w = x[0].shape[:2]
    patch = min(patch, h, w)
    n = patch * patch * 3
    k = len(x)
    third = np.full((1, 3), 1 / 3, np.float32)
    # Only patches on the stride grid take part (last row and column always included); every
    # per-patch quantity is computed at those top-left positions only.
    rows, cols = _grid(h - patch + 1, stride), _grid(w - patch + 1, stride)

    def patch_mean(img: np.ndarray) -> np.ndarray:
        return _valid_mean(img, patch)[np.ix_(rows, cols)]

    def channel_mean_product(i: int, j: int) -> np.ndarray:
        return cv2.transform(cv2.multiply(x[i], x[j]), third)

    mean = np.stack([patch_mean(cv2.transform(f, third)) for f in x])         # l_k - 0.5, (K, r, c)
    # The patch is N x N x 3; its second moment is the window mean of the channel mean of x^2.
    var = np.stack([np.maximum(patch_mean(channel_mean_product(i, i)) - mean[i] ** 2, 0.0) for i in range(k)])
    strength = np.sqrt(var * n) + np.float32(STRENGTH_EPS)
    weight = strength ** np.float32(p)
    weight /= weight.sum(axis=0, keepdims=True)
    alpha = weight / strength                                                  # structure weights
    # |sum_k alpha_k (x_k - l_k)|^2 / n = sum_kj alpha_k alpha_j cov_kj, one pair at a time so that
    # memory stays O(K) images.
    norm_sq = (alpha ** 2 * var).sum(axis=0)
    for i in range(k):
        for j in range(i + 1, k):
            cov = patch_mean(channel_mean_product(i, j)) - mean[i] * mean[j]
            norm_sq += 2.0 * alpha[i] * alpha[j] * cov
    norm = np.sqrt(np.maximum(norm_sq * n, 0.0))
    scale = np.where(norm > 0, strength.max(axis=0) / np.where(norm > 0, norm, 1.0), 1.0)
    coeff = alpha * scale[None]                                      # block = sum a_k (x_k - l_k) + l
    global_mean = np.array([f.mean(dtype=np.float64) for f in x], np.float32)[:, None, None]  # minus 0.5
    lw = np.exp(-0.5 * (global_mean ** 2 / global_sigma ** 2 + mean ** 2 / local_sigma ** 2))
    intensity = (lw * mean).sum(axis=0) / lw.sum(axis=0)
    offset = intensity - (coeff * mean).sum(axis=0)

    def cover(values: np.ndarray) -> np.ndarray:
        grid = np.zeros((h - patch + 1, w - patch + 1), np.float32)
        grid[np.ix_(rows, cols)] = values
        return _cover_sum(grid, patch, (h, w))

    count = cover(np.ones((len(rows), len(cols)), np.float32))
    out = cover(offset)[..., None]
    for i in range(k):
        out = out + cover(coeff[i])[..., None] * x[i]
    return (out / count[..., None] + 0.5).astype(np.float32)
