"""Scores for candidate references: MEF-SSIM against the source stack, and simple statistics.

MEF-SSIM (Ma, Zeng and Wang 2015) [1]_ judges a fused image against the exposure stack it came
from, without a reference image: for every 11x11 neighbourhood it builds a "desired" patch from
the source patches (the strongest contrast among them, with a structure that is the weighted
mean of their structures) and compares the fused patch's structure with it by the contrast-
structure term of SSIM (the mean-luminance term is left out, as the fused brightness is free).

No maintained package implements it; this follows the authors' MATLAB release ``mef_ssim.m``
(single-scale core ``mef_ssim_scale`` repeated at 3 scales), vectorised. Choices:

- grey images: Rec. 601 luma of the RGB frames (MATLAB ``rgb2gray`` without its rounding to
  8 bits), scaled to [0, 255] so that the constants of the release apply unchanged:
  C2 = (0.03 * 255)^2 and the 0.001 added to the signal strengths;
- 11x11 box window for the source patches' means and signal strengths, 11x11 Gaussian window
  (sigma 1.5) for the comparison, both over 'valid' positions only (no border padding);
- structure weights ``(strength / 11) ** p`` with ``p = tan(pi R / 2)`` (capped at 10), R the
  structural consistency of the source patches, as in the release;
- 3 scales (2x2 mean then subsampling, as ``imfilter(..., ones(2)/4, 'symmetric')`` then
  ``(1:2:end)``), combined as the product of the per-scale scores raised to the normalised
  MS-SSIM exponents (0.0448, 0.2856, 0.3001); ``levels=1`` gives the single-scale score.

Every window's sums over patches are expanded into per-pixel cross moments of the frames
(box- or Gaussian-filtered products), so the score costs O(K^2) image filters for K frames
instead of a loop over windows; the part that depends on the stack only is computed once by
:class:`MefSsimReference`, which a caller scoring many images of one stack keeps (the dataset
builder scores ~15 candidates of each stack with one).

References
----------
.. [1] K. Ma, K. Zeng, Z. Wang, "Perceptual quality assessment for multi-exposure image fusion",
   IEEE Trans. Image Process. 24(11):3345-3356, 2015. doi:10.1109/TIP.2015.2442920
.. [2] D. Hasler, S. Suesstrunk, "Measuring colourfulness in natural images", Proc. SPIE 5007,
   Human Vision and Electronic Imaging VIII, pp. 87-95, 2003. doi:10.1117/12.477378
.. [3] E. Peli, "Contrast in complex images", J. Opt. Soc. Am. A 7(10):2032-2040, 1990.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..imageops import luminance, resize_long_side

__all__ = ["mef_ssim", "MefSsimReference", "image_statistics"]

#: Constants of the authors' release (mef_ssim.m).
WINDOW = 11
SIGMA = 1.5
K2 = 0.03
C2 = (K2 * 255.0) ** 2
STRENGTH_EPS = 0.001
P_MAX = 10.0
SCALE_WEIGHTS = np.array([0.0448, 0.2856, 0.3001])
_TINY = np.finfo(np.float64).eps


def _grey255(img: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 3:
        a = luminance(a, dtype=np.float64)  # MATLAB rgb2gray without its rounding
    elif a.ndim != 2:
        raise ValueError(f"{what} must be (H, W, 3) RGB or (H, W) grey, got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} has non-finite values")
    return a * 255.0


def _downsample(img: np.ndarray) -> np.ndarray:
    """2x2 mean then every second pixel (MATLAB imfilter 'symmetric', 'same' + (1:2:end))."""
    h, w = img.shape
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2)), mode="symmetric")
    hh, ww = img.shape
    return img.reshape(hh // 2, 2, ww // 2, 2).mean(axis=(1, 3))


def _box(img: np.ndarray) -> np.ndarray:
    """11x11 mean at every 'valid' position."""
    b = WINDOW // 2
    return cv2.blur(img, (WINDOW, WINDOW), borderType=cv2.BORDER_REFLECT)[b:-b, b:-b]


_GAUSS_1D = cv2.getGaussianKernel(WINDOW, SIGMA, cv2.CV_64F)


def _gauss(img: np.ndarray) -> np.ndarray:
    """11x11 Gaussian (sigma 1.5, normalised) weighted mean at every 'valid' position."""
    b = WINDOW // 2
    return cv2.sepFilter2D(img, cv2.CV_64F, _GAUSS_1D, _GAUSS_1D, borderType=cv2.BORDER_REFLECT)[b:-b, b:-b]


class _Scale:
    """What one scale of the stack contributes to MEF-SSIM, independent of the fused image.

    With the desired patch ``r = sum_k beta_k (x_k - mu_k)`` (beta_k and mu_k constant within a
    window), its Gaussian statistics are ``mean_r = sum_k beta_k (G x_k - mu_k)``,
    ``var_r = sum_kj beta_k beta_j Cov_G(x_k, x_j)`` and, for a fused patch f,
    ``cov(r, f) = sum_k beta_k Cov_G(x_k, f)``. The pairwise covariances are accumulated one
    pair at a time (memory O(K) images, not O(K^2): a 28-frame stack would need 3 GB).
    Arithmetic is float64 on images centred on their global mean: in float32 the cancellation
    error of ``E[xy] - E[x]E[y]`` gives flat (clipped) windows a random desired structure and
    lowers the score of a perfect fusion from 1 to 0.94.
    """

    def __init__(self, grey: list[np.ndarray]):
        n = WINDOW * WINDOW
        k = len(grey)
        self.grey = [g - g.mean() for g in grey]
        grey = self.grey
        mu = np.stack([_box(x) for x in grey])                       # (K, h, w) box means
        self.gmean = np.stack([_gauss(x) for x in grey])             # Gaussian means
        var = np.stack([np.maximum(_box(x * x) - m * m, 0.0) for x, m in zip(grey, mu)])
        strength = np.sqrt(n * var) + STRENGTH_EPS                   # ed in mef_ssim.m
        # Structural consistency R = |sum_k (x_k - mu_k)| / sum_k |x_k - mu_k|; the numerator is
        # the spread of the summed image around its window mean.
        total = np.sum(grey, axis=0)
        total_mu = _box(total)
        numerator = np.sqrt(np.maximum(n * (_box(total * total) - total_mu * total_mu), 0.0))
        denominator = np.sqrt(n * var).sum(axis=0)
        r = (numerator + _TINY) / (denominator + _TINY)
        r = np.clip(r, _TINY, 1.0 - _TINY)
        p = np.minimum(np.tan(np.pi / 2 * r), P_MAX)
        wmap = (strength / WINDOW) ** p[None] + _TINY
        wmap /= wmap.sum(axis=0, keepdims=True)
        alpha = wmap / strength                 # unnormalised structure weights
        norm_sq = np.zeros(mu.shape[1:], np.float64)                 # |sum_k alpha_k (x_k - mu_k)|^2 / n
        var_alpha = np.zeros_like(norm_sq)                           # Gaussian variance of the same
        for i in range(k):
            for j in range(i, k):
                prod = grey[i] * grey[j]
                ww = alpha[i] * alpha[j] * (1.0 if i == j else 2.0)
                norm_sq += ww * (_box(prod) - mu[i] * mu[j])
                var_alpha += ww * (_gauss(prod) - self.gmean[i] * self.gmean[j])
        norm = np.sqrt(np.maximum(n * norm_sq, 0.0))
        scale = np.where(norm > 0, strength.max(axis=0) / np.where(norm > 0, norm, 1.0), 1.0)
        self.beta = alpha * scale[None]         # (K, h, w)
        self.var_r = np.maximum(var_alpha * scale * scale, 0.0)

    def quality_map(self, fused: np.ndarray) -> np.ndarray:
        f = fused - fused.mean()
        gf = _gauss(f)
        var_f = np.maximum(_gauss(f * f) - gf * gf, 0.0)
        cov_rf = sum(b * (_gauss(x * f) - gm * gf) for b, x, gm in zip(self.beta, self.grey, self.gmean))
        return (2.0 * cov_rf + C2) / (self.var_r + var_f + C2)


class MefSsimReference:
    """The stack side of MEF-SSIM, computed once, to score any number of fused images.

    Parameters
    ----------
    frames : list of (H, W, 3) or (H, W) ndarray, float in [0, 1]
        The source exposures (any order), same size, at least 2.
    levels : int
        Number of scales (3 as in the authors' release; 1 = single scale).
    max_side : int, optional
        Score at reduced size: frames (and every fused image) are area-averaged so that their
        longer side is at most this. None (default) scores at full size. The stack's state takes
        about 16 bytes per pixel and frame per scale (more while it is built), so multi-megapixel
        stacks want a limit (e.g. 1024).

    Raises
    ------
    ValueError
        Fewer than 2 frames, frames of different sizes, non-finite values, images too small for
        the 11x11 window at the coarsest scale, or ``levels`` outside 1..3.
    """

    def __init__(self, frames: Sequence[np.ndarray], *, levels: int = 3, max_side: int | None = None):
        if not 1 <= int(levels) <= len(SCALE_WEIGHTS):
            raise ValueError(f"levels must be 1..{len(SCALE_WEIGHTS)}, got {levels}")
        if len(frames) < 2:
            raise ValueError(f"frames must hold at least 2 images, got {len(frames)}")
        grey = [_grey255(f, f"frames[{i}]") for i, f in enumerate(frames)]
        for i, g in enumerate(grey):
            if g.shape != grey[0].shape:
                raise ValueError(f"frames[{i}] has size {g.shape}, frames[0] has {grey[0].shape}")
        self.shape = grey[0].shape
        self.max_side = None if max_side is None else int(max_side)
        grey = [self._shrink(g) for g in grey]
        smallest = min(grey[0].shape) / 2 ** (int(levels) - 1)
        if smallest < WINDOW:
            raise ValueError(f"frames of size {self.shape} are too small for {levels} scales of an "
                             f"{WINDOW}x{WINDOW} window")
        self.levels = int(levels)
        self.scales = []
        for level in range(self.levels):
            if level:
                grey = [_downsample(g) for g in grey]
            self.scales.append(_Scale(grey))
        w = SCALE_WEIGHTS[: self.levels]
        self.weights = w / w.sum()

    def _shrink(self, grey: np.ndarray) -> np.ndarray:
        return grey if self.max_side is None else resize_long_side(grey, self.max_side)

    def score(self, image: np.ndarray) -> float:
        """MEF-SSIM of ``image`` ((H, W, 3) or (H, W), float in [0, 1]), a fusion of the stack.

        Returns
        -------
        float
            At most 1 (1 when the image has exactly the desired structure everywhere).
        """
        f = _grey255(image, "image")
        if f.shape != self.shape:
            raise ValueError(f"image has size {f.shape}, the frames have {self.shape}")
        f = self._shrink(f)
        q = []
        for level, scale in enumerate(self.scales):
            if level:
                f = _downsample(f)
            q.append(float(scale.quality_map(f).mean()))
        q = np.asarray(q)
        if self.levels == 1:
            return float(q[0])
        # A negative per-scale score (anti-correlated structure) has no real power: clamp at 0
        # (mef_ssim.m would return a complex number there).
        return float(np.prod(np.maximum(q, 0.0) ** self.weights))


def mef_ssim(image: np.ndarray, frames: Sequence[np.ndarray], *, levels: int = 3,
             max_side: int | None = None) -> float:
    """MEF-SSIM (Ma, Zeng, Wang 2015) of a fused image against its source exposures.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray, float in [0, 1]
        The fused image.
    frames : list of (H, W, 3) or (H, W) ndarray, float in [0, 1]
        The source exposures, same size as ``image``, at least 2.
    levels : int
        Scales (3 as in the release, 1 for the single-scale index).
    max_side : int, optional
        Score at reduced size (longer side at most this); see :class:`MefSsimReference`.

    Returns
    -------
    float
        Score <= 1, higher is better.

    Raises
    ------
    ValueError
        See :class:`MefSsimReference`; also an image of another size than the frames.

    Notes
    -----
    Every call computes the stack's part again (most of the cost). To score several images of
    one stack, keep a :class:`MefSsimReference` and call its :meth:`~MefSsimReference.score`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    >>> round(mef_ssim(x, [x, x], levels=1), 6)
    1.0
    """
    return MefSsimReference(frames, levels=levels, max_side=max_side).score(image)


def image_statistics(img: np.ndarray) -> dict[str, float]:
    """Simple exposure and colour statistics of an RGB image.

    Parameters
    ----------
    img : (H, W, 3) ndarray, float in [0, 1]
        RGB image.

    Returns
    -------
    dict
        ``clipped_low``: fraction of channel values <= 1/255 (crushed to black);
        ``clipped_high``: fraction of channel values >= 254/255 (blown out);
        ``mean_brightness``: mean Rec. 601 luma in [0, 1];
        ``colourfulness``: Hasler and Suesstrunk 2003 [2]_ M = sigma_rgyb + 0.3 mu_rgyb on the
        8-bit scale of the paper (0 for grey; about 33 "moderately", 59 "quite", 82 "highly"
        colourful); ``contrast``: RMS contrast, the standard deviation of the luma [3]_.

    Raises
    ------
    ValueError
        Not an (H, W, 3) array, or non-finite values.
    """
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"img must be an (H, W, 3) RGB array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("img has non-finite values")
    lum = luminance(a, dtype=np.float64)
    r, g, b = (a[..., c] * 255.0 for c in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    return {
        "clipped_low": float(np.mean(a <= 1 / 255)),
        "clipped_high": float(np.mean(a >= 254 / 255)),
        "mean_brightness": float(lum.mean()),
        "colourfulness": float(colourfulness),
        "contrast": float(lum.std()),
    }
