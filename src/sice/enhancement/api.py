"""The public enhancement API: :class:`Enhancer`, :func:`enhance_array`, :func:`enhance_file`.

:class:`Enhancer` holds a loaded model (created once, reused for a whole batch) behind a
:class:`~sice.enhancement.runners.Runner`, and feeds it the way its registry config declares
(``photo_path``):

* ``"tiles"``: fully convolutional networks (the original SICE models, CAN) run in overlapping
  tiles whose overlap covers the receptive field, so memory stays bounded and the result equals
  untiled inference;
* ``"gain"`` / ``"tone"``: grid models (the default model) compute their fields at a working
  resolution; :mod:`sice.enhancement.apply` applies them at full resolution in strips, in the
  photo's own dtype.

Outputs always have exactly the input's size. :meth:`Enhancer.enhance_pixels` converts any
file's pixels (grey, alpha, 16-bit, float) in and out so the output keeps the input's channel
layout and bit depth. Torch is imported only for torch models; the default ONNX path needs none.
"""
from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageReadError, ModelError, SiceError
from ..files import same_file
from ..imageops import from_float32, luminance, resize_long_side, split_alpha, to_float32, to_rgb
from ..weights import DEFAULT_ALIAS
from .apply import apply_log2_gain, apply_tone, gain_inputs
from .runners import load_runner

DEFAULT_TILE = 512
#: JPEG/WebP quality when the input gives none to keep (not a JPEG) and none is asked for.
DEFAULT_QUALITY = 95
#: Long side of each panel of a before/after image (a 24 MP side-by-side pair would be 48 MP).
COMPARE_SIDE = 1600


class Enhancer:
    """A loaded model ready to enhance images.

    Parameters
    ----------
    model : str, path-like, nn.Module or None
        Registry name (with shipped weights, or ``NAME:untrained``), a sice checkpoint path, an
        ``.onnx`` file exported by ``sice export``, or a model object. None: the default model.
    device : {"cpu", "cuda", "cuda:N"}
        Where torch runs. A CUDA device needs a CUDA build of torch and a visible GPU
        (:class:`SiceError` otherwise) and always uses the torch backend; onnxruntime runs on
        the CPU.
    backend : {"auto", "torch", "onnxruntime"}
        "auto": onnxruntime when the model has an ONNX form and the device is the CPU (faster
        there), else torch.
    tile : int
        Tile side for fully convolutional models (pixels at network resolution).

    Raises
    ------
    ValueError
        An unknown ``backend`` or ``device``, or ``tile`` < 16.
    SiceError
        CUDA asked for but not available, or the onnxruntime backend asked to run on CUDA.
    ModelError
        Unknown model name, unreadable checkpoint or ONNX file.
    """

    def __init__(self, model: Any = None, *, device: str = "cpu", backend: str = "auto",
                 tile: int = DEFAULT_TILE, decomposition: str = "auto"):
        if backend not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'onnxruntime', got {backend!r}")
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if tile < 16:
            raise ValueError(f"tile must be at least 16 pixels, got {tile}")
        if str(device).startswith("cuda"):
            _require_cuda(device)
            if backend == "onnxruntime":
                raise SiceError(f"device {device!r}: the onnxruntime backend runs on the CPU only; "
                                "use the torch backend (or auto) with CUDA")
            backend = "torch"
        self.device = device
        self.tile = int(tile)
        self.decomposition = decomposition
        self._runner = load_runner(DEFAULT_ALIAS if model is None else model, device=device, backend=backend)
        self.name = self._runner.name
        self.backend = self._runner.backend
        #: How photos reach the model: "tiles", "gain" or "tone" (its registry config's photo_path).
        self.photo_path = self._runner.photo_path

    def enhance_rgb(self, rgb: np.ndarray, *, strength: float = 1.0) -> np.ndarray:
        """Enhance RGB pixels.

        Parameters
        ----------
        rgb : (H, W, 3) ndarray
            uint8, uint16, or float in [0, 1].
        strength : float in [0, 1]
            How much of the model's tone change to apply, in the model's own tone domain (see
            :meth:`enhance_pixels`).

        Returns
        -------
        (H, W, 3) float32 ndarray in [0, 1], the input's size.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3), got shape {rgb.shape}")
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError(f"image must be at least 1x1, got {rgb.shape[:2]}")
        strength = self._check_strength(strength)
        check_float_range(rgb)
        return self._enhance_checked(rgb, strength)

    def _enhance_checked(self, rgb: np.ndarray, strength: float) -> np.ndarray:
        """:meth:`enhance_rgb` of (H, W, 3) pixels whose shape, range and strength are checked."""
        rgb = np.clip(to_float32(rgb), 0.0, 1.0)
        if self.photo_path == "tiles":
            out = self._runner.run_tiles(rgb, tile=self.tile, decomposition=self.decomposition)
            _check_model_output(self.name, "image", out, rgb.shape)
            return out
        return self._field_path(rgb, strength)

    def _check_strength(self, strength: float) -> float:
        try:
            value = float(strength)
        except (TypeError, ValueError):
            raise ValueError(f"strength must be a number in [0, 1], got {strength!r}") from None
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise ValueError(f"strength must be in [0, 1], got {strength!r}")
        if value != 1.0 and self.photo_path == "tiles":
            raise ValueError(f"strength must be 1 for model {self.name!r}: it outputs pixels, not gain "
                             "fields that a strength could scale")
        return value

    def _field_path(self, colour: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """Grid models on (H, W, 3) pixels of any dtype, without a full-size float copy: the
        fields come from a small float image and are applied strip by strip in the input's own
        dtype (uint8 stays uint8 all the way: this is what makes 20 MP photos fast).

        ``strength`` scales the change in the model's tone domain (0: the input unchanged):
        ``"gain"``: it multiplies the log2 gains and the offsets; ``"tone"``: it is a power of
        both gains, i.e. it scales them in stops, so every cell's curve stays monotone and
        pinned at black and white.
        """
        thumb, work = gain_inputs(colour, self._runner.work_size)
        fields = self._runner.photo_fields(thumb, work)
        if self.photo_path == "tone":
            luma_gain, chroma_gain = _checked_fields(self.name, fields, ("luma gains", "chroma gains"),
                                                     work.shape[:2])
            if strength != 1.0:
                luma_gain = np.power(luma_gain, np.float32(strength))
                chroma_gain = np.power(chroma_gain, np.float32(strength))
            return apply_tone(colour, luma_gain, chroma_gain)
        log_gain, *rest = _checked_fields(self.name, fields, ("log2 gains", "offsets"), (*work.shape[:2], 3),
                                          at_least=1)
        offset = rest[0] if rest else None
        if strength != 1.0:
            log_gain = log_gain * np.float32(strength)
            offset = None if offset is None else offset * np.float32(strength)
        return apply_log2_gain(colour, log_gain, offset=offset)

    def enhance_pixels(self, pixels: np.ndarray, *, strength: float = 1.0) -> np.ndarray:
        """Enhance pixels of any layout sice reads; returns the same shape and dtype.

        Parameters
        ----------
        pixels : (H, W) or (H, W, C) ndarray
            C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); uint8, uint16, or float in
            [0, 1] (any float dtype).
        strength : float in [0, 1]
            How much of the model's tone change to apply, in its own tone domain: its gain
            fields (in stops) and offsets are multiplied by ``strength`` before they reach the
            photo, so 0.5 is half the exposure change in stops (not a 50 % blend of pixels), a
            tone model's curves stay pinned at black and white, and 0 returns the input.
            Models that output pixels directly accept only 1.

        Returns
        -------
        ndarray
            Same shape and dtype as ``pixels``. Grey images are enhanced as RGB and converted
            back to grey (Rec. 601 luma); alpha is passed through untouched.

        Raises
        ------
        ValueError
            A shape or dtype sice does not enhance, float values outside [0, 1] (or NaN), or
            ``strength`` outside [0, 1] (or != 1 for a model without gain fields).
        """
        arr = np.asarray(pixels)
        squeeze = arr.ndim == 2
        if squeeze:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"pixels must be (H, W) or (H, W, 1..4), got shape {np.shape(pixels)}")
        if arr.dtype not in (np.uint8, np.uint16) and arr.dtype.kind != "f":
            raise ValueError(f"pixels must be uint8, uint16 or float in [0, 1], got dtype {arr.dtype}")
        strength = self._check_strength(strength)
        check_float_range(arr)
        colour, alpha = split_alpha(arr)
        grey = colour.shape[2] == 1
        rgb = np.repeat(colour, 3, axis=2) if grey else colour
        dtype = arr.dtype
        if self.photo_path != "tiles" and arr.dtype in (np.uint8, np.uint16):
            out = self._field_path(np.ascontiguousarray(rgb), strength)
            if grey:
                out = from_float32(luminance(to_float32(out))[..., None], dtype)
        else:
            if rgb.shape[0] < 1 or rgb.shape[1] < 1:
                raise ValueError(f"image must be at least 1x1, got {rgb.shape[:2]}")
            out = self._enhance_checked(rgb, strength)  # checked above: one pass over a float image
            if grey:
                out = luminance(out)[..., None]
            out = from_float32(out, dtype)
        if alpha is not None:
            out = np.concatenate([out, alpha.astype(dtype, copy=False)], axis=2)
        return out[..., 0] if squeeze else out


def _check_model_output(model: str, what: str, array: np.ndarray, shape: tuple) -> None:
    """A model's result must have the expected shape and be finite: NaN would be written as
    black or grey pixels with exit status 0."""
    if np.shape(array) != tuple(shape):
        raise ModelError(f"model {model!r} returned {what} of shape {np.shape(array)}, expected {tuple(shape)}")
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ModelError(f"model {model!r} returned {bad} NaN or infinite {what} (of {array.size}) for this "
                         "image; its weights may be broken")


def _checked_fields(model: str, fields: tuple, names: tuple[str, ...], shape: tuple, *,
                    at_least: int | None = None) -> tuple:
    """The fields a grid model returned, checked: ``names`` of them (or ``at_least`` the first
    few), each of ``shape`` and finite."""
    if not (at_least or len(names)) <= len(fields) <= len(names):
        raise ModelError(f"model {model!r} returned {len(fields)} fields, expected {' and '.join(names)}")
    for what, field in zip(names, fields):
        _check_model_output(model, what, field, shape)
    return fields


def enhance_array(image: np.ndarray, *, model: Any = None, enhancer: Enhancer | None = None,
                  strength: float = 1.0, channel_axis: int | None = -1, **kwargs) -> np.ndarray:
    """Enhance one image array; the result has the input's shape and dtype.

    The implementation of :func:`sice.enhance` (documented there). ``enhancer``: an
    :class:`Enhancer` to use instead of loading ``model``; other keywords go to
    :class:`Enhancer`.
    """
    arr = np.asarray(image)
    if arr.ndim == 2 or channel_axis is None:
        if arr.ndim != 2:
            raise ValueError(f"channel_axis=None means a grey (M, N) image, got shape {arr.shape}")
        moved = arr
    elif arr.ndim == 3:
        if not isinstance(channel_axis, (int, np.integer)) or not -3 <= channel_axis <= 2:
            raise ValueError(f"channel_axis must be an axis of the 3-D image (-3..2) or None, got {channel_axis!r}")
        axis = int(channel_axis) % 3
        moved = np.moveaxis(arr, axis, -1)
    else:
        raise ValueError(f"image must be (M, N) or (M, N, C), got shape {arr.shape}")
    enhancer = enhancer or _RECENT.get(model, **kwargs)
    out = enhancer.enhance_pixels(moved, strength=strength)
    return out if moved is arr else np.moveaxis(out, -1, axis)


def check_float_range(image: np.ndarray) -> None:
    """Raise ValueError unless a float image is finite and in [0, 1] (integer images pass).

    scikit-image's convention: float images are in [0, 1]; a float image holding 0..255 would
    otherwise be clipped to a flat white-and-grey picture without a word.
    """
    arr = np.asarray(image)
    if arr.dtype.kind != "f" or arr.size == 0:
        return
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("float image values must be finite and in [0, 1]; the image holds NaN or infinity")
    if lo < 0.0 or hi > 1.0:
        hint = " (an 8-bit image as float? divide it by 255, or pass it as uint8)" if hi > 1.0 else ""
        raise ValueError(f"float image values must be in [0, 1], got values in [{lo:.6g}, {hi:.6g}]{hint}")


class _RecentEnhancers:
    """The few Enhancers that :func:`sice.enhance` / :func:`sice.enhance_file` loaded last, so
    repeated calls do not reload weights. Keyed on (model, options); a model *object* is held by
    the entry and compared by identity, so a recycled ``id()`` can never return another model's
    enhancer. Bounded: an application cycling through models does not keep them all loaded."""

    def __init__(self, size: int = 4):
        self.size = size
        self.entries: collections.OrderedDict[tuple, tuple[Any, Enhancer]] = collections.OrderedDict()

    def get(self, model: Any, **kwargs) -> Enhancer:
        by_name = isinstance(model, (str, os.PathLike, type(None)))
        try:
            key = (model if by_name else id(model), tuple(sorted(kwargs.items())))
            hash(key)
        except TypeError:  # unhashable options: nothing to key on
            return Enhancer(model, **kwargs)
        held = self.entries.get(key)
        if held is not None and (by_name or held[0] is model):
            self.entries.move_to_end(key)
            return held[1]
        enhancer = Enhancer(model, **kwargs)
        self.entries[key] = (model, enhancer)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return enhancer


#: Held by the module on purpose: the functional API has no object to hold it.
_RECENT = _RecentEnhancers()


def enhance_file(src: os.PathLike | str, dst: os.PathLike | str, *, model: Any = None,
                 enhancer: Enhancer | None = None, strength: float = 1.0, quality: int | None = None,
                 compare: os.PathLike | str | None = None, max_pixels: int | None = None,
                 overwrite: bool = True, **kwargs) -> Path:
    """Read ``src``, enhance it, write ``dst`` atomically; the implementation of
    :func:`sice.enhance_file` (documented there). ``enhancer``: an :class:`Enhancer` to use
    instead of loading ``model``; other keywords go to :class:`Enhancer`."""
    image = read_source(src, dst, compare=compare, max_pixels=max_pixels)
    enhancer = enhancer or _RECENT.get(model, **kwargs)
    out = enhancer.enhance_pixels(image.pixels, strength=strength)
    return write_enhanced(image, out, dst, quality=quality, compare=compare, overwrite=overwrite)[0]


def read_source(src: os.PathLike | str, dst: os.PathLike | str | None = None, *,
                compare: os.PathLike | str | None = None, max_pixels: int | None = None):
    """The first half of :func:`enhance_file`: ``src`` decoded (:class:`sice.io.ImageFile`),
    once it is sure that neither ``dst`` nor ``compare`` is ``src`` itself.

    Raises
    ------
    ImageWriteError
        ``dst`` or ``compare`` is the input file.
    ImageReadError
        ``src`` cannot be read, is over ``max_pixels``, or is a float image outside [0, 1].
    """
    from ..errors import ImageWriteError
    from ..io import read_image

    src = Path(src)
    for target in (dst, compare):
        if target is not None and Path(target).exists() and same_file(src, Path(target)):
            raise ImageWriteError(target, "output path is the input file; refusing to overwrite an input")
    image = read_image(src, max_pixels=max_pixels)
    try:
        check_float_range(image.pixels)
    except ValueError as exc:  # a float TIFF outside [0, 1]: a problem of that file, named
        raise ImageReadError(src, str(exc)) from None
    return image


def write_enhanced(image, out: np.ndarray, dst: os.PathLike | str, *, quality: int | None = None,
                   compare: os.PathLike | str | None = None, overwrite: bool = True) -> tuple[Path, int]:
    """The second half of :func:`enhance_file`: the enhanced pixels ``out`` of ``image`` (from
    :func:`read_source`) written to ``dst`` like the source (metadata; a JPEG's quality and
    subsampling unless ``quality`` is given), and the before/after image to ``compare``.
    Returns the path written and the JPEG/WebP quality it was given (:func:`jpeg_settings`)."""
    from ..io import write_image

    q, subsampling = jpeg_settings(image.path, dst, quality)
    path = write_image(dst, out, like=image, quality=q, subsampling=subsampling, overwrite=overwrite)
    if compare is not None:
        write_image(compare, before_after_image(image.pixels, out), like=image, quality=q, overwrite=overwrite)
    return path, q


def enhance_to_bytes(src: os.PathLike | str, *, enhancer: Enhancer, strength: float = 1.0,
                     quality: int | None = None, max_pixels: int | None = None,
                     format: str | None = None) -> tuple[bytes, str]:
    """Read ``src``, enhance it, and return the encoded result with its format name: the bytes
    :func:`enhance_file` writes for an output of that format (what ``sice serve`` replies).

    Parameters
    ----------
    src : path-like
        Any image file sice reads.
    enhancer : Enhancer
        The loaded model.
    strength, quality, max_pixels
        As for :func:`enhance_file` (``quality`` None: a JPEG keeps its input's quality).
    format : str, optional
        ``"JPEG"``, ``"PNG"``, ``"TIFF"``, ``"BMP"`` or ``"WEBP"``; default the input's format.

    Returns
    -------
    data : bytes
    format : str

    Raises
    ------
    ImageReadError
        ``src`` cannot be read, is over ``max_pixels``, or is a float image outside [0, 1].
    ValueError
        A ``strength`` the model cannot take.
    """
    from ..io import FORMATS, encode_image, format_name

    fmt = format_name(format) if format is not None else None
    image = read_source(src, max_pixels=max_pixels)
    out = enhancer.enhance_pixels(image.pixels, strength=strength)
    fmt = fmt or image.format
    q, subsampling = jpeg_settings(src, "out" + FORMATS[fmt][0], quality)
    return encode_image(out, fmt, like=image, quality=q, subsampling=subsampling), fmt


def jpeg_settings(src: os.PathLike | str, dst: os.PathLike | str, quality: int | None = None
                  ) -> tuple[int, int | None]:
    """The JPEG/WebP quality and chroma subsampling to write ``dst`` with.

    An explicit ``quality`` wins (subsampling then follows the writer's default). Otherwise a
    JPEG written from a JPEG keeps the input's quality (estimated from its quantisation tables)
    and subsampling, so a 2.2 MB camera JPEG does not come back as 13 MB; anything else gets
    quality 95.
    """
    from ..io import format_for_path, jpeg_encoding

    if quality is not None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"quality must be in 1..100, got {quality}")
        return int(quality), None
    if format_for_path(dst) == "JPEG":
        encoding = jpeg_encoding(src)
        if encoding is not None:
            return encoding
    return DEFAULT_QUALITY, None


def before_after_image(before: np.ndarray, after: np.ndarray, *, side: int = COMPARE_SIDE) -> np.ndarray:
    """The input and its enhanced version next to each other, labelled, as one uint8 RGB image.

    Parameters
    ----------
    before, after : (H, W[, C]) ndarray
        The same size; any layout and dtype :meth:`Enhancer.enhance_pixels` takes (grey is shown
        as grey, alpha is dropped).
    side : int
        Each panel is area-downscaled so its long side is at most this.

    Returns
    -------
    (h, 2 w + gap, 3) or (2 h + gap, w, 3) uint8 ndarray
        Side by side for upright photos, one above the other for wide ones (so the result stays
        roughly square); "before" and "after" written in the top-left corners.
    """
    import cv2

    panels = []
    for pixels, label in ((before, "before"), (after, "after")):
        rgb = to_rgb(np.asarray(pixels))
        if rgb.dtype.kind == "f":
            rgb = np.clip(np.nan_to_num(rgb), 0, 1)
        small = from_float32(to_float32(resize_long_side(np.ascontiguousarray(rgb), side)), np.uint8)
        panels.append(_label(np.ascontiguousarray(small), label, cv2))
    h, w = panels[0].shape[:2]
    gap = max(2, round(max(h, w) / 200))
    if w > h:
        return np.concatenate([panels[0], np.full((gap, w, 3), 255, np.uint8), panels[1]], axis=0)
    return np.concatenate([panels[0], np.full((h, gap, 3), 255, np.uint8), panels[1]], axis=1)


def _label(panel: np.ndarray, text: str, cv2) -> np.ndarray:
    scale = max(0.4, max(panel.shape[:2]) / 900)
    thickness = max(1, round(2 * scale))
    org = (round(12 * scale), round(30 * scale))
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return panel


def _require_cuda(device: str) -> None:
    """SiceError (one line) unless torch can run on ``device``."""
    import torch

    if not torch.cuda.is_available():
        why = (f"this torch ({torch.__version__}) is built without CUDA" if torch.version.cuda is None
               else "no CUDA device is visible")
        raise SiceError(f"device {device!r}: CUDA is not available ({why}); use device 'cpu'")


