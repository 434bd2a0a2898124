"""The floor of NumPy image operations shared by every stage: dtype <-> float [0, 1], channel
layouts, Rec. 601 luma, the sRGB transfer functions and area resizing to a long side.

Follows scikit-image's convention: integers map to [0, 1] by their full range; float input
keeps its values (float32 out). NumPy only (OpenCV imported inside the one function that needs
it): the ONNX-only path imports this module and must not pay for torch. The torch twins of
these helpers (tensor layouts, luma of (B, 3, H, W) tensors) are in :mod:`sice.tensorops`.
"""
from __future__ import annotations

import numpy as np


def to_float32(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]; float -> float32 unchanged (values are not clipped)."""
    a = np.asarray(pixels)
    if a.dtype == np.uint8:
        return a.astype(np.float32) * np.float32(1 / 255)
    if a.dtype == np.uint16:
        return a.astype(np.float32) * np.float32(1 / 65535)
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False)
    if a.dtype == bool:
        return a.astype(np.float32)
    raise ValueError(f"image dtype must be uint8, uint16 or float, got {a.dtype}")


def from_float32(image: np.ndarray, dtype) -> np.ndarray:
    """float in [0, 1] -> ``dtype`` (uint8, uint16 with rounding and clipping, or float32 clipped)."""
    dtype = np.dtype(dtype)
    a = np.asarray(image, dtype=np.float32)
    if dtype == np.uint8:
        return np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.clip(a * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
    if dtype.kind == "f":
        return np.clip(a, 0, 1).astype(dtype)
    raise ValueError(f"target dtype must be uint8, uint16 or float, got {dtype}")


def checked_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as (H, W, 3) float32 clipped to [0, 1]; ValueError naming ``name`` when it is
    not (H, W, 3) or not float."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {a.shape}")
    if a.dtype.kind != "f":
        raise ValueError(f"{name} must be float in [0, 1], got dtype {a.dtype}")
    return np.clip(a.astype(np.float32, copy=False), 0.0, 1.0)


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) with C in 1..4 -> (H, W, 3): grey replicated, alpha dropped."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[..., None]
    c = a.shape[2]
    if c in (1, 2):
        return np.repeat(a[..., :1], 3, axis=2)
    if c in (3, 4):
        return a[..., :3]
    raise ValueError(f"image must have 1-4 channels, got shape {a.shape}")


def split_alpha(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, C) -> (colour part, alpha or None)."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        return a[..., None], None
    if a.shape[2] in (2, 4):
        return a[..., :-1], a[..., -1:]
    return a, None


#: Rec. 601 luma weights (R, G, B), as MATLAB's rgb2gray and OpenCV's cvtColor use: the one
#: definition of luma in sice (NumPy here, torch in :func:`sice.tensorops.luminance`).
REC601 = (0.299, 0.587, 0.114)


def luminance(rgb: np.ndarray, *, dtype=np.float32) -> np.ndarray:
    """Rec. 601 luma of float RGB.

    Parameters
    ----------
    rgb : (..., 3) ndarray
        Gamma-encoded RGB (the weights apply to encoded values: this is luma, Y').
    dtype : float dtype
        Precision of the product (float32 by default; float64 where a metric needs it).

    Returns
    -------
    (...) ndarray of ``dtype``
    """
    return np.asarray(rgb, dtype=dtype) @ np.array(REC601, dtype=dtype)


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function (IEC 61966-2-1), [0, 1] -> [0, 1] linear, float32."""
    v = np.asarray(values, dtype=np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """sRGB transfer function (IEC 61966-2-1), linear [0, 1] -> encoded [0, 1], float32.

    Linear values outside [0, 1] are clipped first.
    """
    v = np.clip(np.asarray(values, dtype=np.float32), 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055).astype(np.float32)


def resize_long_side(image: np.ndarray, size: int) -> np.ndarray:
    """Area-downscale (OpenCV ``INTER_AREA``) so that the long side is at most ``size``.

    Parameters
    ----------
    image : (H, W[, C]) ndarray
        Any dtype OpenCV resizes (uint8, uint16, float32, float64).
    size : int
        Largest long side of the result; the short side is scaled by the same factor and
        rounded (at least 1 pixel).

    Returns
    -------
    ndarray
        ``image`` itself when its long side is already at most ``size`` (never upscales),
        otherwise a new array of the same dtype.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    scale = size / max(image.shape[:2])
    return image if scale >= 1 else rescale(np.ascontiguousarray(image), scale)


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize (H, W[, C]) float32 by ``scale``: area averaging when shrinking (no aliasing),
    bicubic when enlarging; each side becomes ``max(1, round(side * scale))``. ``scale == 1``
    returns ``image`` itself. Bicubic may overshoot the input's range: clip if it matters.
    """
    import cv2

    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
