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

from ..imageops import REC601, resize_long_side, to_float32

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


#: Pixels per strip of :func:`apply_tone` and :func:`apply_log2_gain` (24 rows of a 20 MP
#: photo): a strip's float planes stay in the CPU's caches, and buffers this small are reused
#: from strip to strip instead of being mapped and page-faulted afresh for each.
STRIP_PIXELS = 1 << 17


def apply_tone(image: np.ndarray, luma_gain: np.ndarray, chroma_gain: np.ndarray, *,
               strip: int | None = None) -> np.ndarray:
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
    strip : int, optional
        Rows per strip (default: about :data:`STRIP_PIXELS` pixels).

    Notes
    -----
    One pass per strip, on planes: the luma ``Y`` and ``(g - s) Y`` once per pixel, then per
    channel one float product ``s x`` and one saturating, rounding add of ``(g - s) Y`` into
    the image's dtype, the three channels interleaved back into the output's rows.
    """
    import cv2

    if luma_gain.shape != chroma_gain.shape or luma_gain.ndim != 2:
        raise ValueError(f"luma_gain and chroma_gain must be equal (h, w) fields, got "
                         f"{luma_gain.shape} and {chroma_gain.shape}")
    h, w = image.shape[:2]
    s_rows = _FieldRows(chroma_gain, h, w)
    t_rows = _FieldRows(luma_gain.astype(np.float32) - chroma_gain.astype(np.float32), h, w)
    wr, wg, wb = REC601

    def one_strip(src: np.ndarray, out: np.ndarray, y0: int, y1: int, depth: int, scratch) -> None:
        s, ty = s_rows(y0, y1, scratch(0)), t_rows(y0, y1, scratch(1))
        r, g, b = cv2.split(src)
        luma = cv2.addWeighted(r, wr, g, wg, 0.0, dst=scratch(2), dtype=cv2.CV_32F)
        cv2.addWeighted(b, wb, luma, 1.0, 0.0, dst=luma, dtype=cv2.CV_32F)
        cv2.multiply(luma, ty, dst=ty)
        sx = scratch(3)
        channels = []
        for x in (r, g, b):
            cv2.multiply(x, s, dst=sx, dtype=cv2.CV_32F)
            channels.append(cv2.add(sx, ty, dtype=depth))
        cv2.merge(channels, dst=out)

    return _by_strips(image, strip, one_strip)


def apply_log2_gain(image: np.ndarray, log_gain: np.ndarray, *, offset: np.ndarray | None = None,
                    strip: int | None = None) -> np.ndarray:
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
    strip : int, optional
        Rows per strip (default: about :data:`STRIP_PIXELS` pixels).
    """
    import cv2

    h, w = image.shape[:2]
    gain = _FieldRows(np.exp2(log_gain.astype(np.float32)), h, w)
    if offset is not None:
        if offset.shape != log_gain.shape:
            raise ValueError(f"offset must have log_gain's shape {log_gain.shape}, got {offset.shape}")
        full_scale = 1.0 if image.dtype.kind == "f" else float(np.iinfo(image.dtype).max)
        offset = _FieldRows(offset.astype(np.float32) * np.float32(full_scale), h, w)

    def one_strip(src: np.ndarray, out: np.ndarray, y0: int, y1: int, depth: int, scratch) -> None:
        g = gain(y0, y1, scratch(0, 3))
        if offset is None:
            # cv2.multiply with a dtype saturates and rounds integer results in one SIMD pass
            cv2.multiply(src, g, dst=out, dtype=depth)
            return
        # float product, then cv2.add saturates and rounds once into the image's dtype
        scaled = cv2.multiply(src, g, dst=scratch(1, 3), dtype=cv2.CV_32F)
        cv2.add(scaled, offset(y0, y1, scratch(2, 3)), dst=out, dtype=depth)

    return _by_strips(image, strip, one_strip)


def _by_strips(image: np.ndarray, strip: int | None, one_strip) -> np.ndarray:
    """``one_strip(src, out, y0, y1, depth, scratch)`` over horizontal strips of ``image`` -> the output.

    ``src`` is rows ``y0:y1`` of ``image`` (float images as float32) and ``out`` the same rows
    of the output, which ``one_strip`` fills in the image's dtype (``depth``: its OpenCV
    depth); float results are then clipped to [0, 1]. ``scratch(k, channels=1)`` is the
    calling thread's k-th float32 buffer of the strip's shape, reused from strip to strip.
    Strips are independent and OpenCV releases the GIL, so they run on up to 4 threads, each
    taking every n-th strip: the cores of a laptop share a 20 MP photo's pass.
    """
    import cv2

    is_float = image.dtype.kind == "f"
    if is_float:
        image = image.astype(np.float32, copy=False)
    depth = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U,
             np.dtype(np.float32): cv2.CV_32F}[image.dtype]
    h, w = image.shape[:2]
    strip = max(1, int(strip)) if strip is not None else max(8, STRIP_PIXELS // w)
    out = np.empty(image.shape, image.dtype)
    starts = range(0, h, strip)
    workers = min(len(starts), os.cpu_count() or 1, 4)

    def run(first: int) -> None:
        buffers: dict[tuple[int, int], np.ndarray] = {}
        for y0 in starts[first::workers]:
            y1 = min(h, y0 + strip)

            def scratch(k: int, channels: int = 1) -> np.ndarray:
                if (k, channels) not in buffers:
                    buffers[k, channels] = np.empty((strip, w, channels), np.float32)
                buf = buffers[k, channels][:y1 - y0]
                return buf[..., 0] if channels == 1 else buf

            one_strip(image[y0:y1], out[y0:y1], y0, y1, depth, scratch)

    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, range(workers)))
    else:
        run(0)
    if is_float:
        np.clip(out, 0, 1, out=out)
    return out


class _FieldRows:
    """A low-resolution field (h, w[, c]) bilinearly upsampled to (height, width), pixel-centre
    aligned (the values of ``cv2.resize(field, (width, height), INTER_LINEAR)``), handed out a
    strip of rows at a time.

    Bilinear interpolation is separable: the vertical pass is done once, for every output row
    at the field's own width (11 MB for a 20 MP photo's 768-wide field), and each strip widens
    its rows of that, a horizontal-only resize that gives the same values on any run of rows.
    """

    def __init__(self, field: np.ndarray, height: int, width: int):
        import cv2

        self._resize = cv2.resize
        self._linear = cv2.INTER_LINEAR
        field = np.ascontiguousarray(field, dtype=np.float32)
        gh, gw = field.shape[:2]
        self.width = width
        self.tall = field if gh == height else cv2.resize(field, (gw, height), interpolation=cv2.INTER_LINEAR)

    def __call__(self, y0: int, y1: int, out: np.ndarray) -> np.ndarray:
        """Rows ``y0:y1`` at full width, written into ``out`` ((y1 - y0, width[, c]) float32)."""
        rows = self.tall[y0:y1]
        if rows.shape[1] == self.width:
            out[...] = rows
            return out
        return self._resize(rows, (self.width, y1 - y0), dst=out, interpolation=self._linear)
