"""The one enhancement core: any photo, any size, through any registered model.

:class:`Enhancer` holds a loaded model (created once, reused for a whole batch) and knows how to
feed it, from the model's :class:`~sice.models.ModelConfig`:

* fully convolutional networks (the original SICE models, CAN) run in overlapping tiles whose
  overlap covers the receptive field, so memory stays bounded and the result equals untiled
  inference;
* models that look at a down-scaled whole image and predict a gain field (the default model,
  HDRNet-style) compute their gains at a working resolution and apply them at full resolution
  in strips;
* inputs that need a size multiple are padded by reflection and cropped back: outputs always
  have exactly the input's size.

Everything is float32 RGB in [0, 1] inside; :func:`enhance_pixels` converts any file's pixels
(grey, alpha, 16-bit, float) in and out so the output keeps the input's channel layout and bit
depth. Torch is imported only for torch models; the default ONNX path needs no torch.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .errors import ImageReadError, ModelError, SiceError
from .imageops import from_float32, luminance, split_alpha, to_float32, to_rgb
from .weights import DEFAULT_ALIAS

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
        self._runner = _load_runner(DEFAULT_ALIAS if model is None else model, device=device, backend=backend)
        self.name = self._runner.name
        self.backend = self._runner.backend

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
        rgb = np.clip(to_float32(rgb), 0.0, 1.0)
        if self._runner.kind == "gain":
            return self._gain_path(rgb, strength)
        if self._runner.kind == "tone":
            return self._tone_path(rgb, strength)
        out = self._runner.run(rgb, tile=self.tile, decomposition=self.decomposition)
        _check_model_output(self.name, "image", out, rgb.shape)
        return out

    def _check_strength(self, strength: float) -> float:
        try:
            value = float(strength)
        except (TypeError, ValueError):
            raise ValueError(f"strength must be a number in [0, 1], got {strength!r}") from None
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise ValueError(f"strength must be in [0, 1], got {strength!r}")
        if value != 1.0 and self._runner.kind not in ("gain", "tone"):
            raise ValueError(f"strength must be 1 for model {self.name!r}: it outputs pixels, not gain "
                             "fields that a strength could scale")
        return value

    def _gain_path(self, colour: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """Gain models on (H, W, 3) pixels of any dtype, without a full-size float copy:
        gains come from a small float image, and are applied strip by strip in the input's
        own dtype (uint8 stays uint8 all the way: this is what makes 20 MP photos fast).
        ``strength`` scales the log2 gains and the offsets (0: the input unchanged)."""
        thumb, work = gain_inputs(colour, self._runner.work_size)
        log_gain, offset = self._runner.gain_fields(thumb, work)
        _check_model_output(self.name, "log2 gains", log_gain, (*log_gain.shape[:2], 3))
        if offset is not None:
            _check_model_output(self.name, "offsets", offset, log_gain.shape)
        if strength != 1.0:
            log_gain = log_gain * np.float32(strength)
            offset = None if offset is None else offset * np.float32(strength)
        return apply_log2_gain(colour, log_gain, offset=offset)

    def _tone_path(self, colour: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """Tone models (``tonegrid``): a luma gain and a chroma gain from the working
        resolution, applied strip by strip in the input's own dtype (:func:`apply_tone`).
        ``strength`` is a power of both gains, i.e. it scales them in stops: every cell's
        curve stays monotone and pinned at black and white (0: the input unchanged)."""
        thumb, work = gain_inputs(colour, self._runner.work_size)
        luma_gain, chroma_gain = self._runner.tone_fields(thumb, work)
        _check_model_output(self.name, "luma gains", luma_gain, work.shape[:2])
        _check_model_output(self.name, "chroma gains", chroma_gain, work.shape[:2])
        if strength != 1.0:
            luma_gain = np.power(luma_gain, np.float32(strength))
            chroma_gain = np.power(chroma_gain, np.float32(strength))
        return apply_tone(colour, luma_gain, chroma_gain)

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
        if self._runner.kind in ("gain", "tone") and arr.dtype in (np.uint8, np.uint16):
            path = self._gain_path if self._runner.kind == "gain" else self._tone_path
            out = path(np.ascontiguousarray(rgb), strength)
            if grey:
                out = from_float32(luminance(to_float32(out))[..., None], dtype)
        else:
            out = self.enhance_rgb(to_float32(rgb), strength=strength)
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
    enhancer = enhancer or _cached_enhancer(model, **kwargs)
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


_ENHANCERS: dict[tuple, Enhancer] = {}


def _cached_enhancer(model: Any, **kwargs) -> Enhancer:
    """One Enhancer per (model, options) for the API: repeated calls do not reload weights."""
    try:
        key = (model if isinstance(model, (str, os.PathLike, type(None))) else id(model),
               tuple(sorted(kwargs.items())))
        hash(key)
    except TypeError:
        return Enhancer(model, **kwargs)
    if key not in _ENHANCERS:
        _ENHANCERS[key] = Enhancer(model, **kwargs)
    return _ENHANCERS[key]


def enhance_file(src: os.PathLike | str, dst: os.PathLike | str, *, model: Any = None,
                 enhancer: Enhancer | None = None, strength: float = 1.0, quality: int | None = None,
                 compare: os.PathLike | str | None = None, max_pixels: int | None = None,
                 overwrite: bool = True, **kwargs) -> Path:
    """Read ``src``, enhance it, write ``dst`` atomically; the implementation of
    :func:`sice.enhance_file` (documented there). ``enhancer``: an :class:`Enhancer` to use
    instead of loading ``model``; other keywords go to :class:`Enhancer`."""
    from .errors import ImageWriteError
    from .io import read_image, write_image

    src, dst = Path(src), Path(dst)
    if dst.exists() and _same_file(src, dst):
        raise ImageWriteError(dst, "output path is the input file; refusing to overwrite an input")
    if compare is not None and Path(compare).exists() and _same_file(src, Path(compare)):
        raise ImageWriteError(compare, "output path is the input file; refusing to overwrite an input")
    image = read_image(src, max_pixels=max_pixels)
    try:
        check_float_range(image.pixels)
    except ValueError as exc:  # a float TIFF outside [0, 1]: a problem of that file, named
        raise ImageReadError(src, str(exc)) from None
    enhancer = enhancer or _cached_enhancer(model, **kwargs)
    out = enhancer.enhance_pixels(image.pixels, strength=strength)
    q, subsampling = jpeg_settings(src, dst, quality)
    path = write_image(dst, out, like=image, quality=q, subsampling=subsampling, overwrite=overwrite)
    if compare is not None:
        write_image(compare, before_after_image(image.pixels, out), like=image, quality=q, overwrite=overwrite)
    return path


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
    from .io import FORMATS, encode_image, read_image

    image = read_image(src, max_pixels=max_pixels)
    try:
        check_float_range(image.pixels)
    except ValueError as exc:
        raise ImageReadError(src, str(exc)) from None
    out = enhancer.enhance_pixels(image.pixels, strength=strength)
    fmt = format or image.format
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
    from .io import estimate_jpeg_quality, format_for_path, jpeg_subsampling

    if quality is not None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"quality must be in 1..100, got {quality}")
        return int(quality), None
    if format_for_path(dst) == "JPEG":
        estimated = estimate_jpeg_quality(src)
        if estimated is not None:
            return estimated, jpeg_subsampling(src)
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Runners: how each kind of model is fed
# --------------------------------------------------------------------------------------------
class _Runner:
    """Feeds one model. ``kind`` is "gain" (provides ``gain_fields(thumb, work)`` -> (log2
    gains, offsets or None) and ``work_size``), "tone" (provides ``tone_fields(thumb, work)`` ->
    (luma gain, chroma gain) and ``work_size``) or "image" (provides ``run(rgb, ...)``)."""

    name: str
    backend: str
    kind: str = "image"
    work_size: int = 1024

    def run(self, rgb: np.ndarray, *, tile: int, decomposition: str) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


def _load_runner(model: Any, *, device: str, backend: str) -> _Runner:
    if isinstance(model, (str, os.PathLike)):
        s = os.fspath(model)
        if s.endswith(".onnx"):
            if device != "cpu":
                raise SiceError(f"{s}: an ONNX model runs with onnxruntime on the CPU; for device {device!r} "
                                "pass a checkpoint or a registry name")
            from .models.onnx_export import OnnxGainRunner

            return OnnxGainRunner.from_file(s)
        if backend in ("auto", "onnxruntime"):
            from .models.onnx_export import shipped_onnx_runner

            runner = shipped_onnx_runner(s, required=backend == "onnxruntime")
            if runner is not None:
                return runner
        from .models import load_model

        module = load_model(s)
    else:
        module = model
        if backend == "onnxruntime":
            raise ModelError("backend 'onnxruntime' needs a model name or an .onnx file, not a model object")
    config = getattr(module, "sice_config", None)
    if config is None:
        raise ModelError("model object was not built by sice.models.create_model (no sice_config)")
    return TorchRunner(module, device=device)


class TorchRunner(_Runner):
    """Runs a torch model from the registry: tiled if fully convolutional, else gain-field."""

    backend = "torch"

    def __init__(self, module, *, device: str = "cpu"):
        import torch

        self.torch = torch
        self.module = module.eval().to(device)
        self.config = module.sice_config
        self.name = self.config.name
        self.device = device
        if device == "cpu":
            self.module = self.module.to(memory_format=torch.channels_last)
        path = self.config.photo_path
        if path in ("gain", "tone"):
            self.kind = path
            self.work_size = int(getattr(module, "work_size", 1024))

    def gain_fields(self, thumb: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(h, w, 3) log2 gains and (h, w, 3) offsets (None for gain-only models) at ``work``."""
        torch = self.torch
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(self.device)
        as_np = lambda t: t[0].float().cpu().numpy().transpose(1, 2, 0)
        with torch.inference_mode():
            if getattr(self.module, "offset", False):
                log_gain, offset = self.module.gain_offset(as_t(thumb), as_t(work))
                return as_np(log_gain), as_np(offset)
            return as_np(self.module.log_gain(as_t(thumb), as_t(work))), None

    def tone_fields(self, thumb: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(h, w) luma gain and (h, w) chroma gain at ``work`` (:meth:`ToneGrid.tone_fields`)."""
        torch = self.torch
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(self.device)
        with torch.inference_mode():
            g, s = self.module.tone_fields(as_t(thumb), as_t(work))
        return g[0, 0].float().cpu().numpy(), s[0, 0].float().cpu().numpy()

    def run(self, rgb: np.ndarray, *, tile: int, decomposition: str) -> np.ndarray:
        with self.torch.inference_mode():
            if self.config.fully_convolutional:
                return self._run_tiled(rgb, tile=tile, decomposition=decomposition)
            return self._run_global(rgb)

    # -- fully convolutional: overlapping tiles ------------------------------------------------
    def _run_tiled(self, rgb: np.ndarray, *, tile: int, decomposition: str) -> np.ndarray:
        cfg = self.config
        planes = [rgb]
        if cfg.aux == "luminance_detail":
            from .decomposition import aux_tensor

            planes.append(np.moveaxis(aux_tensor(rgb, method=decomposition), 0, -1))
        # the planes are joined per tile, not for the whole image: at 24 MP a full-size
        # 5-channel copy would cost 480 MB of peak memory
        return tiled_apply(planes, self._forward_tile, tile=tile, overlap=cfg.receptive_radius,
                           multiple=cfg.size_multiple, out_channels=3)

    def _forward_tile(self, block: np.ndarray) -> np.ndarray:
        torch = self.torch
        t = torch.from_numpy(np.ascontiguousarray(block.transpose(2, 0, 1)))[None].to(self.device)
        if self.device == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)
        if self.config.aux == "luminance_detail":
            out = self.module(t[:, :3], t[:, 3:])
        else:
            out = self.module(t)
        return out[0].float().clamp_(0, 1).permute(1, 2, 0).cpu().numpy()

    # -- whole-image models: gain field at working resolution -----------------------------------
    def _run_global(self, rgb: np.ndarray) -> np.ndarray:
        """Whole-image models without a gain field: one forward pass at full size."""
        torch = self.torch
        t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(self.device)
        return self.module(t)[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Full-resolution building blocks (NumPy/OpenCV, shared with the ONNX runner)
# --------------------------------------------------------------------------------------------
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


def expand_inputs(inputs: Iterable[str], *, recursive: bool = False,
                  exclude: Path | None = None) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Files, folders and globs -> [(file, path relative to its root)], plus [(input, problem)].

    Folders give the image files inside (by extension), recursively if asked; a glob that
    matches nothing and a missing path are problems, not crashes.
    """
    import glob

    from .io import is_image_path, list_images

    found: list[tuple[Path, Path]] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()
    excl = exclude.resolve() if exclude is not None and exclude.exists() else None

    def add(p: Path, rel: Path) -> None:
        key = p.absolute()
        if key in seen:
            return
        if excl is not None:
            try:
                p.resolve().relative_to(excl)
                return
            except ValueError:
                pass
        seen.add(key)
        found.append((p, rel))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in list_images(p, recursive=recursive):
                add(f, f.relative_to(p))
        elif p.exists() or p.is_symlink():
            add(p, Path(p.name))
        elif any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=recursive))
            files = [Path(m) for m in matches if is_image_path(m) and not Path(m).is_dir()]
            if not files:
                problems.append((item, "pattern matches no image files"))
            for f in files:
                add(f, Path(f.name))
        else:
            problems.append((item, "no such file or folder"))
    return found, problems


__all__ = [
    "Enhancer",
    "enhance_array",
    "enhance_file",
    "enhance_to_bytes",
    "before_after_image",
    "check_float_range",
    "jpeg_settings",
    "tiled_apply",
    "apply_log2_gain",
    "resize_long_side",
    "expand_inputs",
    "SiceError",
]
