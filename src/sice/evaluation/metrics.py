"""Full-reference and no-reference image quality metrics used by ``sice eval``.

Every metric takes float images in [0, 1] (``(H, W, 3)`` RGB or ``(H, W)`` grey, float32 or
float64) and computes in float64. The data range is 1.0 unless a function says otherwise; the
constants of FSIM and LOE were defined by their authors on the 0-255 scale, so those two scale
their inputs by 255 internally (documented per function).

=========  ===========================  =================================================
name       compares                     definition
=========  ===========================  =================================================
psnr       output vs reference          10 log10(1 / MSE) over all pixels and channels
ssim       output vs reference          Wang et al. 2004, Gaussian 11x11 window (sigma 1.5),
                                        per channel then averaged (== scikit-image)
fsim       output vs reference          Zhang et al. 2011, as the authors' FeatureSIM.m
fsimc      output vs reference          the colour version (YIQ chroma) of the same
mae        output vs reference          mean |output - reference| over pixels and channels
loe        output vs *input*            lightness order error (Wang et al. 2013)
mef-ssim   output vs the source stack   Ma et al. 2015, :func:`sice.dataset.scoring.mef_ssim`
=========  ===========================  =================================================

and the no-reference tone figures of :mod:`sice.evaluation.tone` (white-point, black-point,
clipped-luma, black-luma, colourfulness, shadow-noise), which compare an output with its input
on the 0-255 scale.

References
----------
.. [1] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from
   error visibility to structural similarity", IEEE TIP 13(4):600-612, 2004.
.. [2] L. Zhang, L. Zhang, X. Mou, D. Zhang, "FSIM: A Feature Similarity Index for Image
   Quality Assessment", IEEE TIP 20(8):2378-2386, 2011.
.. [3] P. Kovesi, "Image features from phase congruency", Videre 1(3), 1999 (the
   ``phasecong2`` routine that FeatureSIM.m embeds).
.. [4] S. Wang, J. Zheng, H.-M. Hu, B. Li, "Naturalness Preserved Enhancement Algorithm for
   Non-Uniform Illumination Images", IEEE TIP 22(9):3538-3548, 2013 (LOE).
.. [5] K. Ma, K. Zeng, Z. Wang, "Perceptual Quality Assessment for Multi-Exposure Image
   Fusion", IEEE TIP 24(11):3345-3356, 2015 (MEF-SSIM).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import cv2
import numpy as np
import scipy.fft

from ..dataset.scoring import MefSsimReference, mef_ssim
from ..imageops import REC601
from . import tone

__all__ = [
    "psnr", "ssim", "mae", "fsim", "fsimc", "feature_similarity", "phase_congruency", "loe",
    "mef_ssim", "METRICS", "Metric", "DEFAULT_METRICS", "TONE_METRICS", "compute_metrics",
]


def _as_float64(image: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3)):
        raise ValueError(f"{name} must be (H, W) or (H, W, 3), got shape {a.shape}")
    if a.dtype.kind != "f":
        raise ValueError(f"{name} must be float in [0, 1], got dtype {a.dtype}")
    a = np.asarray(a, dtype=np.float64)  # no copy when already float64 (metrics never write)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values")
    return a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a


def _pair(image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _as_float64(image, "image")
    y = _as_float64(reference, "reference")
    if x.shape != y.shape:
        raise ValueError(f"image and reference must have the same shape, got {x.shape} and {y.shape}")
    return x, y


# ------------------------------------------------------------------------------ PSNR, MAE, SSIM

def psnr(image: np.ndarray, reference: np.ndarray, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)``.

    Parameters
    ----------
    image, reference : (H, W[, 3]) float ndarray
        In [0, ``data_range``]; the MSE is taken over all pixels and channels together.

    Returns
    -------
    float
        ``inf`` for identical images.
    """
    x, y = _pair(image, reference)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def mae(image: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute error over all pixels and channels, on the images' own scale ([0, 1])."""
    x, y = _pair(image, reference)
    return float(np.mean(np.abs(x - y)))


#: SSIM constants of [1]_ (K1, K2) and its Gaussian window (sigma 1.5, 11x11).
_SSIM_K1, _SSIM_K2, _SSIM_SIGMA, _SSIM_WIN = 0.01, 0.03, 1.5, 11


def ssim(image: np.ndarray, reference: np.ndarray, *, data_range: float = 1.0) -> float:
    """Mean structural similarity of [1]_, averaged over channels.

    The settings are exactly ``skimage.metrics.structural_similarity(image, reference,
    data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``: an 11x11 Gaussian window (sigma 1.5, truncated at 3.5
    sigma), K1 = 0.01, K2 = 0.03, population (co)variances, the SSIM map cropped by the
    window radius (5 px) on every side before averaging, each RGB channel separately and
    the three means averaged.

    Parameters
    ----------
    image, reference : (H, W[, 3]) float ndarray
        In [0, ``data_range``], at least 11x11.

    Returns
    -------
    float
        In [-1, 1]; 1 for identical images.
    """
    x, y = _pair(image, reference)
    if min(x.shape[:2]) < _SSIM_WIN:
        raise ValueError(f"image must be at least {_SSIM_WIN}x{_SSIM_WIN} for SSIM, got {x.shape[:2]}")
    return _ssim_with(x, _ssim_stats(y), data_range)


def _ssim_blur(a: np.ndarray) -> np.ndarray:
    # OpenCV's separable blur (all channels in one call) is ~10x faster than scipy.ndimage and
    # uses the same normalised 11-tap kernel; the border mode does not matter because the
    # border is cropped before averaging.
    return cv2.GaussianBlur(a, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def _ssim_stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference-side part of SSIM: the image, its local means and local second moments."""
    return y, _ssim_blur(y), _ssim_blur(y * y)


def _ssim_with(x: np.ndarray, stats: tuple, data_range: float = 1.0) -> float:
    y, my, yy = stats
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    pad = (_SSIM_WIN - 1) // 2
    inner = (slice(pad, -pad), slice(pad, -pad))
    # Only the cropped interior is averaged, so the per-pixel algebra is done there only, in
    # place (these are the hot arrays of an evaluation run).
    mx = _ssim_blur(x)[inner]
    sxx = _ssim_blur(x * x)[inner]
    sxy = _ssim_blur(x * y)[inner]
    my, yy = my[inner], yy[inner]
    mxy = mx * my
    mx2 = np.square(mx, out=mx)
    my2 = my * my
    num = np.multiply(mxy, 2, out=np.empty_like(mxy))
    num += c1
    den = mx2 + my2
    den += c1
    # 2 cov + c2 = 2 (sxy - mxy) + c2 ; var_x + var_y + c2 = sxx - mx2 + yy - my2 + c2
    cov = np.subtract(sxy, mxy, out=sxy)
    cov *= 2
    cov += c2
    num *= cov
    var = np.subtract(sxx, mx2, out=sxx)
    var += yy
    var -= my2
    var += c2
    den *= var
    num /= den
    # Mean per channel, then over channels (scikit-image's channel_axis handling).
    return float(num.reshape(-1, 1 if num.ndim == 2 else num.shape[2]).mean(axis=0).mean())


# ------------------------------------------------------------------------------------- FSIM

#: FSIM constants of [2]_ for 0-255 images (FeatureSIM.m): T1 (phase congruency), T2
#: (gradient), T3/T4 (I and Q chroma), lambda (chroma exponent).
FSIM_T1, FSIM_T2, FSIM_T3, FSIM_T4, FSIM_LAMBDA = 0.85, 160.0, 200.0, 200.0, 0.03

# phasecong2 parameters as fixed inside FeatureSIM.m.
_PC_NSCALE, _PC_NORIENT, _PC_MIN_WAVELENGTH, _PC_MULT = 4, 4, 6.0, 2.0
_PC_SIGMA_ONF, _PC_K, _PC_EPS = 0.55, 2.0, 1e-4


def _matlab_round(x: float) -> int:
    # MATLAB rounds halves away from zero; Python's round() rounds them to even (2.5 -> 2).
    return int(math.floor(x + 0.5))


def _fsim_downsample(channel: np.ndarray, f: int) -> np.ndarray:
    """``conv2(x, fspecial('average', f), 'same')`` then ``x(1:f:end, 1:f:end)``, per channel.

    MATLAB's 'same' window covers ``i - (f - 1 - f // 2) .. i + f // 2`` with zero padding,
    which is OpenCV's box filter anchored at ``f - 1 - f // 2`` with a constant 0 border.
    """
    if f == 1:
        return channel
    a = f - 1 - f // 2
    avg = cv2.boxFilter(channel, cv2.CV_64F, (f, f), anchor=(a, a), normalize=True,
                        borderType=cv2.BORDER_CONSTANT)
    return avg[::f, ::f]


def _freq_grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised frequency coordinates of phasecong2 (odd and even sizes as in the .m file)."""
    def rng(n):
        if n % 2:
            return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1) if n > 1 else np.zeros(1)
        return np.arange(-n / 2, n / 2) / n

    return np.meshgrid(rng(cols), rng(rows))


def _pc_filter_bank(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The log-Gabor filters of phasecong2 for one image size, and per orientation the factor
    turning ``sqrt(noise power)`` into the noise threshold T.

    Both depend on the size only: callers that compare several images of one size build them
    once and pass them on (:func:`_filter_banks`). Returns ``filters`` (O, S, H, W) and
    ``t_factor`` (O,).
    """
    x, y = _freq_grid(rows, cols)
    radius = np.fft.ifftshift(np.sqrt(x**2 + y**2))
    theta = np.fft.ifftshift(np.arctan2(-y, x))
    radius[0, 0] = 1.0  # avoid log(0); the DC value of every filter is set to 0 below
    sintheta, costheta = np.sin(theta), np.cos(theta)
    lowpass = np.fft.ifftshift(1.0 / (1.0 + (np.sqrt(x**2 + y**2) / 0.45) ** (2 * 15)))
    log_gabor = np.empty((_PC_NSCALE, rows, cols))
    for s in range(_PC_NSCALE):
        fo = 1.0 / (_PC_MIN_WAVELENGTH * _PC_MULT**s)
        lg = np.exp(-(np.log(radius / fo)) ** 2 / (2 * math.log(_PC_SIGMA_ONF) ** 2)) * lowpass
        lg[0, 0] = 0.0
        log_gabor[s] = lg
    theta_sigma = math.pi / _PC_NORIENT / 1.2
    filters = np.empty((_PC_NORIENT, _PC_NSCALE, rows, cols))
    t_factor = np.empty(_PC_NORIENT)
    for o in range(_PC_NORIENT):
        angl = o * math.pi / _PC_NORIENT
        ds = sintheta * math.cos(angl) - costheta * math.sin(angl)
        dc = costheta * math.cos(angl) + sintheta * math.sin(angl)
        filters[o] = log_gabor * np.exp(-np.arctan2(ds, dc) ** 2 / (2 * theta_sigma**2))
        # Noise model of phasecong2: E[noise energy^2] = noise_power * (2 sum_s |f_s|^2 +
        # 4 sum_{i<j} f_i f_j) with f_s the spatial filters; T = (mean + k sigma) of the
        # Rayleigh distribution it implies, divided by 1.7 (empirical, for the PC_2 measure).
        ifft_filt = np.real(scipy.fft.ifft2(filters[o], axes=(-2, -1))) * math.sqrt(rows * cols)
        total = ifft_filt.sum(0)
        sum_an2 = float(np.sum(ifft_filt**2))
        sum_aiaj = (float(np.sum(total**2)) - sum_an2) / 2  # sum over pairs i < j
        em_n = float(np.sum(filters[o, 0] ** 2))
        k2 = (2 * sum_an2 + 4 * sum_aiaj) / em_n
        tau_per_sqrt_power = math.sqrt(max(k2, 0.0) / 2)
        t_factor[o] = tau_per_sqrt_power * (
            math.sqrt(math.pi / 2) + _PC_K * math.sqrt(2 - math.pi / 2)) / 1.7
    filters.setflags(write=False)
    return filters, t_factor


def _filter_banks(banks: dict, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_pc_filter_bank` of one size, built once into ``banks`` (size -> bank), a dict
    that the caller keeps while it compares images (0.2-0.4 s saved per image)."""
    if (rows, cols) not in banks:
        banks[rows, cols] = _pc_filter_bank(rows, cols)
    return banks[rows, cols]


def phase_congruency(grey: np.ndarray, *, filter_banks: dict | None = None) -> np.ndarray:
    """Phase congruency map of Kovesi [3]_ with the exact parameters of FeatureSIM.m [2]_.

    4 scales (minimum wavelength 6, factor 2, sigma_onf 0.55) x 4 orientations of log-Gabor
    filters applied in the Fourier domain, noise compensation with k = 2 from the median
    response at the smallest scale, the empirical /1.7 rescaling of the noise threshold, and
    the ``PC_2`` energy measure. This is a port of the ``phasecong2`` function embedded in
    FeatureSIM.m, vectorised over scales (no maintained Python library implements this
    variant: phasepack's ``phasecong`` differs in weighting and noise handling).

    Parameters
    ----------
    grey : (H, W) float ndarray
        Any scale (phase congruency is invariant to contrast and offset).
    filter_banks : dict, optional
        Where the filters of each image size are kept between calls (image size -> filters);
        None builds them for this call only.

    Returns
    -------
    (H, W) float64 ndarray
        In [0, 1]; 0 (not NaN) where no filter responds.
    """
    im = np.asarray(grey, dtype=np.float64)
    rows, cols = im.shape
    filters, t_factor = _filter_banks({} if filter_banks is None else filter_banks, rows, cols)
    imagefft = scipy.fft.fft2(im)
    energy_all = np.zeros((rows, cols))
    an_all = np.zeros((rows, cols))
    for o in range(_PC_NORIENT):
        eo = scipy.fft.ifft2(imagefft[None] * filters[o], axes=(-2, -1))
        e, od = eo.real, eo.imag
        an = np.abs(eo)
        sum_an = an.sum(0)
        sum_e = e.sum(0)
        sum_o = od.sum(0)
        x_energy = np.sqrt(sum_e**2 + sum_o**2) + _PC_EPS
        mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
        energy = (e * mean_e + od * mean_o - np.abs(e * mean_o - od * mean_e)).sum(0)
        # Noise power from the median squared response at the smallest scale (a chi-squared
        # 2-dof variable, so mean = -median / log(0.5)).
        mean_e2n = -float(np.median(an[0] ** 2)) / math.log(0.5)
        t = t_factor[o] * math.sqrt(mean_e2n)
        energy_all += np.maximum(energy - t, 0.0)
        an_all += sum_an
    with np.errstate(invalid="ignore", divide="ignore"):
        pc = energy_all / an_all
    return np.nan_to_num(pc, nan=0.0, posinf=0.0)


#: FeatureSIM.m's YIQ matrix; its Y row is Rec. 601 luma.
_YIQ = np.array([REC601, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_SCHARR_X = np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], dtype=np.float64) / 16.0


def feature_similarity(image: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """FSIM and FSIMc of [2]_, exactly as the authors' FeatureSIM.m.

    Steps: scale to 0-255; luma/chroma Y, I, Q (FeatureSIM.m's YIQ matrix); average-filter and
    subsample every channel by ``F = max(1, round(min(H, W) / 256))`` (MATLAB rounding, zero
    padding, see :func:`_fsim_downsample`); phase congruency of Y (:func:`phase_congruency`);
    gradient magnitude of Y with the Scharr kernels /16 (zero padding); similarity maps with
    T1 = 0.85, T2 = 160, T3 = T4 = 200, lambda = 0.03; pooled with ``max(PC1, PC2)``.

    Parameters
    ----------
    image, reference : (H, W[, 3]) float ndarray
        In [0, 1]. Grey input gives FSIMc == FSIM.

    Returns
    -------
    (fsim, fsimc) : tuple of float
        In [0, 1], 1 for identical images; NaN when neither image has any phase
        congruency (both flat), as the division in FeatureSIM.m is then 0 / 0.
    """
    x, y = _pair(image, reference)
    banks: dict = {}  # both images have one size: one filter bank
    y1, i1, q1, pc1, g1 = _fsim_features(x, banks)
    y2, i2, q2, pc2, g2 = _fsim_features(y, banks)
    return _fsim_combine((i1, q1, pc1, g1), (i2, q2, pc2, g2))


def _fsim_features(a: np.ndarray, filter_banks: dict) -> tuple:
    """Per-image part of FSIM: downsampled Y, I, Q (0-255), phase congruency and gradient of Y.

    Split out so that one reference's features serve every method compared with it.
    """
    rows, cols = a.shape[:2]
    f = max(1, _matlab_round(min(rows, cols) / 256))
    # Averaging and subsampling are linear and per channel, so they commute with the per-pixel
    # YIQ matrix: filter the RGB planes first, then convert the small image.
    small = _fsim_downsample(a * 255.0, f)
    if small.ndim == 2:
        y, i, q = small, None, None
    else:
        yiq = small @ _YIQ.T
        y, i, q = (np.ascontiguousarray(yiq[..., k]) for k in range(3))
    gx = cv2.filter2D(y, cv2.CV_64F, _SCHARR_X, borderType=cv2.BORDER_CONSTANT)
    gy = cv2.filter2D(y, cv2.CV_64F, _SCHARR_X.T, borderType=cv2.BORDER_CONSTANT)
    return y, i, q, phase_congruency(y, filter_banks=filter_banks), np.sqrt(gx**2 + gy**2)


def _fsim_combine(first: tuple, second: tuple) -> tuple[float, float]:
    """FSIM and FSIMc from two :func:`_fsim_features` results (without their Y)."""
    (i1, q1, pc1, g1), (i2, q2, pc2, g2) = first, second
    s_pc = (2 * pc1 * pc2 + FSIM_T1) / (pc1**2 + pc2**2 + FSIM_T1)
    s_g = (2 * g1 * g2 + FSIM_T2) / (g1**2 + g2**2 + FSIM_T2)
    pcm = np.maximum(pc1, pc2)
    denom = float(pcm.sum())
    if denom == 0:
        return math.nan, math.nan
    s_l = s_g * s_pc * pcm
    fsim_value = float(s_l.sum() / denom)
    if i1 is None or i2 is None:
        return fsim_value, fsim_value
    s_i = (2 * i1 * i2 + FSIM_T3) / (i1**2 + i2**2 + FSIM_T3)
    s_q = (2 * q1 * q2 + FSIM_T4) / (q1**2 + q2**2 + FSIM_T4)
    sc = s_i * s_q
    # MATLAB's real((negative)^lambda) = |z|^lambda cos(lambda pi); NumPy would give NaN.
    chroma = np.abs(sc) ** FSIM_LAMBDA * np.where(sc < 0, math.cos(FSIM_LAMBDA * math.pi), 1.0)
    fsimc_value = float((s_l * chroma).sum() / denom)
    return fsim_value, fsimc_value


def fsim(image: np.ndarray, reference: np.ndarray) -> float:
    """FSIM of [2]_ (luminance only); see :func:`feature_similarity`."""
    return feature_similarity(image, reference)[0]


def fsimc(image: np.ndarray, reference: np.ndarray) -> float:
    """FSIMc of [2]_ (with YIQ chroma); see :func:`feature_similarity`."""
    return feature_similarity(image, reference)[1]


# -------------------------------------------------------------------------------------- LOE

#: Target length of the shorter side for LOE's subsampling (pairwise order is quadratic).
LOE_SIDE = 100


def loe(image: np.ndarray, original: np.ndarray, *, side: int = LOE_SIDE) -> float:
    """Lightness order error of [4]_: how much an enhancement changes the brightness order.

    Lightness is ``round(255 * max(R, G, B))`` (integers 0..255, as in the authors' LOE.m).
    Both images are subsampled by taking every ``step``-th pixel, ``step = max(1,
    floor(min(H, W) / side))``, starting at pixel ``step - 1`` (MATLAB's ``i*step``), so the
    shorter side has about ``side`` = 100 pixels (as in LIME's evaluation). Then
    ``LOE = mean_x sum_y [L(y) >= L(x)] xor [Le(y) >= Le(x)]`` over the subsampled pixels.

    Parameters
    ----------
    image : (H, W[, 3]) float ndarray
        The enhanced image, in [0, 1].
    original : (H, W[, 3]) float ndarray
        The input it was made from (LOE compares with the input, not with a reference).
    side : int
        Target shorter side of the subsampled grid.

    Returns
    -------
    float
        >= 0; 0 when the order of all lightness values is kept (any increasing tone curve).
    """
    x, y = _pair(image, original)
    if side < 1:
        raise ValueError(f"side must be >= 1, got {side}")

    step = max(1, min(x.shape[:2]) // side)

    def lightness(a):
        a = a[step - 1::step, step - 1::step]  # subsample first: the same pixels, far less work
        m = a if a.ndim == 2 else a.max(axis=2)
        return np.clip(np.floor(m * 255.0 + 0.5), 0, 255).astype(np.intp).ravel()

    le = lightness(x)
    lo = lightness(y)
    # Written by hand because no library counts order flips: with 256 integer levels the
    # O(N^2) pair count of LOE.m becomes O(N + 256^2) with a 2-D histogram and suffix sums.
    # For pixel x: flips = #{L >= Lx} + #{Le >= Lex} - 2 #{L >= Lx and Le >= Lex}.
    hist = np.bincount(lo * 256 + le, minlength=256 * 256).reshape(256, 256)
    both = hist[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]
    ge_o = both[:, 0]
    ge_e = both[0, :]
    flips = ge_o[lo] + ge_e[le] - 2 * both[lo, le]
    return float(flips.mean())


# ---------------------------------------------------------------------------- metric table

@dataclasses.dataclass(frozen=True)
class Metric:
    """One row of :data:`METRICS`.

    Attributes
    ----------
    needs : str
        ``"reference"`` (full-reference: fn(output, reference)), ``"input"`` (fn(output,
        input)) or ``"stack"`` (fn(output, frames)).
    higher_is_better : bool
        Direction, for the report's arrows.
    """

    fn: Callable
    needs: str
    higher_is_better: bool
    description: str


METRICS: dict[str, Metric] = {
    "psnr": Metric(psnr, "reference", True, "PSNR in dB, data range 1.0, RGB"),
    "ssim": Metric(ssim, "reference", True, "SSIM, Gaussian 11x11 sigma 1.5, per RGB channel, averaged"),
    "fsim": Metric(fsim, "reference", True, "FSIM (Zhang et al. 2011), luminance"),
    "fsimc": Metric(fsimc, "reference", True, "FSIMc (Zhang et al. 2011), YIQ chroma"),
    "mae": Metric(mae, "reference", False, "mean absolute error, [0, 1] scale, RGB"),
    "loe": Metric(loe, "input", False, "lightness order error against the input (Wang et al. 2013)"),
    "mef-ssim": Metric(mef_ssim, "stack", True, "MEF-SSIM against the scene's whole stack (Ma et al. 2015)"),
    "white-point": Metric(tone.white_point, "input", True,
                          "white point: 99.5th percentile of output luma, 0-255"),
    "black-point": Metric(tone.black_point, "input", False,
                          "black point: 0.5th percentile of output luma, 0-255"),
    "clipped-luma": Metric(tone.clipped_luma, "input", True,
                           "mean output luma where the input is clipped (every channel >= 250), 0-255"),
    "black-luma": Metric(tone.black_luma, "input", False,
                         "mean output luma where the input is black (every channel <= 2), 0-255"),
    "colourfulness": Metric(tone.colourfulness_ratio, "input", True,
                            "Hasler-Suesstrunk colourfulness, output / input"),
    "shadow-noise": Metric(tone.shadow_noise, "input", False,
                           "chroma noise in the input's darkest quarter (robust std of high-passed CbCr), 0-255"),
}

#: The no-reference tone figures (:mod:`sice.evaluation.tone`).
TONE_METRICS = ("white-point", "black-point", "clipped-luma", "black-luma", "colourfulness", "shadow-noise")
#: Metrics computed when ``sice eval`` is not told otherwise (MEF-SSIM reads whole stacks).
DEFAULT_METRICS = ("psnr", "ssim", "fsim", "fsimc", "mae", "loe") + TONE_METRICS


def compute_metrics(output: np.ndarray, names: Sequence[str], *, reference: np.ndarray | None = None,
                    original: np.ndarray | None = None,
                    frames: Sequence[np.ndarray] | None = None,
                    memo: dict | None = None) -> dict[str, float | str]:
    """Evaluate several metrics of one output; FSIM and FSIMc share one computation.

    ``memo`` (a dict the caller keeps while ``reference`` stays the same object) holds the
    reference's FSIM features, FSIM's filter bank and SSIM statistics, and the stack's side of MEF-SSIM while
    ``frames`` stays the same object, so that scoring several methods against one reference
    computes its phase congruency and local moments once, and the stack's part once.

    Returns
    -------
    dict
        name -> value, or name -> a string saying why it could not be computed (no reference,
        no stack, failure), so that a report never drops a score silently.
    """
    if memo is not None and memo.get("reference") is not reference:
        # Holding the reference object also keeps its id from being reused by another array.
        memo.clear()
        memo["reference"] = reference
    # Convert once: every metric then works on the same float64 arrays without copying.
    output = _as_float64(output, "output")
    reference = None if reference is None else _as_float64(reference, "reference")
    original = None if original is None else _as_float64(original, "original")
    given = {"reference": reference, "input": original, "stack": frames}
    scores: dict[str, float | str] = {}
    fs: tuple[float, float] | None = None
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
        metric = METRICS[name]
        other = given[metric.needs]
        if other is None:
            scores[name] = f"no {metric.needs}"
            continue
        try:
            if name == "ssim" and memo is not None:
                x, y = _pair(output, other)
                if min(x.shape[:2]) < _SSIM_WIN:
                    raise ValueError(f"image must be at least {_SSIM_WIN}x{_SSIM_WIN} for SSIM")
                scores[name] = _ssim_with(x, _memo(memo, "ssim", lambda: _ssim_stats(y)))
            elif name == "mef-ssim" and memo is not None:
                if memo.get("frames") is not other:
                    # Holding the frames object keeps its id from being reused, as for the reference.
                    memo["frames"], memo["mef-ssim"] = other, MefSsimReference(other)
                scores[name] = memo["mef-ssim"].score(output)
            elif name in ("fsim", "fsimc"):
                if fs is None:
                    x, y = _pair(output, other)
                    banks = _memo(memo, "fsim-filters", dict)
                    ref_features = _memo(memo, "fsim", lambda: _fsim_features(y, banks)[1:])
                    fs = _fsim_combine(_fsim_features(x, banks)[1:], ref_features)
                scores[name] = fs[0] if name == "fsim" else fs[1]
            else:
                scores[name] = float(metric.fn(output, other))
        except (ValueError, RuntimeError) as exc:
            scores[name] = f"error: {exc}"
    return scores


def _memo(memo: dict | None, key, make):
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return memo[key]
