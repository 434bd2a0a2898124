"""Training pairs in memory and reproducible random patches cut from them.

Every (input frame, label) pair of the training scenes is decoded once, resized to the training
scale and kept in memory as 16-bit integers (SICE images are 8-bit files, and a 512x512 pair
then costs 3 MB; float32 would double it). Models fed with the luminance/detail layers also keep
the precomputed ``aux`` of each input frame, because WLS smoothing of a whole image takes
seconds: computing it per patch would dominate training time. The decomposition is made on the
whole resized image, as at inference, and patches cut from it.

Which patch and which flip/rotation a sample gets is a pure function of ``(seed, epoch, index)``
(:meth:`PairDataset.sample`), so a run resumed at step N draws exactly the samples of the
uninterrupted run, and DDP ranks need no shared random state.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..dataset.layout import Scene
from ..dataset.layout import select_frames
from ..errors import SiceError
from ..imageops import linear_to_srgb, rescale, srgb_to_linear

#: Cache dtype and its full-scale value.
_CACHE_DTYPE = np.uint16
_CACHE_MAX = 65535.0


@dataclasses.dataclass
class Pair:
    """One input frame and its scene's label, at training scale.

    Attributes
    ----------
    scene : str
        :attr:`Scene.key`.
    frame : Path
    direction : str
        ``"under"`` or ``"over"``.
    ratio : float
        Brightness ratio frame / label.
    rgb, label : (H, W, 3) uint16 ndarray
        Pixels times 65535.
    aux : (H, W, 2) float32 ndarray or None
        cat(L, D) of the input frame for models whose config asks for it.
    """

    scene: str
    frame: Path
    direction: str
    ratio: float
    rgb: np.ndarray
    label: np.ndarray
    aux: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[:2]


def resize_for_training(rgb: np.ndarray, *, scale: float = 1.0, long_side: int = 0, max_side: int = 0) -> np.ndarray:
    """Resize (H, W, 3) float32 by ``scale``, or so that the long side is ``long_side`` (if > 0);
    then, if ``max_side`` > 0, shrink further so that the long side is at most ``max_side``.

    Area interpolation when shrinking (no aliasing), bicubic when enlarging (full mode on small
    images), see :func:`sice.imageops.rescale`; the result is clipped to [0, 1].
    """
    h, w = rgb.shape[:2]
    if long_side > 0:
        scale = long_side / max(h, w)
    if max_side > 0:
        scale = min(scale, max_side / max(h, w))
    if scale == 1.0:
        return rgb
    return np.clip(rescale(rgb, scale), 0, 1)


def _to_cache(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * _CACHE_MAX).astype(_CACHE_DTYPE)


def from_cache(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / np.float32(_CACHE_MAX)


def aux_for(rgb: np.ndarray, method: str = "auto", cache_dir: Path | None = None) -> np.ndarray:
    """cat(L, D) of an (H, W, 3) float32 image as (H, W, 2) float32, via sice.decomposition.

    With ``cache_dir``, the result is kept in ``<cache_dir>/<sha1 of pixels and method>.npy``
    and read back next time: exact WLS of one 512x512 image takes seconds on a CPU, so a resumed
    or repeated run should not pay for it again.
    """
    from ..decomposition import aux_tensor

    cached = None
    if cache_dir is not None:
        key = hashlib.sha1(np.ascontiguousarray(rgb, dtype=np.float32).tobytes() + method.encode()).hexdigest()
        cached = Path(cache_dir) / f"{key}.npy"
        if cached.is_file():
            try:
                aux = np.load(cached)
                if aux.shape == (*rgb.shape[:2], 2):
                    return aux
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed and rewritten
    aux = np.ascontiguousarray(np.moveaxis(aux_tensor(rgb, method=method), 0, -1), dtype=np.float32)
    if cached is not None:
        from ..files import atomic_write_bytes

        cached.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, aux)
        atomic_write_bytes(cached, buffer.getvalue())
    return aux


def load_pairs(scenes: Sequence[Scene], *, direction: str, under_max: float, over_min: float,
               scale: float = 1.0, long_side: int = 0, max_side: int = 0, need_aux: bool = False,
               aux_method: str = "auto", aux_cache: Path | None = None,
               frames_per_scene: int = 0, read: Callable | None = None,
               problems: list | None = None, progress: Callable | None = None) -> list[Pair]:
    """Decode, check, resize and select the training pairs of ``scenes``.

    Parameters
    ----------
    scenes : sequence of Scene
    direction, under_max, over_min
        Frame selection, see :func:`sice.dataset.layout.select_frames` (measured at training scale).
    scale, long_side, max_side
        See :func:`resize_for_training`.
    need_aux : bool
        Precompute cat(L, D) for every selected input frame.
    aux_method, aux_cache
        Decomposition method (``"auto"``, ``"exact"``, ``"fast"``) and optional cache folder,
        see :func:`aux_for`.
    frames_per_scene : int
        0: every selected frame; k: k frames spread evenly over the selected ones (validation).
    read : callable, optional
        ``read(path) -> (H, W, 3) float32``; default :func:`sice.io.read_rgb`.
    problems : list, optional
        Receives ``(scene key, reason)`` for each scene or frame left out: no label, unreadable
        label or frame, frame size different from the label's, no frame in the direction.
    progress : callable, optional
        Called with each scene after it is loaded (progress bars).

    Returns
    -------
    list of Pair
    """
    if read is None:
        from ..io import read_rgb as read
    problems = problems if problems is not None else []
    pairs: list[Pair] = []
    for scene in scenes:
        try:
            pairs.extend(_scene_pairs(scene, direction, under_max, over_min, (scale, long_side, max_side),
                                      (need_aux, aux_method, aux_cache),
                                      frames_per_scene, read, problems))
        except SiceError as exc:
            problems.append((scene.key, f"left out: {exc}"))
        if progress is not None:
            progress(scene)
    return pairs


def _scene_pairs(scene, direction, under_max, over_min, sizing, aux_opts, frames_per_scene,
                 read, problems) -> list[Pair]:
    if scene.label is None:
        problems.append((scene.key, "left out: no label"))
        return []
    scale, long_side, max_side = sizing
    need_aux, aux_method, aux_cache = aux_opts
    label_full = read(scene.label)
    decoded: dict[Path, np.ndarray] = {scene.label: resize_for_training(label_full, scale=scale, long_side=long_side, max_side=max_side)}
    good_frames = []
    for path in scene.frames:
        try:
            rgb = read(path)
        except SiceError as exc:
            problems.append((scene.key, f"frame left out: {exc}"))
            continue
        if rgb.shape[:2] != label_full.shape[:2]:
            problems.append((scene.key, f"frame left out: {path}: size {rgb.shape[1]}x{rgb.shape[0]} differs "
                                        f"from the label's {label_full.shape[1]}x{label_full.shape[0]}"))
            continue
        decoded[path] = resize_for_training(rgb, scale=scale, long_side=long_side, max_side=max_side)
        good_frames.append(path)
    usable = dataclasses.replace(scene, frames=good_frames)
    choices = select_frames(usable, direction, under_max=under_max, over_min=over_min,
                            read=decoded.__getitem__) if good_frames else []
    if not choices:
        problems.append((scene.key, f"left out: no {direction}-exposed frame "
                                    f"(brightness ratio < {under_max} / > {over_min}) among {len(good_frames)} usable"))
        return []
    if frames_per_scene and len(choices) > frames_per_scene:
        keep = np.linspace(0, len(choices) - 1, frames_per_scene).round().astype(int)
        choices = [choices[i] for i in sorted(set(keep))]
    label = _to_cache(decoded[scene.label])
    return [Pair(scene=scene.key, frame=c.path, direction=c.direction, ratio=c.brightness_ratio,
                 rgb=_to_cache(decoded[c.path]), label=label,
                 aux=aux_for(decoded[c.path], aux_method, aux_cache) if need_aux else None)
            for c in choices]


class PairDataset:
    """Random crops with flips/rot90 from cached pairs, reproducible per (seed, epoch, index).

    Parameters
    ----------
    pairs : list of Pair
    mode : {"patches", "full"}
        ``patches``: square ``patch_size`` crops (clipped to the smallest image). ``full``: the
        whole image; the images of one batch are cropped (at random places) to their common size.
    patch_size : int
    patches_per_image : int
        Samples per pair per epoch (``len(self) = len(pairs) * patches_per_image``).
    augment : bool
        Random flips and 90-degree rotations.
    colour_augment : bool
        Random RGB channel permutation, the same for frame and label.
    exposure_jitter : float
        Frames (not labels) re-exposed by ``2**u``, ``u ~ U(-jitter, jitter)`` stops, in linear
        light. Models fed an ``aux`` decomposition need it recomputed, so it is refused for them.
    size_multiple : int
        Crop sizes are rounded down to a multiple of this (models with space-to-depth).
    seed : int
    """

    def __init__(self, pairs: list[Pair], *, mode: str = "patches", patch_size: int = 128,
                 patches_per_image: int = 1, augment: bool = True, colour_augment: bool = False,
                 exposure_jitter: float = 0.0, size_multiple: int = 1, seed: int = 0):
        if not pairs:
            raise ValueError("pairs is empty")
        if exposure_jitter < 0:
            raise ValueError(f"exposure_jitter must be >= 0, got {exposure_jitter}")
        if exposure_jitter and pairs[0].aux is not None:
            raise ValueError("exposure_jitter would make the precomputed aux decomposition stale")
        self.colour_augment, self.exposure_jitter = bool(colour_augment), float(exposure_jitter)
        self.pairs = pairs
        self.mode = mode
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.augment = augment
        self.size_multiple = max(1, size_multiple)
        self.seed = seed
        self.min_side = min(min(p.shape) for p in pairs)
        if self.crop_side_limit() < self.size_multiple:
            raise ValueError(f"images of {self.min_side} px are too small for crops of multiple {size_multiple}")

    def __len__(self) -> int:
        return len(self.pairs) * self.patches_per_image

    def crop_side_limit(self) -> int:
        side = min(self.patch_size, self.min_side)
        return side - side % self.size_multiple

    def batch(self, indices: Sequence[int], epoch: int) -> dict[str, np.ndarray | None]:
        """Stack the samples ``indices`` of ``epoch``: ``rgb``/``label`` (B, 3, h, w) float32 and
        ``aux`` (B, 2, h, w) float32 or None."""
        pairs = [self.pairs[i % len(self.pairs)] for i in indices]
        if self.mode == "patches":
            h = w = self.crop_side_limit()
        else:
            h = min(p.shape[0] for p in pairs)
            w = min(p.shape[1] for p in pairs)
            h, w = h - h % self.size_multiple, w - w % self.size_multiple
        samples = [self.sample(i, epoch, h, w) for i in indices]
        out = {k: np.stack([s[k] for s in samples]) for k in ("rgb", "label")}
        out["aux"] = np.stack([s["aux"] for s in samples]) if samples[0]["aux"] is not None else None
        return out

    def sample(self, index: int, epoch: int, h: int, w: int) -> dict[str, np.ndarray | None]:
        """One (h, w) crop of pair ``index % len(pairs)``, channels first, augmented."""
        pair = self.pairs[index % len(self.pairs)]
        rng = np.random.default_rng([self.seed, epoch, index])
        H, W = pair.shape
        y = int(rng.integers(0, H - h + 1))
        x = int(rng.integers(0, W - w + 1))
        if self.augment:
            # Rotating a non-square crop by 90 degrees would change its shape within a batch.
            k = int(rng.integers(0, 4)) if h == w else 2 * int(rng.integers(0, 2))
            flip = bool(rng.integers(0, 2))
        else:
            k, flip = 0, False
        # drawn whatever the options, so switching one on does not move the other draws
        channels = rng.permutation(3)
        stops = rng.uniform(-1.0, 1.0) * self.exposure_jitter
        rgb = from_cache(pair.rgb[y:y + h, x:x + w])
        label = from_cache(pair.label[y:y + h, x:x + w])
        if self.exposure_jitter:
            rgb = linear_to_srgb(srgb_to_linear(rgb) * np.float32(2.0 ** stops))
        if self.colour_augment:
            rgb, label = rgb[..., channels], label[..., channels]
        arrays = {"rgb": rgb, "label": label,
                  "aux": None if pair.aux is None else pair.aux[y:y + h, x:x + w]}
        out = {}
        for name, a in arrays.items():
            if a is not None:
                a = np.rot90(a, k, axes=(0, 1))
                if flip:
                    a = a[:, ::-1]
                a = np.ascontiguousarray(np.moveaxis(a, -1, 0), dtype=np.float32)
            out[name] = a
        return out
