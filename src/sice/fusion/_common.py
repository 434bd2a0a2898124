"""Helpers shared by the generators: conversions, output clean-up, the radiance maps a stack shares.

Every generator receives aligned ``float32`` RGB frames in [0, 1] (H, W, 3), sorted dark to
bright, and returns the same layout. OpenCV's photo module works on BGR and, for the CRF and
merge steps, on 8-bit images: the conversions live here so that each generator reads as its
method.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import hashlib
import threading
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

#: Rec. 709 luminance weights (R, G, B), for linear radiance (the HDR tone-mapping operators).
LUMINANCE = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def to_u8_bgr(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] -> (H, W, 3) uint8 BGR, rounded (OpenCV's photo input)."""
    return np.ascontiguousarray(np.clip(frame[..., ::-1] * 255.0 + 0.5, 0, 255).astype(np.uint8))


def bgr_to_rgb(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR -> contiguous RGB float32."""
    return np.ascontiguousarray(img[..., ::-1], dtype=np.float32)


def finish(img: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The post-processing every generator's output goes through.

    Non-finite values become 0 (a tone-mapping operator divides by a zero luminance in black
    pixels), values are clipped to [0, 1], the result is float32 and has the frames' shape.

    Parameters
    ----------
    img : (H, W, 3) ndarray
        Raw generator output, any float dtype and range.
    shape : tuple
        The input frames' shape (H, W, 3); a different output shape is a bug in the generator.

    Returns
    -------
    (H, W, 3) float32 ndarray in [0, 1]
    """
    out = np.asarray(img, dtype=np.float32)
    if out.shape != tuple(shape):
        raise RuntimeError(f"generator returned shape {out.shape}, expected {tuple(shape)}")
    out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


_OPENCV_LOG_LOCK = threading.Lock()


@contextlib.contextmanager
def opencv_errors_only() -> Iterator[None]:
    """Silence OpenCV's warnings (not its errors) for the duration of a call, then restore the level.

    ``TonemapReinhard`` prints "[ WARN:0@...] ... processing of multi-channel arrays might be
    changed in the future" straight to stderr on every call, a notice about OpenCV's own
    internals that users cannot act on.
    """
    with _OPENCV_LOG_LOCK:
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            yield
        finally:
            cv2.utils.logging.setLogLevel(previous)


def stack_key(tag: str, frames8: Sequence[np.ndarray], times: np.ndarray | None) -> bytes:
    """A digest of a quantised stack and its exposure times, to reuse results across generators."""
    h = hashlib.blake2b(tag.encode(), digest_size=16)
    for f in frames8:
        h.update(repr(f.shape).encode())
        h.update(np.ascontiguousarray(f).data)
    if times is not None:
        h.update(np.asarray(times, dtype=np.float64).tobytes())
    return h.digest()


class _LRU:
    """A tiny thread-safe LRU cache of the last few radiance maps.

    The dataset builder runs every generator on the same stack one after another; the HDR
    generators share the CRF recovery and radiance merge (one per calibration method), which is
    then computed once per stack instead of once per tone-mapping operator. The cached arrays are
    read-only so that a generator cannot alter another's input.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._data: collections.OrderedDict[bytes, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: bytes, compute: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        value.setflags(write=False)
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


#: The radiance maps of the stack being fused, while :func:`shared_radiance` holds them.
_SHARED: contextvars.ContextVar[_LRU | None] = contextvars.ContextVar("sice_shared_radiance", default=None)


@contextlib.contextmanager
def shared_radiance(size: int = 2):
    """Within the block, the HDR generators of one stack share its radiance maps (one per
    calibration method, see :class:`_LRU`); outside any block each computes its own. The caller
    that runs several generators on one stack (the dataset builder, per scene) owns the cache,
    and it is gone when the block ends: nothing stays in memory between scenes."""
    token = _SHARED.set(_LRU(size))
    try:
        yield
    finally:
        _SHARED.reset(token)


def radiance_map(key: bytes, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()``, or the radiance map already computed for ``key`` inside the current
    :func:`shared_radiance` block (read-only either way)."""
    cache = _SHARED.get()
    if cache is not None:
        return cache.get_or_compute(key, compute)
    value = compute()
    value.setflags(write=False)
    return value
