"""Classic (non-learned) contrast enhancement baselines that papers compare with.

Each baseline is ``fn(image) -> image``: ``image`` is (H, W, 3) RGB float in [0, 1] and the
result is float32 of the same shape, clipped to [0, 1]. :data:`BASELINES` maps the names that
``sice eval --methods`` accepts to these functions.

=========  ====================================================================================
name       what
=========  ====================================================================================
identity   the input itself (the "do nothing" row of every table)
he         global histogram equalisation of Y in YCrCb (256 bins); Cr, Cb kept
clahe      CLAHE (OpenCV, clip limit 2.0, 8x8 tiles, 8-bit L) on L of CIE Lab; a, b kept
gamma      global gamma chosen so that the mean Rec. 601 luma becomes 0.5 (brightens dark
           photos, darkens over-exposed ones)
lime       LIME (Guo et al. 2017): max-RGB illumination, structure-aware refinement with the
           sped-up solver, gamma 0.8; no denoising
msrcr      multi-scale retinex with colour restoration (Jobson et al. 1997), as in Petro et
           al. (IPOL 2014), with simplest colour balance
=========  ====================================================================================

References
----------
.. [1] X. Guo, Y. Li, H. Ling, "LIME: Low-Light Image Enhancement via Illumination Map
   Estimation", IEEE TIP 26(2):982-993, 2017.
.. [2] D. J. Jobson, Z. Rahman, G. A. Woodell, "A multiscale retinex for bridging the gap
   between color images and the human observation of scenes", IEEE TIP 6(7):965-976, 1997.
.. [3] A. B. Petro, C. Sbert, J.-M. Morel, "Multiscale Retinex", Image Processing On Line 4,
   pp. 71-88, 2014.
.. [4] K. Zuiderveld, "Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV,
   pp. 474-485, 1994.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from ..imageops import checked_rgb, luminance, resize_long_side

__all__ = ["identity", "histogram_equalization", "clahe", "auto_gamma", "lime", "msrcr", "BASELINES"]


def _check(image: np.ndarray) -> np.ndarray:
    return checked_rgb(image, "image")


def _finish(out: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32, copy=False)


def identity(image: np.ndarray) -> np.ndarray:
    """The input, unchanged (clipped to [0, 1], float32)."""
    return _check(image).copy()


def histogram_equalization(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of the luma, colour kept.

    RGB -> YCrCb (OpenCV, Rec. 601), Y quantised to 8 bit and equalised with
    ``cv2.equalizeHist`` (256 bins, the classic textbook mapping), Cr and Cb unchanged,
    back to RGB.
    """
    rgb = _check(image)
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    y8 = np.clip(ycc[..., 0] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ycc[..., 0] = cv2.equalizeHist(y8).astype(np.float32) / 255.0
    return _finish(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB))


#: CLAHE settings: OpenCV's default of 40 is far stronger than what papers show; 2.0 with an
#: 8x8 tile grid is the setting most comparisons use.
CLAHE_CLIP_LIMIT, CLAHE_TILES = 2.0, (8, 8)


def clahe(image: np.ndarray, *, clip_limit: float = CLAHE_CLIP_LIMIT,
          tiles: tuple[int, int] = CLAHE_TILES) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation [4]_ of L in CIE Lab.

    L (0..100 from OpenCV's float conversion) is quantised to 8 bit (0..255), equalised by
    ``cv2.createCLAHE(clip_limit, tiles)`` and mapped back; a and b are kept. 8 bit on
    purpose: OpenCV's clip limit is relative to the bin count, and with 65536 bins of a
    16-bit L every bin is clipped to ~1 count, which makes CLAHE a no-op.
    """
    rgb = _check(image)
    if clip_limit <= 0:
        raise ValueError(f"clip_limit must be > 0, got {clip_limit}")
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    l8 = np.clip(lab[..., 0] * (255.0 / 100.0) + 0.5, 0, 255).astype(np.uint8)
    out = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(tiles)).apply(l8)
    lab[..., 0] = out.astype(np.float32) * (100.0 / 255.0)
    return _finish(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB))


#: Target mean luma of :func:`auto_gamma` and the range its exponent is kept in.
GAMMA_TARGET, GAMMA_RANGE = 0.5, (1 / 10, 10.0)


def auto_gamma(image: np.ndarray, *, target: float = GAMMA_TARGET) -> np.ndarray:
    """Global gamma ``out = in ** g`` per channel with ``g`` such that the mean luma is ``target``.

    The rule: ``g`` solves ``mean(Y ** g) = target`` exactly (Y the Rec. 601 luma of the
    input; the mean is monotone in ``g``, so a bracketing root finder is used), not the
    cruder ``g = log(target) / log(mean(Y))``. Dark photos get ``g < 1`` (brighter), over-exposed
    ones ``g > 1`` (darker). ``g`` is kept in [0.1, 10]; a black or white image is returned
    unchanged.
    """
    rgb = _check(image)
    if not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1), got {target}")
    g = gamma_for_mean(rgb, target)
    return _finish(np.power(rgb, np.float32(g)))


def gamma_for_mean(image: np.ndarray, target: float = GAMMA_TARGET) -> float:
    """The exponent of :func:`auto_gamma` (1.0 when the luma is constant 0 or 1)."""
    import scipy.optimize

    y = luminance(image).ravel()
    # A regular subsample is enough to fix the mean to ~1e-3 and keeps this cheap on 24 MP.
    y = y[:: max(1, y.size // 65536)].astype(np.float64)
    y = y[(y > 0) & (y < 1)] if np.any((y > 0) & (y < 1)) else y
    lo, hi = GAMMA_RANGE

    def f(g):
        return float(np.mean(y**g)) - target

    if y.size == 0 or np.all(y <= 0) or np.all(y >= 1):
        return 1.0
    if f(lo) <= 0:
        return lo
    if f(hi) >= 0:
        return hi
    return float(scipy.optimize.brentq(f, lo, hi, xtol=1e-6))


# ------------------------------------------------------------------------------------ LIME

#: LIME parameters of [1]_ (Sec. IV): alpha (smoothness), gamma (illumination correction),
#: eps of the weights, sigma and size of the Gaussian of weight strategy III.
LIME_ALPHA, LIME_GAMMA, LIME_EPS, LIME_SIGMA, LIME_KSIZE = 0.15, 0.8, 1e-3, 2.0, 5
#: Longest side at which LIME's sparse system is solved: the illumination is smooth by
#: construction, and a direct sparse solve grows as n^1.5 (512x512: ~3 s, 256x256: ~0.4 s).
LIME_SOLVE_SIDE = 256


def lime_illumination(t_hat: np.ndarray, *, alpha: float = LIME_ALPHA, eps: float = LIME_EPS,
                      sigma: float = LIME_SIGMA, ksize: int = LIME_KSIZE) -> np.ndarray:
    """Refined illumination map T of LIME [1]_ (sped-up solver, weight strategy III).

    Solves ``(I + sum_d D_d^T diag(w_d) D_d) t = t_hat`` (Eq. 19 of [1]_), d in {x, y} forward
    differences with zero flux at the far border, ``w_d = alpha * W_d / (|D_d t_hat| + eps)``
    and ``W_d = 1 / (|G_sigma * D_d t_hat| + eps)`` (strategy III, Gaussian ``ksize`` x
    ``ksize``, ``sigma``). The five-point system is symmetric positive definite and solved
    directly with SciPy's sparse LU.

    Parameters
    ----------
    t_hat : (H, W) float ndarray
        Initial illumination, ``max_c L_c`` in [0, 1].

    Returns
    -------
    (H, W) float64 ndarray
    """
    t_hat = np.asarray(t_hat, dtype=np.float64)
    h, w = t_hat.shape
    dx = np.zeros_like(t_hat)
    dy = np.zeros_like(t_hat)
    dx[:, :-1] = t_hat[:, 1:] - t_hat[:, :-1]
    dy[:-1] = t_hat[1:] - t_hat[:-1]
    g = cv2.getGaussianKernel(ksize, sigma)
    gx = cv2.sepFilter2D(dx, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
    gy = cv2.sepFilter2D(dy, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
    wx = alpha / ((np.abs(gx) + eps) * (np.abs(dx) + eps))
    wy = alpha / ((np.abs(gy) + eps) * (np.abs(dy) + eps))
    wx[:, -1] = 0.0  # no difference leaves the image
    wy[-1, :] = 0.0
    wxf, wyf = wx.ravel(), wy.ravel()
    diag = 1.0 + wxf + wyf
    diag[1:] += wxf[:-1]
    diag[w:] += wyf[:-w]
    a = scipy.sparse.diags([diag, -wxf[:-1], -wxf[:-1], -wyf[:-w], -wyf[:-w]], [0, 1, -1, w, -w],
                           shape=(h * w, h * w), format="csc")
    # MMD on A^T + A is the fill-reducing ordering for a symmetric 5-point matrix (faster
    # than the default COLAMD here).
    t = scipy.sparse.linalg.spsolve(a, t_hat.ravel(), permc_spec="MMD_AT_PLUS_A")
    return np.asarray(t).reshape(h, w)


def lime(image: np.ndarray, *, alpha: float = LIME_ALPHA, gamma: float = LIME_GAMMA,
         solve_side: int | None = LIME_SOLVE_SIDE) -> np.ndarray:
    """LIME low-light enhancement [1]_: ``R = L / T**gamma`` per channel.

    1. ``t_hat = max(R, G, B)`` (Eq. 2).
    2. Structure-aware refinement by :func:`lime_illumination` (sped-up solver, strategy III,
       alpha 0.15, sigma 2, eps 1e-3). When the longest side exceeds ``solve_side`` it is
       solved on an INTER_AREA-downscaled ``t_hat`` and the result resized back bilinearly
       (our choice, for speed; ``solve_side=None`` solves at full size).
    3. Gamma correction of the illumination, ``T ** 0.8``; ``T`` is floored at ``eps`` and
       the result clipped to [0, 1].

    The optional BM3D denoising step of [1]_ is omitted (no maintained BM3D in our stack;
    comparisons usually run LIME without it). LIME only brightens: over-exposed input stays
    as it is or gets brighter.
    """
    rgb = _check(image)
    h, w = rgb.shape[:2]
    t_hat = rgb.max(axis=2)
    if solve_side is not None and max(h, w) > solve_side:
        small = resize_long_side(t_hat, solve_side)
        t = cv2.resize(lime_illumination(small, alpha=alpha).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_LINEAR)
    else:
        t = lime_illumination(t_hat, alpha=alpha).astype(np.float32)
    t = np.maximum(t, LIME_EPS) ** np.float32(gamma)
    return _finish(rgb / t[..., None])


# ----------------------------------------------------------------------------------- MSRCR

#: MSRCR parameters of [2]_ as given in [3]_: scales, colour restoration alpha/beta, gain G,
#: offset b, and the saturation of the simplest colour balance (1 % at each end).
MSRCR_SCALES, MSRCR_ALPHA, MSRCR_BETA, MSRCR_GAIN, MSRCR_OFFSET = (15.0, 80.0, 250.0), 125.0, 46.0, 192.0, -30.0
MSRCR_CLIP = 0.01


def _gaussian_surround(log_free: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (H, W, 3) with a large sigma, computed on a down-scaled copy.

    A sigma of 250 px needs a ~1500-tap kernel; blurring a copy down-scaled so that sigma
    becomes ~8 px and resizing back is within ~1 % and two orders of magnitude faster.
    """
    h, w = log_free.shape[:2]
    f = max(1.0, sigma / 8.0)
    if f <= 1.0:
        return cv2.GaussianBlur(log_free, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(log_free, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def msrcr(image: np.ndarray, *, scales: tuple[float, ...] = MSRCR_SCALES) -> np.ndarray:
    """Multi-scale retinex with colour restoration [2]_ [3]_.

    On the 0-255 scale: ``MSR_c = mean_s [log(I_c + 1) - log(G_s * I_c + 1)]`` over the
    scales (15, 80, 250 px, measured on the image as given), ``CR_c = beta (log(alpha I_c + 1)
    - log(sum_c I_c + 1))`` with alpha = 125, beta = 46, ``MSRCR = G (MSR * CR + b)`` with
    G = 192, b = -30, then the simplest colour balance of [3]_: each channel stretched so that
    1 % of its pixels saturate at each end. Large-sigma blurs are computed on a down-scaled copy
    (:func:`_gaussian_surround`).
    """
    rgb = _check(image)
    i = rgb.astype(np.float32) * 255.0
    log_i = np.log1p(i)
    msr = np.zeros_like(i)
    for s in scales:
        msr += log_i - np.log1p(_gaussian_surround(i, float(s)))
    msr /= len(scales)
    cr = MSRCR_BETA * (np.log1p(MSRCR_ALPHA * i) - np.log1p(i.sum(axis=2, keepdims=True)))
    out = MSRCR_GAIN * (msr * cr + MSRCR_OFFSET)
    res = np.empty_like(out)
    for c in range(3):
        lo, hi = np.quantile(out[..., c], [MSRCR_CLIP, 1 - MSRCR_CLIP])
        res[..., c] = (out[..., c] - lo) / (hi - lo) if hi > lo else 0.5
    return _finish(res)


#: name -> baseline; the table that feeds ``sice eval --methods``.
BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": identity,
    "he": histogram_equalization,
    "clahe": clahe,
    "gamma": auto_gamma,
    "lime": lime,
    "msrcr": msrcr,
}
