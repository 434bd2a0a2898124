"""Full-resolution application: what turns a model's low-resolution output into the photo.

NumPy/OpenCV only (no torch), shared by every runner:

* :func:`tiled_apply` runs a fully convolutional network over overlapping tiles (photo path
  ``"tiles"``), so memory stays bounded and the result equals untiled inference;
* :func:`gain_inputs` makes the two inputs of grid models (a thumbnail and the working image);
* :func:`apply_log2_gain` (photo path ``"gain"``) and :func:`apply_tone` (``"tone"``) upsample the
  model's fields and apply them strip by strip, in the photo's own dtype: a 20 MP uint8 photo is
  never held as a full-size float copy.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from ..imageops import to_float32

def tiled_apply(image: np.ndarray | list[np.ndarray], fn: Callable[[np.ndarray], np.ndarray], *, tile: int,
                overlap: int, multiple: int = 1, out_channels: int = 3) -> np.ndarray:
    """Apply a translation-equivariant ``fn`` to ``image`` in overlapping tiles.

    Each tile is extended by ``overlap`` pixels of real context on every side that has image
    there; only its centre is kept. With ``overlap`` >= the network's receptive radius the
    result equals ``fn(image)`` (the image border sees the same zero padding either way).
    ``multiple``: the image is first reflect-padded to a multiple of it, tile origins and sizes
    are multiples of it, and the result is cropped back.

    Parameters
    ----------
    image : (H, W, C) float32, or a list of (H, W, Ci) planes
        A list is joined along channels tile by tile (never as a whole-image copy).
    fn : callable
        (h, w, C) -> (h, w, out_channels)
    """
    planes = list(image) if isinstance(image, (list, tuple)) else [image]
    h, w = planes[0].shape[:2]
    m = max(1, int(multiple))
    ph, pw = -h % m, -w % m
    if ph or pw:
        mode = "reflect" if min(h, w) > 1 else "edge"
        planes = [np.pad(p, ((0, ph), (0, pw), (0, 0)), mode=mode) for p in planes]
    H, W = planes[0].shape[:2]

    def block(ya: int, yb: int, xa: int, xb: int) -> np.ndarray:
        parts = [p[ya:yb, xa:xb] for p in planes]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)

    tile = max(m, (int(tile) // m) * m)
    ov = int(math.ceil(overlap / m) * m)
    if H <= tile + 2 * ov and W <= tile + 2 * ov:
        out = fn(block(0, H, 0, W))
        return np.ascontiguousarray(out[:h, :w])
    out = np.empty((H, W, out_channels), dtype=np.float32)
    for y0 in range(0, H, tile):
        y1 = min(y0 + tile, H)
        ya, yb = max(0, y0 - ov), min(H, y1 + ov)
        for x0 in range(0, W, tile):
            x1 = min(x0 + tile, W)
            xa, xb = max(0, x0 - ov), min(W, x1 + ov)
            res = fn(block(ya, yb, xa, xb))
            out[y0:y1, x0:x1] = res[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return out[:h, :w]


def resize_long_side(rgb: np.ndarray, size: int) -> np.ndarray:
    """Area-downscale so the long side is at most ``size`` (never upscales)."""
    import cv2

    h, w = rgb.shape[:2]
    s = size / max(h, w)
    if s >= 1:
        return rgb
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    return cv2.resize(np.ascontiguousarray(rgb), (nw, nh), interpolation=cv2.INTER_AREA)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area resize (OpenCV INTER_AREA) to exactly (height, width)."""
    import cv2

    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def gain_inputs(rgb: np.ndarray, work_size: int, thumb_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The two inputs of a gain-grid model: a (256, 256, 3) thumbnail and the image at its
    working resolution (long side <= ``work_size``), both float32 by area averaging."""
    work = to_float32(resize_long_side(rgb, work_size))
    return resize_to(work, thumb_size, thumb_size), work


def apply_log2_gain(image: np.ndarray, log_gain: np.ndarray, *, offset: np.ndarray | None = None,
                    strip: int = 256) -> np.ndarray:
    """``image * 2**log_gain (+ offset)``, both fields bilinearly upsampled to ``image``'s size.

    Works in horizontal strips, in the image's own dtype (uint8/uint16 saturate and round,
    float is clipped to [0, 1]), so a 24 MP photo never needs a full-size float copy.

    Parameters
    ----------
    image : (H, W, 3) uint8, uint16 or float32
    log_gain : (h, w, 3) float32
        Base-2 log gains at a lower (or equal) resolution, pixel-centre aligned with ``image``.
    offset : (h, w, 3) float32, optional
        Offsets in [0, 1] units on the same grid as ``log_gain`` (scaled to the dtype's full
        range: 255 for uint8, 65535 for uint16).
    """
    import cv2

    h, w = image.shape[:2]
    gain = np.exp2(log_gain.astype(np.float32))
    if offset is not None:
        if offset.shape != log_gain.shape:
            raise ValueError(f"offset must have log_gain's shape {log_gain.shape}, got {offset.shape}")
        full_scale = 1.0 if image.dtype.kind == "f" else float(np.iinfo(image.dtype).max)
        offset = offset.astype(np.float32) * np.float32(full_scale)

    def one_strip(src: np.ndarray, y0: int, y1: int, depth: int) -> np.ndarray:
        if offset is None:
            # cv2.multiply with a dtype saturates and rounds integer results in one SIMD pass
            return cv2.multiply(src, upsample_rows(gain, h, w, y0, y1), dtype=depth)
        # float product, then cv2.add saturates and rounds once into the image's dtype
        scaled = cv2.multiply(src, upsample_rows(gain, h, w, y0, y1), dtype=cv2.CV_32F)
        return cv2.add(scaled, upsample_rows(offset, h, w, y0, y1), dtype=depth)

    return _by_strips(image, strip, one_strip)


def _by_strips(image: np.ndarray, strip: int, one_strip) -> np.ndarray:
    """``one_strip(src, y0, y1, depth)`` over horizontal strips of ``image`` -> the output.

    ``src`` is rows ``y0:y1`` (float images as float32), ``depth`` the OpenCV depth of the
    image's dtype that each strip's result must have; float results are clipped to [0, 1].
    Strips are independent and OpenCV releases the GIL, so they run on up to 4 threads: the
    cores of a laptop share a 20 MP photo's pass.
    """
    import cv2

    is_float = image.dtype.kind == "f"
    if is_float:
        image = image.astype(np.float32, copy=False)
    depth = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U,
             np.dtype(np.float32): cv2.CV_32F}[image.dtype]
    h = image.shape[0]
    out = np.empty_like(image)

    def run(y0: int) -> None:
        y1 = min(h, y0 + strip)
        out[y0:y1] = one_strip(np.ascontiguousarray(image[y0:y1]), y0, y1, depth)

    starts = range(0, h, strip)
    workers = min(len(starts), os.cpu_count() or 1, 4)
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    else:
        for y0 in starts:
            run(y0)
    if is_float:
        np.clip(out, 0, 1, out=out)
    return out


def upsample_rows(field: np.ndarray, height: int, width: int, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of ``field`` (h, w[, c]) bilinearly upsampled to (height, width),
    pixel-centre aligned (what ``cv2.resize(INTER_LINEAR)`` would give, one strip at a time)."""
    import cv2

    gh, gw = field.shape[:2]
    if (gh, gw) == (height, width):
        return field[y0:y1]
    sx, sy = gw / width, gh / height
    # dst (x, y) -> src ((x + .5) sx - .5, (y + y0 + .5) sy - .5)
    m = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, (y0 + 0.5) * sy - 0.5]], dtype=np.float64)
    return cv2.warpAffine(field, m, (width, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


#: Rec. 601 luma weights as an OpenCV transform matrix (one row: R, G, B).
_LUMA_ROW = np.array([[0.299, 0.587, 0.114]], dtype=np.float32)


def apply_tone(image: np.ndarray, luma_gain: np.ndarray, chroma_gain: np.ndarray, *,
               strip: int = 256) -> np.ndarray:
    """``s x + (g - s) Y(x)``: luma gain ``g`` and chroma gain ``s`` applied to ``image``.

    The luma ``Y`` of each output pixel is ``g Y`` and its chroma ``x - Y`` is ``s (x - Y)``
    (:class:`sice.models.tonegrid.ToneGrid`). Both fields are bilinearly upsampled to the
    image's size, strip by strip, in the image's own dtype (uint8/uint16 saturate and round,
    float is clipped to [0, 1]): a 24 MP photo is never held as a full-size float copy.

    Parameters
    ----------
    image : (H, W, 3) uint8, uint16 or float
    luma_gain, chroma_gain : (h, w) float32
        At a lower (or equal) resolution, pixel-centre aligned with ``image``.
    """
    import cv2

    if luma_gain.shape != chroma_gain.shape or luma_gain.ndim != 2:
        raise ValueError(f"luma_gain and chroma_gain must be equal (h, w) fields, got "
                         f"{luma_gain.shape} and {chroma_gain.shape}")
    h, w = image.shape[:2]
    s_field = chroma_gain.astype(np.float32)
    t_field = (luma_gain - chroma_gain).astype(np.float32)

    def one_strip(src: np.ndarray, y0: int, y1: int, depth: int) -> np.ndarray:
        srcf = src if src.dtype == np.float32 else src.astype(np.float32)
        s = upsample_rows(s_field, h, w, y0, y1)
        ty = cv2.multiply(cv2.transform(srcf, _LUMA_ROW), upsample_rows(t_field, h, w, y0, y1))
        # float products, then one saturating, rounding add into the image's dtype
        scaled = cv2.multiply(srcf, cv2.merge([s, s, s]))
        return cv2.add(scaled, cv2.merge([ty, ty, ty]), dtype=depth)

    return _by_strips(image, strip, one_strip)


