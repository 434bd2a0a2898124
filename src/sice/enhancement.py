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

from .errors import ModelError, SiceError
from .imageops import from_float32, luminance, split_alpha, to_float32

DEFAULT_MODEL = "default"
DEFAULT_TILE = 512


class Enhancer:
    """A loaded model ready to enhance images.

    Parameters
    ----------
    model : str, path-like, nn.Module or None
        Registry name (with shipped weights, or ``NAME:untrained``), a sice checkpoint path, an
        ``.onnx`` file exported by ``sice export``, or a model object. None: the default model.
    device : {"cpu", "cuda"}
        Torch device (the ONNX backend runs on the CPU).
    backend : {"auto", "torch", "onnxruntime"}
        "auto" uses onnxruntime when the model has an ONNX form (faster on CPUs), else torch.
    tile : int
        Tile side for fully convolutional models (pixels at network resolution).
    """

    def __init__(self, model: Any = None, *, device: str = "cpu", backend: str = "auto",
                 tile: int = DEFAULT_TILE, decomposition: str = "auto"):
        if backend not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'onnxruntime', got {backend!r}")
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if tile < 16:
            raise ValueError(f"tile must be at least 16 pixels, got {tile}")
        self.device = device
        self.tile = int(tile)
        self.decomposition = decomposition
        self._runner = _load_runner(DEFAULT_MODEL if model is None else model, device=device, backend=backend)
        self.name = self._runner.name
        self.backend = self._runner.backend

    def enhance_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float RGB in [0, 1] -> enhanced (H, W, 3) float32 in [0, 1], same size."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3), got shape {rgb.shape}")
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError(f"image must be at least 1x1, got {rgb.shape[:2]}")
        rgb = np.clip(to_float32(rgb), 0.0, 1.0)
        if self._runner.kind == "gain":
            return self._gain_path(rgb)
        out = self._runner.run(rgb, tile=self.tile, decomposition=self.decomposition)
        _check_model_output(self.name, "image", out, rgb.shape)
        return out

    def _gain_path(self, colour: np.ndarray) -> np.ndarray:
        """Gain models on (H, W, 3) pixels of any dtype, without a full-size float copy:
        gains come from a small float image, and are applied strip by strip in the input's
        own dtype (uint8 stays uint8 all the way: this is what makes 20 MP photos fast)."""
        thumb, work = gain_inputs(colour, self._runner.work_size)
        log_gain, offset = self._runner.gain_fields(thumb, work)
        _check_model_output(self.name, "log2 gains", log_gain, (*log_gain.shape[:2], 3))
        if offset is not None:
            _check_model_output(self.name, "offsets", offset, log_gain.shape)
        return apply_log2_gain(colour, log_gain, offset=offset)

    def enhance_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Enhance pixels of any layout sice reads; returns the same shape and dtype.

        Grey images are enhanced as RGB and converted back to grey (Rec. 601 luma); alpha is
        passed through untouched; uint8/uint16 stay so; float stays float (clipped to [0, 1]).
        """
        arr = np.asarray(pixels)
        squeeze = arr.ndim == 2
        if squeeze:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"pixels must be (H, W) or (H, W, 1..4), got shape {np.shape(pixels)}")
        colour, alpha = split_alpha(arr)
        grey = colour.shape[2] == 1
        rgb = np.repeat(colour, 3, axis=2) if grey else colour
        dtype = arr.dtype if arr.dtype.kind != "f" else np.float32
        if self._runner.kind == "gain" and arr.dtype in (np.uint8, np.uint16):
            out = self._gain_path(np.ascontiguousarray(rgb))
            if grey:
                out = from_float32(luminance(to_float32(out))[..., None], dtype)
        else:
            out = self.enhance_rgb(to_float32(rgb))
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


def enhance_array(image: np.ndarray, *, model: Any = None, enhancer: Enhancer | None = None, **kwargs) -> np.ndarray:
    """Enhance one image array and return the result with the same shape and dtype.

    Parameters
    ----------
    image : (H, W[, C]) ndarray
        uint8, uint16 or float in [0, 1]; C in 1..4 (alpha passed through).
    model : str, path-like or nn.Module, optional
        As for :class:`Enhancer`; ignored when ``enhancer`` is given.

    Examples
    --------
    >>> import numpy as np, sice
    >>> dark = (np.random.default_rng(0).random((32, 48, 3)) * 40).astype(np.uint8)
    >>> sice.enhance(dark, model="sice2018-residual:untrained").shape
    (32, 48, 3)
    """
    enhancer = enhancer or _cached_enhancer(model, **kwargs)
    return enhancer.enhance_pixels(image)


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
                 enhancer: Enhancer | None = None, quality: int = 95, max_pixels: int | None = None,
                 overwrite: bool = True, **kwargs) -> Path:
    """Read ``src``, enhance, write ``dst`` (atomically) keeping size, orientation, bit depth,
    EXIF and ICC profile. Refuses to write over ``src``."""
    from .errors import ImageWriteError
    from .io import read_image, write_image

    src, dst = Path(src), Path(dst)
    if dst.exists() and _same_file(src, dst):
        raise ImageWriteError(dst, "output path is the input file; refusing to overwrite an input")
    image = read_image(src, max_pixels=max_pixels)
    enhancer = enhancer or _cached_enhancer(model, **kwargs)
    out = enhancer.enhance_pixels(image.pixels)
    return write_image(dst, out, like=image, quality=quality, overwrite=overwrite)


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
    gains, offsets or None) and ``work_size``) or "image" (provides ``run(rgb, ...)``)."""

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
            from .export import OnnxGainRunner

            return OnnxGainRunner.from_file(s)
        if backend in ("auto", "onnxruntime"):
            from .export import shipped_onnx_runner

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
        if hasattr(module, "log_gain"):
            self.kind = "gain"
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
    gh, gw = log_gain.shape[:2]
    gain = np.exp2(log_gain.astype(np.float32))
    is_float = image.dtype.kind == "f"
    if offset is not None:
        if offset.shape != log_gain.shape:
            raise ValueError(f"offset must have log_gain's shape {log_gain.shape}, got {offset.shape}")
        full_scale = 1.0 if is_float else float(np.iinfo(image.dtype).max)
        offset = offset.astype(np.float32) * np.float32(full_scale)
    if is_float:
        image = image.astype(np.float32, copy=False)
    depth = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U,
             np.dtype(np.float32): cv2.CV_32F}[image.dtype]
    out = np.empty_like(image)
    sx, sy = gw / w, gh / h

    def upsampled(field: np.ndarray, y0: int, y1: int) -> np.ndarray:
        if (gh, gw) == (h, w):
            return field[y0:y1]
        # dst (x, y) -> src ((x + .5) sx - .5, (y + y0 + .5) sy - .5): pixel-centre aligned
        M = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, (y0 + 0.5) * sy - 0.5]], dtype=np.float64)
        return cv2.warpAffine(field, M, (w, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    for y0 in range(0, h, strip):
        y1 = min(h, y0 + strip)
        src = np.ascontiguousarray(image[y0:y1])
        if offset is None:
            # cv2.multiply with a dtype saturates and rounds integer results in one SIMD pass
            out[y0:y1] = cv2.multiply(src, upsampled(gain, y0, y1), dtype=depth)
        else:
            # float product, then cv2.add saturates and rounds once into the image's dtype
            scaled = cv2.multiply(src, upsampled(gain, y0, y1), dtype=cv2.CV_32F)
            out[y0:y1] = cv2.add(scaled, upsampled(offset, y0, y1), dtype=depth)
    if is_float:
        np.clip(out, 0, 1, out=out)
    return out


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
    "tiled_apply",
    "apply_log2_gain",
    "resize_long_side",
    "expand_inputs",
    "SiceError",
]
