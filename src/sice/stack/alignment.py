"""Alignment of the frames of a multi-exposure sequence, and a measurable ghost score.

Hand-held sequences drift by a few pixels between frames; fusing them unaligned doubles every
edge. Frames are aligned by translation with Ward's median threshold bitmaps (OpenCV
``AlignMTB``), which do not depend on exposure, optionally refined to sub-pixel accuracy by
enhanced-correlation maximisation (OpenCV ``findTransformECC``) after the intensities of a frame
have been mapped onto its neighbour's.

What translation cannot fix (moving people, leaves, water, a scene that changed between frames)
is measured, not silently fused: :func:`ghost_score` is the fraction of pixels, well exposed in
two neighbouring frames, whose values disagree after one frame's intensities are mapped onto the
other's by their intensity mapping function. Sequences above a threshold, or that needed shifts
beyond what a hand-held drift explains, are flagged.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import median_filter

#: Defaults of :func:`assess`, chosen on the 209 sice512 sequences (docs/dataset.md): the tripod
#: sequences score below 0.01, hand-held static ones below 0.03.
GHOST_THRESHOLD = 0.05
#: Largest plausible drift as a fraction of the shorter image side (hand-held sice512 sequences
#: drift up to ~15 px of 512, i.e. 0.03).
MAX_SHIFT_FRACTION = 0.06
#: A residual difference above this (of [0, 1]) after intensity mapping counts as a ghost pixel:
#: well above JPEG and sensor noise after the blur below, well below a moved object's contrast.
GHOST_RESIDUAL = 0.1
#: Range of values (of [0, 1]) in which both frames of a pair must lie for a pixel to be judged.
_JUDGED = (0.04, 0.96)
#: Grey levels with fewer pixels than this are interpolated in :func:`intensity_mapping`.
_MIN_LEVEL_COUNT = 4


@dataclasses.dataclass
class Alignment:
    """Result of :func:`align_frames`.

    Attributes
    ----------
    frames : list of (H, W, 3) float32 ndarray
        The aligned frames (borders uncovered by a shift repeat the edge pixels).
    shifts : (n, 2) float64 ndarray
        ``(dx, dy)`` applied to each frame, in pixels: aligned(x, y) = frame(x - dx, y - dy).
        The reference frame's is (0, 0).
    reference : int
        Index of the frame the others were aligned to.
    refined : bool
        Whether ECC refinement converged for every frame it was applied to.
    """

    frames: list
    shifts: np.ndarray
    reference: int
    refined: bool = False


def to_grey_u8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float [0, 1] -> (H, W) uint8 luma (Rec. 601), the input AlignMTB expects."""
    from ..imageops import luminance

    return np.clip(luminance(image) * 255 + 0.5, 0, 255).astype(np.uint8)


def estimate_shifts(frames: Sequence[np.ndarray], *, reference: int | None = None,
                    max_bits: int = 6, exclude_range: int = 4) -> np.ndarray:
    """Integer translations that align every frame to ``reference`` (median threshold bitmaps).

    Parameters
    ----------
    frames : sequence of (H, W, 3) float32 ndarray in [0, 1]
        Frames ordered dark to bright.
    reference : int, optional
        Frame the others are aligned to; default the middle one.
    max_bits : int
        Pyramid depth of MTB: shifts up to ``2 ** max_bits - 1`` pixels are found. Reduced for
        small images so that the coarsest level keeps at least 16 px.
    exclude_range : int
        Grey levels around the median ignored in the bitmaps (noise).

    Returns
    -------
    (n, 2) float64 ndarray
        ``(dx, dy)`` per frame, see :class:`Alignment`.

    Notes
    -----
    Each frame is registered to its neighbour towards the reference and the shifts are summed:
    neighbours differ by one exposure step, whereas the ends of a wide bracket share almost no
    structure with the middle frame.

    References
    ----------
    .. [1] G. Ward, "Fast, robust image registration for compositing high dynamic range
       photographs from hand-held exposures", Journal of Graphics Tools 8(2), 2003.
    """
    import cv2

    n = len(frames)
    ref = n // 2 if reference is None else int(reference)
    if not 0 <= ref < n:
        raise ValueError(f"reference must be in 0..{n - 1}, got {reference}")
    grey = [to_grey_u8(f) for f in frames]
    # Each pyramid level halves the image; below ~16 px the coarsest bitmaps are noise and
    # MTB returns wild shifts, so small images get a shallower pyramid.
    max_bits = int(max(1, min(max_bits, np.floor(np.log2(min(grey[0].shape) / 16)))))
    mtb = cv2.createAlignMTB(max_bits=max_bits, exclude_range=exclude_range, cut=False)
    shifts = np.zeros((n, 2))
    for i in list(range(ref + 1, n)) + list(range(ref - 1, -1, -1)):
        toward = i - 1 if i > ref else i + 1
        found = np.array(mtb.calculateShift(grey[toward], grey[i]), dtype=np.float64)
        if found.any() and not _better_than_none(grey[toward], grey[i], found):
            found[:] = 0
        shifts[i] = shifts[toward] + found
    return shifts


def _better_than_none(fixed: np.ndarray, moving: np.ndarray, shift: np.ndarray) -> bool:
    """Whether ``shift`` makes ``moving`` agree with ``fixed`` better than no shift at all.

    MTB has no notion of failure: on a nearly black or nearly white frame its bitmaps are noise
    and it returns an arbitrary shift (on sice512, the darkest frames "moved" by 31 or 63 px, the
    largest shifts the pyramid allows). A shift is kept only if it lowers the disagreement after
    intensity mapping (the ghost measure of :func:`ghost_score`) by at least 10 %.
    """
    margin = int(np.abs(shift).max()) + 1
    h, w = fixed.shape
    if 2 * margin >= min(h, w):
        return False
    inner = (slice(margin, h - margin), slice(margin, w - margin))
    shifted = shift_image(moving, *shift)
    errors = [_mapped_difference(fixed[inner], m[inner]) for m in (moving, shifted)]
    return errors[1] < 0.9 * errors[0]


def _mapped_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |g(b) - a| (grey levels) over pixels judged in both, g mapping b's levels onto a's."""
    lo, hi = (round(v * 255) for v in _JUDGED)
    judged = (a >= lo) & (a <= hi) & (b >= lo) & (b <= hi)
    if judged.sum() < 64:
        return float("inf")
    mapped = intensity_mapping(b, a)[b]
    return float(np.abs(mapped - a.astype(np.float32))[judged].mean())


def shift_image(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate ``image`` by (dx, dy) pixels (bilinear for fractions, edge pixels repeated)."""
    import cv2

    if dx == 0 and dy == 0:
        return image
    h, w = image.shape[:2]
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
    flags = cv2.INTER_NEAREST if float(dx).is_integer() and float(dy).is_integer() else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def align_frames(frames: Sequence[np.ndarray], *, reference: int | None = None,
                 ecc: bool = False, max_bits: int = 6) -> Alignment:
    """Align the frames of a sequence by translation (MTB), optionally refined by ECC.

    Parameters
    ----------
    frames : sequence of (H, W, 3) float32 ndarray in [0, 1]
        At least two frames of one size, ordered dark to bright.
    reference : int, optional
        Frame the others are aligned to; default the middle one.
    ecc : bool
        Refine each shift to sub-pixel accuracy by maximising the enhanced correlation
        coefficient [2]_ between the frame (intensities mapped onto its neighbour's) and its
        already aligned neighbour. Where ECC does not converge the MTB shift is kept.
    max_bits : int
        MTB pyramid depth (shifts up to ``2 ** max_bits`` pixels).

    Returns
    -------
    Alignment

    References
    ----------
    .. [1] G. Ward, Journal of Graphics Tools 8(2), 2003 (median threshold bitmaps).
    .. [2] G. D. Evangelidis, E. Z. Psarakis, "Parametric image alignment using enhanced
       correlation coefficient maximization", IEEE TPAMI 30(10), 2008.
    """
    n = len(frames)
    if n < 2:
        raise ValueError(f"frames must hold at least 2 images, got {n}")
    shape = np.shape(frames[0])
    if any(np.shape(f) != shape for f in frames):
        raise ValueError(f"frames must all have one shape, got {[np.shape(f) for f in frames]}")
    ref = n // 2 if reference is None else int(reference)
    shifts = estimate_shifts(frames, reference=ref, max_bits=max_bits)
    refined = False
    if ecc:
        shifts, refined = _refine_ecc(frames, shifts, ref)
    aligned = [shift_image(np.asarray(f, np.float32), *s) for f, s in zip(frames, shifts)]
    return Alignment(aligned, shifts, ref, refined)


def _refine_ecc(frames, shifts, ref) -> tuple[np.ndarray, bool]:
    import cv2

    shifts = shifts.copy()
    grey = [to_grey_u8(f) for f in frames]
    all_converged = True
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    for i in list(range(ref + 1, len(frames))) + list(range(ref - 1, -1, -1)):
        toward = i - 1 if i > ref else i + 1
        template = shift_image(grey[toward].astype(np.float32), *shifts[toward])
        # The mapping is estimated on the MTB-aligned pair (it needs corresponding pixels) and
        # applied to the unshifted frame, which ECC then moves.
        lut = intensity_mapping(shift_image(grey[i], *np.round(shifts[i])),
                                shift_image(grey[toward], *np.round(shifts[toward])))
        moving = lut[grey[i]].astype(np.float32)
        # ECC's warp maps template coordinates into the moving image: moving(x + t) ~ template(x),
        # so the shift that aligns the moving frame is -t.
        warp = np.array([[1, 0, -shifts[i][0]], [0, 1, -shifts[i][1]]], dtype=np.float32)
        try:
            _, warp = cv2.findTransformECC(template, moving, warp, cv2.MOTION_TRANSLATION, criteria, None, 5)
        except cv2.error:  # no convergence (flat or saturated frame): keep the MTB shift
            all_converged = False
            continue
        candidate = -warp[:, 2].astype(np.float64)
        if np.abs(candidate - shifts[i]).max() <= 2.0:  # ECC refines; it must not jump elsewhere
            shifts[i] = candidate
        else:
            all_converged = False
    return shifts, all_converged


def intensity_mapping(source: np.ndarray, target: np.ndarray, levels: int = 256) -> np.ndarray:
    """Monotonic intensity mapping function from ``source`` to ``target`` (aligned frames).

    For two exposures of a static scene, each source level maps to one target level whatever
    the camera response and exposure ratio (the comparametric function, Mann 2000). It is
    estimated as the median target value of the pixels at each source level, made
    non-decreasing, with empty levels interpolated. The median makes it robust: a moving
    object changes a minority of the pixels of a level and does not bend the mapping (matching
    histograms would, since the object changes the whole histogram).

    Parameters
    ----------
    source, target : (H, W) uint8 ndarray
        Aligned grey images.
    levels : int
        Number of grey levels (256 for uint8).

    Returns
    -------
    (levels,) float32 ndarray
        ``target``-scale value (in grey levels) for each ``source`` level.

    Notes
    -----
    Written here because neither OpenCV nor SciPy offers a per-level median of a joint
    histogram.

    References
    ----------
    .. [1] S. Mann, "Comparametric equations with practical applications in quantigraphic image
       processing", IEEE TIP 9(8), 2000.
    """
    s = np.asarray(source).ravel()
    t = np.asarray(target).ravel()
    order = np.lexsort((t, s))  # by source level, then target value
    t_sorted = t[order].astype(np.float32)
    counts = np.bincount(s, minlength=levels)[:levels]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Levels with a handful of pixels give noisy medians; they are interpolated instead, and
    # a running median over levels removes the odd spike before monotonicity is enforced
    # (a spike would otherwise propagate to every higher level).
    present = np.flatnonzero(counts >= _MIN_LEVEL_COUNT)
    if present.size == 0:
        present = np.flatnonzero(counts)
    lower = t_sorted[starts[present] + (counts[present] - 1) // 2]
    upper = t_sorted[starts[present] + counts[present] // 2]
    medians = median_filter(0.5 * (lower + upper), size=5, mode="nearest")
    mapping = np.interp(np.arange(levels), present, medians)
    return np.maximum.accumulate(mapping).astype(np.float32)


def ghost_score(frames: Sequence[np.ndarray], *, max_side: int = 256,
                residual: float = GHOST_RESIDUAL) -> tuple[float, list[float]]:
    """Fraction of well-exposed pixels that disagree between neighbouring aligned frames.

    Parameters
    ----------
    frames : sequence of (H, W, 3) float32 ndarray in [0, 1]
        Aligned frames, ordered dark to bright.
    max_side : int
        Frames are reduced to this longest side and blurred (sigma 1 px) first, so that JPEG
        noise and sub-pixel residual misalignment at edges do not count as ghosts.
    residual : float
        Disagreement (of [0, 1]) above which a pixel is a ghost pixel.

    Returns
    -------
    score : float
        The largest per-pair fraction, in [0, 1] (0: no pixel disagrees).
    per_pair : list of float
        Fraction for each neighbouring pair (i, i + 1); pairs sharing fewer than 1 % well-exposed
        pixels score 0 (nothing can be judged there).

    Notes
    -----
    For a pair (a, b) the robust intensity mapping function g (:func:`intensity_mapping`)
    predicts b from a; a pixel judged in both frames is a ghost pixel when |g(a) - b| > ``residual``.
    Motion gives large residuals where an object is in one frame and not the other; a static
    scene gives only noise-level residuals, because g absorbs the exposure change and the
    camera response.
    """
    import cv2

    from ..imageops import resize_long_side

    grey = []
    for f in frames:
        small = resize_long_side(np.asarray(f, np.float32), max_side)
        g = to_grey_u8(cv2.GaussianBlur(small, (0, 0), 1.0))
        grey.append(g)
    per_pair = []
    lo, hi = (round(v * 255) for v in _JUDGED)
    for a, b in zip(grey[:-1], grey[1:]):
        judged = (a >= lo) & (a <= hi) & (b >= lo) & (b <= hi)
        if judged.mean() < 0.01:
            per_pair.append(0.0)
            continue
        predicted = intensity_mapping(a, b)[a]
        bad = np.abs(predicted - b.astype(np.float32)) > residual * 255
        per_pair.append(float((bad & judged).sum() / judged.sum()))
    return (max(per_pair) if per_pair else 0.0), per_pair


def assess(alignment: Alignment, *, ghost_threshold: float = GHOST_THRESHOLD,
           max_shift_fraction: float = MAX_SHIFT_FRACTION) -> dict:
    """Ghost score and flags of an aligned sequence.

    Returns
    -------
    dict
        ``ghost_score`` (float), ``ghost_per_pair`` (list), ``max_shift`` (pixels) and ``flags``:
        ``"ghosts"`` when the ghost score exceeds ``ghost_threshold``; ``"motion"`` when a shift
        exceeds ``max_shift_fraction`` of the shorter image side.
    """
    score, per_pair = ghost_score(alignment.frames)
    h, w = alignment.frames[0].shape[:2]
    max_shift = float(np.abs(alignment.shifts).max()) if len(alignment.shifts) else 0.0
    flags = []
    if score > ghost_threshold:
        flags.append("ghosts")
    if max_shift > max_shift_fraction * min(h, w):
        flags.append("motion")
    return {"ghost_score": round(score, 4), "ghost_per_pair": [round(p, 4) for p in per_pair],
            "max_shift": round(max_shift, 2), "flags": flags}
