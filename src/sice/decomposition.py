"""Luminance/detail decomposition of the original SICE release (Cai, Gu, Zhang, TIP 2018).

The release's "Twostage" network (Model 2) and its "Perpixel" successor (Model 3) take, beside the
RGB image, a luminance layer ``L`` and a detail layer ``D`` of its grey image ``I``::

    I = double(rgb2gray(img)); I = I ./ max(I(:));     % MATLAB, uint8 img
    lumin  = im2single(wlsFilter(I, 2, 2));             % Farbman et al. 2008 WLS smoothing
    detail = im2single(I - lumin);

This module reproduces those three lines exactly (:func:`release_gray`, :func:`wls_smooth`) and
adds a fast approximation for photographs too large for the sparse solve
(:func:`wls_smooth_fast`, OpenCV's Fast Global Smoother).

References
----------
.. [1] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE Trans. Image Processing 27(4):2049-2062, 2018.
.. [2] Z. Farbman, R. Fattal, D. Lischinski, R. Szeliski, "Edge-Preserving Decompositions for
   Multi-Scale Tone and Detail Manipulation", ACM Trans. Graphics 27(3), 2008 (SIGGRAPH);
   reference code ``wlsFilter.m`` by D. Lischinski.
.. [3] D. Min, S. Choi, J. Lu, B. Ham, K. Sohn, M. N. Do, "Fast Global Image Smoothing Based on
   Weighted Least Squares", IEEE Trans. Image Processing 23(12):5638-5653, 2014.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg

__all__ = [
    "AUTO_EXACT_MAX_PIXELS",
    "EXACT_WARN_PIXELS",
    "aux_tensor",
    "decompose",
    "release_gray",
    "wls_smooth",
    "wls_smooth_fast",
]

# MATLAB rgb2gray: coef = first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]) (NTSC
# YIQ). Its documentation rounds them to 0.2989/0.5870/0.1140, but the code uses the full values;
# the two disagree on the rounding of a few uint8 colours, so the full ones are kept.
MATLAB_RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])

# MATLAB's eps (2^-52): wlsFilter.m's default guidance is log(IN + eps). It makes a black pixel
# (log = -36) an almost impassable edge for the smoother, which matters on under-exposed inputs.
MATLAB_EPS = float(np.finfo(np.float64).eps)

# wlsFilter.m's smallNum: keeps the weights finite where the guidance is flat.
WLS_SMALL_NUM = 1e-4

# decompose(method="auto") solves exactly up to this many pixels and approximates above: the
# sparse factorisation grows faster than linearly (measured in docs/decomposition.md: 16 s of
# CPU and 1.1 GB at 1 MP, 2.8 s and 0.15 GB at 0.26 MP).
AUTO_EXACT_MAX_PIXELS = 1_000_000

# wls_smooth warns above this size: the factor's memory grows like N log N, so ~5 GB at 4 MP.
EXACT_WARN_PIXELS = 4_000_000

# Fast Global Smoother settings fitted to wls_smooth(lam=2, alpha=2) on real SICE frames; see
# docs/decomposition.md for the fit and the measured error.
FGS_LAMBDA = 2000.0
FGS_SIGMA_COLOR = 3.0
FGS_GUIDE_OFFSET = 0.25
FGS_LAMBDA_ATTENUATION = 0.25
FGS_NUM_ITER = 3

_METHODS = ("auto", "exact", "fast")
_ROWS = 256  # rows per band in the element-wise steps (bounded memory on 24 MP photos)


def _im2uint8(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``im2uint8``: float [0, 1] -> round(255 x) saturated, uint16 -> round(x / 257)."""
    a = np.asarray(rgb)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return np.floor(a / 257.0 + 0.5).astype(np.uint8)
    if a.dtype.kind == "f":
        # MATLAB maps NaN to 0; rounding is half away from zero (floor(x + 0.5) for x >= 0).
        # Done in double like MATLAB, a band of rows at a time: a whole 24 MP float64 copy
        # (and its temporaries) would cost over a GB.
        out = np.empty(a.shape, np.uint8)
        for r in range(0, a.shape[0], _ROWS):
            x = np.nan_to_num(a[r:r + _ROWS].astype(np.float64), nan=0.0)
            out[r:r + _ROWS] = np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5)
        return out
    raise ValueError(f"rgb dtype must be uint8, uint16 or float, got {a.dtype}")


def release_gray(rgb: np.ndarray) -> np.ndarray:
    """Grey image exactly as the release computes it: MATLAB ``rgb2gray`` on uint8, then ``/ max``.

    Parameters
    ----------
    rgb : (H, W, 3) ndarray
        RGB image, uint8, uint16 or float in [0, 1]. Non-uint8 input is first quantised to uint8
        as MATLAB ``im2uint8`` does (round half up, saturate).

    Returns
    -------
    gray : (H, W) float32 ndarray
        ``round(0.2989 R + 0.5870 G + 0.1140 B)`` (uint8 values, MATLAB's full-precision
        coefficients) divided by its maximum, so in [0, 1] with maximum 1; all zeros when the
        image is black.

    Raises
    ------
    ValueError
        If ``rgb`` is not (H, W, 3) or has an unsupported dtype.

    Examples
    --------
    >>> release_gray(np.array([[[255, 0, 0], [255, 255, 255]]], np.uint8)) * 255
    array([[ 76., 255.]], dtype=float32)
    """
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"rgb must have shape (H, W, 3), got {a.shape}")
    u8 = _im2uint8(a)
    # imapplymatrix computes in double and rounds half away from zero into uint8 (the values
    # are integers 0..255, held as float32; computed a band of rows at a time for memory).
    gray = np.empty(u8.shape[:2], np.float32)
    for r in range(0, u8.shape[0], _ROWS):
        gray[r:r + _ROWS] = np.floor(u8[r:r + _ROWS].astype(np.float64) @ MATLAB_RGB2GRAY + 0.5)
    peak = gray.max()
    if peak == 0:
        return np.zeros(gray.shape, np.float32)
    return (gray / peak).astype(np.float32)


def _check_gray(gray: np.ndarray) -> np.ndarray:
    g = np.asarray(gray)
    if g.ndim != 2 or g.shape[0] == 0 or g.shape[1] == 0:
        raise ValueError(f"gray must have shape (H, W), got {g.shape}")
    if g.dtype.kind not in "fui":
        raise ValueError(f"gray must be a real array, got dtype {g.dtype}")
    g = g.astype(np.float64)
    if not np.isfinite(g).all():
        raise ValueError("gray must be finite, got NaN or inf values")
    if g.min() < 0:
        raise ValueError(f"gray must be non-negative (its log guides the weights), got min {g.min()}")
    return g


def _wls_matrix(gray: np.ndarray, lam: float, alpha: float, eps: float,
                log_eps: float) -> sparse.csc_matrix:
    """``Id + Lg`` of wlsFilter.m in row-major pixel order (the solution does not depend on it)."""
    h, w = gray.shape
    log_i = np.log(gray + log_eps)
    # Weight of the edge between a pixel and its neighbour below / to the right.
    wy = lam / (np.abs(np.diff(log_i, axis=0)) ** alpha + eps)
    wx = lam / (np.abs(np.diff(log_i, axis=1)) ** alpha + eps)
    right = np.zeros((h, w))
    right[:, :-1] = wx          # zero at the last column: no edge wraps to the next row
    down = np.zeros((h, w))
    down[:-1, :] = wy
    diag = 1.0 + right + down
    diag[:, 1:] += wx
    diag[1:, :] += wy
    n = h * w
    diagonals, offsets = [diag.ravel()], [0]
    # A one-pixel-wide or -high image has no x or y edges (and offsets 1 and w would coincide).
    if w > 1:
        off_x = -right.ravel()[:-1]
        diagonals += [off_x, off_x]
        offsets += [1, -1]
    if h > 1:
        off_y = -down.ravel()[:-w]
        diagonals += [off_y, off_y]
        offsets += [w, -w]
    return sparse.diags(diagonals, offsets, shape=(n, n), format="csc")


def wls_smooth(gray: np.ndarray, lam: float = 2.0, alpha: float = 2.0, eps: float = WLS_SMALL_NUM,
               *, log_eps: float = MATLAB_EPS) -> np.ndarray:
    """Weighted-least-squares edge-preserving smoothing, exactly as ``wlsFilter.m`` [2]_.

    Solves ``(Id + Lg) u = gray`` where ``Lg`` is the five-point inhomogeneous Laplacian whose
    edge weights are ``lam / (|d log(gray + log_eps)|^alpha + eps)`` along x and y.

    Parameters
    ----------
    gray : (H, W) ndarray
        Non-negative grey image, usually :func:`release_gray` (values in [0, 1]).
    lam : float
        Smoothness (wlsFilter's ``lambda``); the release uses 2.
    alpha : float
        Edge sharpness exponent; the release uses 2.
    eps : float
        wlsFilter's ``smallNum`` added to the gradient term (1e-4).
    log_eps : float, keyword-only
        Offset inside the log of the guidance: MATLAB's ``eps`` (2.2e-16) in the release.

    Returns
    -------
    smooth : (H, W) float32 ndarray
        The luminance layer ``L`` (computed in float64, returned as float32 like ``im2single``).

    Raises
    ------
    ValueError
        For a non-2-D, non-finite or negative ``gray``, or non-positive ``lam``/``eps``.

    Notes
    -----
    A sparse direct solve (SuperLU with a minimum-degree ordering of ``A + A^T``; the matrix is
    symmetric positive definite, so no pivoting is needed). Time and memory grow faster than
    the pixel count: 2.8 s CPU and 0.15 GB at 0.26 MP, 16 s and 1.1 GB at 1 MP (see
    docs/decomposition.md); use :func:`wls_smooth_fast` for whole photographs.
    """
    g = _check_gray(gray)
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if not log_eps > 0:
        raise ValueError(f"log_eps must be > 0, got {log_eps}")
    if g.size > EXACT_WARN_PIXELS:
        warnings.warn(f"exact WLS of a {g.shape[1]}x{g.shape[0]} image needs minutes and many GB "
                      f"(1.1 GB at 1 MP); use wls_smooth_fast or decompose(method='auto')",
                      stacklevel=2)
    a = _wls_matrix(g, lam, alpha, eps, log_eps)
    # Measured fastest of SuperLU's orderings on this matrix (docs/decomposition.md); scipy has no
    # sparse Cholesky, and SuperLU in symmetric mode with no pivoting behaves like one.
    lu = sparse_linalg.splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                            options={"SymmetricMode": True})
    return lu.solve(g.ravel()).reshape(g.shape).astype(np.float32)


def _fgs_guide(gray: np.ndarray, offset: float) -> np.ndarray:
    """8-bit log-luminance guide: 0..255 spread over log(255 g + offset), like wlsFilter's log."""
    v = np.clip(gray, 0.0, 1.0) * 255.0
    q = np.log1p(v / offset) / np.log1p(255.0 / offset) * 255.0
    return np.floor(q + 0.5).astype(np.uint8)


def wls_smooth_fast(gray: np.ndarray, *, fgs_lambda: float = FGS_LAMBDA,
                    sigma_color: float = FGS_SIGMA_COLOR, guide_offset: float = FGS_GUIDE_OFFSET,
                    lambda_attenuation: float = FGS_LAMBDA_ATTENUATION,
                    num_iter: int = FGS_NUM_ITER) -> np.ndarray:
    """Linear-time approximation of ``wls_smooth(gray, 2, 2)`` by the Fast Global Smoother [3]_.

    OpenCV's ``ximgproc.fastGlobalSmootherFilter`` solves the WLS problem as alternating 1-D
    tridiagonal systems with weights ``fgs_lambda * exp(-|dG| / sigma_color)`` over an 8-bit
    guide ``G``; here ``G`` is the grey image on a log scale (as the release's guidance) and the
    defaults were fitted to the exact filter at the release parameters on real SICE frames.

    Parameters
    ----------
    gray : (H, W) ndarray
        Non-negative grey image, usually :func:`release_gray` (values in [0, 1]).
    fgs_lambda, sigma_color : float, keyword-only
        FGS smoothness and guide range scale.
    guide_offset : float, keyword-only
        Guide ``G = 255 log(1 + 255 g / offset) / log(1 + 255 / offset)``; smaller values
        emphasise dark edges more.
    lambda_attenuation : float, keyword-only
        FGS: factor applied to lambda after each iteration (OpenCV's recommended 0.25).
    num_iter : int, keyword-only
        FGS iterations (OpenCV's recommended 3).

    Returns
    -------
    smooth : (H, W) float32 ndarray
        Approximate luminance layer. Measured difference to :func:`wls_smooth` on real images is
        in docs/decomposition.md.

    Raises
    ------
    ValueError
        For a non-2-D, non-finite or negative ``gray`` or a non-positive parameter.
    """
    import cv2  # heavy: imported on first use only

    g = _check_gray(gray)
    for name, value in (("fgs_lambda", fgs_lambda), ("sigma_color", sigma_color),
                        ("guide_offset", guide_offset), ("num_iter", num_iter)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if not 0 < lambda_attenuation <= 1:
        raise ValueError(f"lambda_attenuation must be in (0, 1], got {lambda_attenuation}")
    guide = _fgs_guide(g, guide_offset)
    out = cv2.ximgproc.fastGlobalSmootherFilter(guide, g.astype(np.float32), float(fgs_lambda),
                                                float(sigma_color),
                                                lambda_attenuation=float(lambda_attenuation),
                                                num_iter=int(num_iter))
    return np.asarray(out, np.float32).reshape(g.shape)


def decompose(rgb: np.ndarray, method: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey, luminance and detail layers of an image, as the release feeds its networks [1]_.

    Parameters
    ----------
    rgb : (H, W, 3) ndarray
        RGB image, uint8, uint16 or float in [0, 1].
    method : {"auto", "exact", "fast"}
        ``"exact"``: :func:`wls_smooth` (release-exact). ``"fast"``: :func:`wls_smooth_fast`.
        ``"auto"``: exact up to :data:`AUTO_EXACT_MAX_PIXELS` (1 MP), fast above.

    Returns
    -------
    gray, luminance, detail : (H, W) float32 ndarrays
        ``I = release_gray(rgb)`` in [0, 1]; ``L = WLS(I, 2, 2)`` (about [0, 1]); ``D = I - L``
        (signed, small).

    Raises
    ------
    ValueError
        For a bad image or an unknown ``method``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    gray = release_gray(rgb)
    if method == "auto":
        method = "exact" if gray.size <= AUTO_EXACT_MAX_PIXELS else "fast"
    lum = wls_smooth(gray) if method == "exact" else wls_smooth_fast(gray)
    return gray, lum, gray - lum


def aux_tensor(rgb_np: np.ndarray, method: str = "auto") -> np.ndarray:
    """``stack(L, D)``: the auxiliary input of models whose config has ``aux="luminance_detail"``.

    Parameters
    ----------
    rgb_np : (H, W, 3) ndarray
        RGB image, uint8, uint16 or float in [0, 1].
    method : {"auto", "exact", "fast"}
        See :func:`decompose`.

    Returns
    -------
    aux : (2, H, W) float32 ndarray
        Channel 0 the luminance ``L``, channel 1 the detail ``D``.
    """
    _, lum, detail = decompose(rgb_np, method)
    return np.stack([lum, detail]).astype(np.float32, copy=False)
