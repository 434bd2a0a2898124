"""Block-wise entropy selection with Gaussian blending, after Goshtasby (2005).

The image domain is cut into ``d x d`` blocks; in every block the frame whose grey values have
the highest entropy (the most information) is chosen, and the chosen frames are blended
smoothly with weights that are normalised Gaussians centred on the blocks:
``O(x) = sum_b G_b(x) I_(best(b))(x) / sum_b G_b(x)``, ``G_b(x) = exp(-|x - c_b|^2 / (2 sigma^2))``
[1]_. The paper chooses ``d`` and ``sigma`` by maximising the entropy of the result; here they
are chosen the same way among a small grid (``d`` = 1/8, 1/12, 1/16 of the shorter side,
``sigma`` = d/2, d, 2d), on a copy whose longer side is at most 256 pixels, where the paper
runs a gradient ascent. The result keeps each region as one exposure saw it, so it looks unlike
the pixel-wise and pyramid methods.

Implementation: every Gaussian is separable, so the blended weight of a frame is
``Gy S_k Gx^T`` with ``S_k`` the (blocks-high, blocks-wide) indicator of the blocks that chose
frame ``k`` and ``Gy``, ``Gx`` the Gaussians of the block centres sampled on the pixel rows and
columns: two small matrix products per frame instead of one Gaussian per block.

References
----------
.. [1] A. A. Goshtasby, "Fusion of multi-exposure images", Image and Vision Computing
   23(6):611-618, 2005.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..imageops import luminance, resize_long_side

#: Block sides (fractions of the shorter image side) and sigmas (multiples of the block side)
#: among which the entropy of the result decides.
BLOCK_FRACTIONS = (1 / 8, 1 / 12, 1 / 16)
SIGMA_FACTORS = (0.5, 1.0, 2.0)
#: Longer side of the copy on which the parameters are chosen.
SEARCH_SIDE = 256


def _grey8(frame: np.ndarray) -> np.ndarray:
    return np.clip(luminance(frame) * 255.0 + 0.5, 0, 255).astype(np.int64)


def entropy(grey8: np.ndarray) -> float:
    """Shannon entropy (bits) of the histogram of 8-bit grey values."""
    p = np.bincount(np.asarray(grey8).ravel(), minlength=256) / grey8.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def block_entropies(grey8: np.ndarray, block: int) -> np.ndarray:
    """Entropy of every ``block x block`` block (the last row/column of blocks may be smaller).

    Parameters
    ----------
    grey8 : (H, W) int ndarray in [0, 255]
    block : int
        Block side in pixels.

    Returns
    -------
    (ceil(H / block), ceil(W / block)) float64 ndarray, bits.
    """
    h, w = grey8.shape
    nby, nbx = -(-h // block), -(-w // block)
    ids = (np.arange(h) // block)[:, None] * nbx + (np.arange(w) // block)[None, :]
    counts = np.bincount((ids * 256 + grey8).ravel(), minlength=nby * nbx * 256).reshape(nby * nbx, 256)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=1).reshape(nby, nbx)


def _gaussians(n: int, block: int, n_blocks: int, sigma: float) -> np.ndarray:
    """(n, n_blocks): Gaussian of each block centre sampled at pixel positions 0..n-1."""
    starts = np.arange(n_blocks) * block
    centres = (starts + np.minimum(starts + block, n) - 1) / 2.0      # the last block may be partial
    d = np.arange(n)[:, None] - centres[None, :]
    return np.exp(-0.5 * (d / sigma) ** 2).astype(np.float32)


def _blend(frames: Sequence[np.ndarray], greys: Sequence[np.ndarray], block: int, sigma: float) -> np.ndarray:
    h, w = greys[0].shape
    ent = np.stack([block_entropies(g, block) for g in greys])             # (K, nby, nbx)
    best = np.argmax(ent, axis=0)
    gy = _gaussians(h, block, best.shape[0], sigma)
    gx = _gaussians(w, block, best.shape[1], sigma)
    total = gy @ np.ones(best.shape, np.float32) @ gx.T
    out = np.zeros(frames[0].shape, dtype=np.float32)
    for k, f in enumerate(frames):
        chosen = (best == k).astype(np.float32)
        if chosen.any():
            out += ((gy @ chosen @ gx.T) / total)[..., None] * f
    return out


def block_fusion(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None = None, *,
                 block: int | None = None, sigma: float | None = None) -> np.ndarray:
    """Goshtasby 2005 block-entropy fusion (no exposure times needed).

    Parameters
    ----------
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        Aligned RGB frames.
    exposure_times : ignored
        Accepted for the common generator signature.
    block, sigma : int, float, optional
        Block side and blending sigma in pixels; when omitted both are chosen to maximise the
        entropy of the result (see the module docstring).

    Returns
    -------
    (H, W, 3) float32 ndarray in [0, 1].
    """
    frames = [np.ascontiguousarray(f, dtype=np.float32) for f in frames]
    if block is None or sigma is None:
        scale = min(1.0, SEARCH_SIDE / max(frames[0].shape[:2]))  # the search's pixels per frame pixel
        small = [resize_long_side(f, SEARCH_SIDE) for f in frames]
        small_greys = [_grey8(f) for f in small]
        side = min(small[0].shape[:2])
        best_score, best_params = -1.0, (1.0, 1.0)
        for fraction in BLOCK_FRACTIONS:
            b = max(2, round(side * fraction))
            for factor in SIGMA_FACTORS:
                score = entropy(_grey8(_blend(small, small_greys, b, factor * b)))
                if score > best_score:
                    best_score, best_params = score, (b / scale, factor * b / scale)
        block = block or max(2, round(best_params[0]))
        sigma = sigma or best_params[1]
    return _blend(frames, [_grey8(f) for f in frames], int(block), float(sigma))
