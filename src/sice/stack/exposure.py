"""Relative exposures of a multi-exposure sequence: from EXIF when the camera recorded them,
otherwise estimated from the frames themselves.

Stack-based HDR generators (Debevec & Malik radiance merge, Robertson) need the exposure of every
frame. Camera files carry exposure time, ISO and aperture in EXIF; the SICE sequences that the
team works with (``sice512``) carry none, so the exposures must be estimated.

Estimation, in one paragraph: the frames are reduced (area average) to a small size, linearised
with an assumed camera response (the sRGB transfer curve by default, or a measured response
lookup table), and for every pair of frames the exposure difference is the median log2 ratio of
linear values over the pixels that are well exposed (neither dark-noisy nor near clipping) in
both frames. The pairwise differences are combined by weighted least squares into one exposure
per frame, so that no single noisy pair decides a frame and errors do not accumulate along the
sequence as they would when chaining neighbours.

Why a response must be assumed: from the images alone, the response curve and the exposure
ratios are only defined up to an exponential ambiguity (f(x) and the ratios k can be replaced by
f(x^(1/g)) and k^g, Grossberg & Nayar 2003), so a method that "jointly estimates" both still
fixes the ambiguity by an assumption. Camera JPEGs are rendered to sRGB, whose transfer curve is
the natural assumption; pass ``response=`` when a measured response is available.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from ..imageops import resize_long_side, srgb_to_linear

#: EXIF tags (Exif IFD) that decide the exposure of a frame.
_EXIF_IFD = 0x8769
_TAG_EXPOSURE_TIME = 0x829A
_TAG_F_NUMBER = 0x829D
_TAG_ISO = 0x8827

#: Well-exposed range of pixel values (of [0, 1]) used for ratios. Below 0.1 (about 25/255)
#: sensor noise and JPEG quantisation bias the log ratio; above 0.92 camera rendering rolls off
#: towards clipping and highlights desaturate. Chosen on brackets rendered from the CC0 HDRs
#: (docs/dataset.md): 0.04 gave up to 0.1 EV error at 4 EV steps, 0.1 gives 0.07.
WELL_EXPOSED = (0.1, 0.92)


@dataclasses.dataclass(frozen=True)
class ExifExposure:
    """Exposure settings of one frame read from EXIF (None where the tag is absent).

    Attributes
    ----------
    exposure_time : float or None
        Seconds.
    f_number : float or None
        Aperture N.
    iso : float or None
        ISO speed.
    """

    exposure_time: float | None
    f_number: float | None = None
    iso: float | None = None


def exposure_from_exif(exif: bytes | None) -> ExifExposure | None:
    """Parse exposure time, aperture and ISO from a raw EXIF block.

    Parameters
    ----------
    exif : bytes or None
        The EXIF block as kept by :func:`sice.io.read_image` (``ImageFile.exif``).

    Returns
    -------
    ExifExposure or None
        None when there is no EXIF or it records no positive exposure time.
    """
    if not exif:
        return None
    from PIL import Image

    data = Image.Exif()
    try:
        data.load(exif)
        ifd = data.get_ifd(_EXIF_IFD)
    except Exception:  # a corrupt block means "no EXIF", never a lost scene
        return None

    def number(tag):
        value = ifd.get(tag)
        if isinstance(value, (tuple, list)):
            value = value[0] if value else None
        try:
            value = float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return value if math.isfinite(value) and value > 0 else None

    time = number(_TAG_EXPOSURE_TIME)
    if time is None:
        return None
    return ExifExposure(time, number(_TAG_F_NUMBER), number(_TAG_ISO))


def exif_exposure_values(settings: Sequence[ExifExposure | None]) -> np.ndarray | None:
    """Relative exposures (EV, log2) of a sequence from EXIF, or None if any frame lacks them.

    The image brightness of a scene point is proportional to ``t * ISO / N**2``; ISO and aperture
    enter only when every frame records them.

    Returns
    -------
    (n,) float64 ndarray or None
        log2 exposure of each frame relative to the first frame.
    """
    if not settings or any(s is None for s in settings):
        return None
    ev = np.log2([s.exposure_time for s in settings])
    if all(s.iso for s in settings):
        ev = ev + np.log2([s.iso for s in settings])
    if all(s.f_number for s in settings):
        ev = ev - 2 * np.log2([s.f_number for s in settings])
    return ev - ev[0]


# ---------------------------------------------------------------------------------------------
# Camera responses
# ---------------------------------------------------------------------------------------------
def _inverse_response(response) -> Callable[[np.ndarray], np.ndarray]:
    """``"srgb"``, a gamma (float), or a (256,) / (256, 3) inverse-response lookup table."""
    if isinstance(response, str):
        if response != "srgb":
            raise ValueError(f"response must be 'srgb', a gamma or a lookup table, got {response!r}")
        return srgb_to_linear
    if np.isscalar(response):
        gamma = float(response)
        if not gamma > 0:
            raise ValueError(f"response gamma must be > 0, got {gamma}")
        return lambda v: np.power(np.asarray(v, np.float32), gamma)
    lut = np.asarray(response, dtype=np.float64)
    if lut.shape not in ((256,), (256, 1), (256, 3)):
        raise ValueError(f"response lookup table must have shape (256,) or (256, 3), got {lut.shape}")
    if np.any(np.diff(lut, axis=0) < 0) or np.any(lut <= 0):
        raise ValueError("response lookup table must be positive and non-decreasing")
    lut = lut.reshape(256, -1)
    grid = np.linspace(0, 1, 256)

    def apply(v):
        v = np.asarray(v, np.float32)
        if lut.shape[1] == 1:
            return np.interp(v, grid, lut[:, 0]).astype(np.float32)
        return np.stack([np.interp(v[..., c], grid, lut[:, c]) for c in range(3)], -1).astype(np.float32)

    return apply


# ---------------------------------------------------------------------------------------------
# Estimation
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ExposureEstimate:
    """Relative exposures of a sequence and how well they are supported.

    Attributes
    ----------
    ev : (n,) ndarray
        log2 exposure of each frame relative to frame 0 (+1 = twice the light).
    pair_ev : dict
        ``(i, j) -> (median log2 ratio, number of well-exposed samples)`` for each pair used.
    residual : float
        Weighted RMS (EV) of the pairwise differences around the least-squares solution; large
        values (> 0.2) mean the frames disagree (motion, a changing scene, a non-sRGB response).
    weak : list of int
        Frames linked to the others only by a fallback (too few well-exposed pixels in common).
    """

    ev: np.ndarray
    pair_ev: dict
    residual: float
    weak: list

    @property
    def times(self) -> np.ndarray:
        """Relative exposure times (darkest frame = 1), the form HDR merging expects."""
        return np.exp2(self.ev - self.ev.min())


def estimate_exposures(frames: Sequence[np.ndarray], *, response="srgb", max_side: int = 256,
                       well_exposed: tuple[float, float] = WELL_EXPOSED,
                       min_samples: int = 100) -> ExposureEstimate:
    """Estimate the relative exposure of every frame of a multi-exposure sequence.

    Parameters
    ----------
    frames : sequence of (H, W, 3) float32 ndarray in [0, 1]
        At least two frames of one scene, any order, same size, ideally aligned (the median
        tolerates a few pixels of motion).
    response : "srgb", float or (256,) / (256, 3) ndarray
        Inverse camera response used to linearise pixel values: the sRGB curve (default), a gamma
        ``v ** gamma``, or a lookup table from codes 0..255 to relative linear values (e.g. from
        ``cv2.createCalibrateDebevec``).
    max_side : int
        Frames are area-averaged to this longest side first: it suppresses noise and JPEG
        artefacts and makes the estimate fast (ratios do not depend on resolution).
    well_exposed : (float, float)
        Range of encoded values (per channel) trusted in both frames of a pair.
    min_samples : int
        Pairs with fewer trusted samples in common are not used.

    Returns
    -------
    ExposureEstimate
        ``ev[0] == 0``.

    Raises
    ------
    ValueError
        Fewer than two frames, frames of different shapes, or bad parameters.

    Notes
    -----
    For frames i, j the estimate d_ij = median(log2 f^-1(z_j) - log2 f^-1(z_i)) over samples
    well exposed in both; the exposures e minimise sum_ij w_ij (e_j - e_i - d_ij)^2 with
    w_ij = sqrt(samples), e_0 = 0 (weighted least squares, as in the pairwise registration of
    Mann & Picard's comparametric analysis). A frame that shares too few samples with all others
    is linked to its neighbour by the ratio of mean linear values and listed in ``weak``.

    References
    ----------
    .. [1] S. Mann, R. W. Picard, "On being 'undigital' with digital cameras: extending dynamic
       range by combining differently exposed pictures", IS&T 1995.
    .. [2] M. D. Grossberg, S. K. Nayar, "Determining the camera response from images: what is
       knowable?", IEEE TPAMI 25(11), 2003 (the exponential ambiguity).
    """
    n = len(frames)
    if n < 2:
        raise ValueError(f"frames must hold at least 2 images, got {n}")
    shape = np.shape(frames[0])
    if any(np.shape(f) != shape for f in frames) or len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"frames must all be (H, W, 3) of one size, got {[np.shape(f) for f in frames]}")
    low, high = well_exposed
    if not 0 <= low < high <= 1:
        raise ValueError(f"well_exposed must satisfy 0 <= low < high <= 1, got {well_exposed}")
    if max_side < 8:
        raise ValueError(f"max_side must be >= 8, got {max_side}")
    import cv2

    inverse = _inverse_response(response)
    # Linearise and test the range at full resolution, then reduce: averaging encoded values,
    # or letting a clipped pixel hide inside an average, biases the ratios by tenths of an EV.
    small, ok = [], []
    for f in frames:
        f = np.asarray(f, np.float32)
        small.append(resize_long_side(inverse(f), max_side))
        # JPEG ringing leaves values below `high` right next to clipped areas: keep a margin.
        clipped = cv2.dilate((f > high).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        good = ((f >= low) & ~clipped).astype(np.float32)
        ok.append(resize_long_side(good, max_side) > 0.999)
    logs = [np.log2(np.maximum(s, 1e-8)) for s in small]

    pair_ev: dict = {}
    rows, targets, weights = [], [], []
    for i in range(n):
        for j in range(i + 1, n):
            both = ok[i] & ok[j]
            count = int(both.sum())
            if count < min_samples:
                continue
            d = float(np.median(logs[j][both] - logs[i][both]))
            pair_ev[(i, j)] = (d, count)
            rows.append((i, j))
            targets.append(d)
            weights.append(math.sqrt(count))

    weak = _link_components(n, rows, small, targets, weights, pair_ev)
    ev, residual = _solve(n, rows, np.asarray(targets), np.asarray(weights))
    return ExposureEstimate(ev, pair_ev, residual, weak)


def _link_components(n, rows, small, targets, weights, pair_ev) -> list:
    """Join frames that share no well-exposed samples with the rest (e.g. a nearly black and a
    nearly white frame at the ends of a wide bracket) to their neighbour by the ratio of mean
    linear values, with a small weight; returns the frames that needed it."""
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in rows:
        parent[find(i)] = find(j)
    # Order frames by mean linear value so "neighbour" means the next exposure, whatever the
    # input order.
    means = [float(np.mean(s)) for s in small]
    order = np.argsort(means, kind="stable")
    weak = []
    for a, b in zip(order[:-1], order[1:]):
        if find(a) == find(b):
            continue
        d = float(np.log2(max(means[b], 1e-8) / max(means[a], 1e-8)))
        rows.append((int(a), int(b)))
        targets.append(d)
        weights.append(1.0)
        pair_ev[(int(a), int(b))] = (d, 0)
        parent[find(a)] = find(b)
        weak.extend(int(k) for k in (a, b) if k not in weak)
    return sorted(weak)


def _solve(n, rows, targets, weights) -> tuple[np.ndarray, float]:
    a = np.zeros((len(rows) + 1, n))
    for k, (i, j) in enumerate(rows):
        a[k, i], a[k, j] = -weights[k], weights[k]
    a[-1, 0] = 1.0  # gauge: frame 0 has exposure 0
    b = np.concatenate([targets * weights, [0.0]])
    ev, *_ = np.linalg.lstsq(a, b, rcond=None)
    ev = ev - ev[0]
    if len(rows) == 0:
        return ev, 0.0
    fitted = np.array([ev[j] - ev[i] for i, j in rows])
    residual = float(np.sqrt(np.sum(weights * (fitted - targets) ** 2) / np.sum(weights)))
    return ev, residual
