"""Gradient-domain exposure fusion of Paul, Sevcenko and Melnikov (2016).

The luminance of the result is the image whose gradient field is, at every pixel, the gradient
of largest magnitude among the frames (the most detailed exposure there); it is recovered by
solving the Poisson equation ``laplacian(Y) = div(G)``. The chrominance is the mean of the
frames' chrominances weighted by their distance from grey (the most colourful exposure wins),
and YCbCr is converted back to RGB [1]_.

Choices: Rec. 601 YCbCr; the Poisson equation is solved exactly with Neumann boundaries by the
discrete cosine transform (SciPy), where the paper uses a wavelet solver; the solution, defined
up to a constant and with a range that grows with the number of frames, is stretched so that its
0.5 and 99.5 luma percentiles span [0, 1] (the paper normalises to the display range).

References
----------
.. [1] S. Paul, I. S. Sevcenko, P. Melnikov, "Multi-exposure and multi-focus image fusion in
   gradient domain", J. Circuits, Systems and Computers 25(10):1650123, 2016.
   doi:10.1142/S0218126616501231
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from scipy import fft

#: Luma percentiles of the reconstruction mapped to 0 and 1.
STRETCH = (0.5, 99.5)


def poisson_neumann(div: np.ndarray) -> np.ndarray:
    """Solve ``laplacian(u) = div`` on the grid with zero-flux (Neumann) boundaries.

    The 5-point Laplacian with mirrored borders is diagonal in the DCT-II basis, with eigenvalues
    ``2 cos(pi i / H) + 2 cos(pi j / W) - 4``; the constant mode (eigenvalue 0) is set to 0.

    Parameters
    ----------
    div : (H, W) ndarray
        Right-hand side (the divergence of the target gradient field).

    Returns
    -------
    (H, W) float64 ndarray, zero mean.
    """
    h, w = div.shape
    coeff = fft.dctn(div, type=2, norm="ortho")
    denom = (2 * np.cos(np.pi * np.arange(h) / h)[:, None] + 2 * np.cos(np.pi * np.arange(w) / w)[None, :] - 4)
    denom[0, 0] = 1.0
    coeff /= denom
    coeff[0, 0] = 0.0
    return fft.idctn(coeff, type=2, norm="ortho")


def gradient_fusion(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None = None) -> np.ndarray:
    """Paul et al. 2016 gradient-domain fusion (no exposure times needed).

    Parameters
    ----------
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        Aligned RGB frames.
    exposure_times : ignored
        Accepted for the common generator signature.

    Returns
    -------
    (H, W, 3) float32 ndarray, unclipped.
    """
    # OpenCV's YCrCb for float input: Y in [0, 1], Cr/Cb centred on 0.5 (Rec. 601).
    ycc = [cv2.cvtColor(np.ascontiguousarray(f, dtype=np.float32), cv2.COLOR_RGB2YCrCb) for f in frames]
    y = np.stack([c[..., 0] for c in ycc]).astype(np.float64)
    # Forward differences (zero across the last row/column: the Neumann boundary).
    gx = np.zeros_like(y)
    gy = np.zeros_like(y)
    gx[:, :, :-1] = np.diff(y, axis=2)
    gy[:, :-1, :] = np.diff(y, axis=1)
    pick = np.argmax(gx * gx + gy * gy, axis=0)[None]
    fx = np.take_along_axis(gx, pick, 0)[0]
    fy = np.take_along_axis(gy, pick, 0)[0]
    # Divergence by backward differences, the adjoint of the forward gradient above.
    div = fx.copy()
    div[:, 1:] -= fx[:, :-1]
    div += fy
    div[1:, :] -= fy[:-1, :]
    lum = poisson_neumann(div)
    lo, hi = np.percentile(lum, STRETCH)
    lum = (lum - lo) / max(hi - lo, 1e-6)
    chroma = np.stack([c[..., 1:] for c in ycc]) - np.float32(0.5)           # (K, H, W, 2)
    weight = np.abs(chroma) + np.float32(1e-4)
    fused_chroma = (weight * chroma).sum(axis=0) / weight.sum(axis=0) + np.float32(0.5)
    out = np.dstack([lum.astype(np.float32), fused_chroma.astype(np.float32)])
    return cv2.cvtColor(out, cv2.COLOR_YCrCb2RGB)
