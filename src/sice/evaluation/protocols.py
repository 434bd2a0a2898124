"""Evaluation protocols: exactly which frames are enhanced, against what, at which size.

A protocol turns the scenes of a SICE-layout dataset (:func:`sice.dataset.layout.read_sice_layout`)
into a list of :class:`EvalItem`. Everything a reader needs to reproduce a number is decided
here and written down in docs/evaluation.md; the runner only executes it.

Shared rules
------------
* Frames of a sequence are numbered 1..n from dark to bright. The *middle* frame is
  ``m = (n + 1) // 2`` (the lower middle when n is even); a frame's *level* is its offset
  ``k - m``. With the authors' EV-1 bracketing, level -1 is the -1 EV frame (#3 of 7,
  #4 of 9) and level +1 the +1 EV frame (#5 of 7, #6 of 9), as in DESIGN.md.
* Images are decoded by :func:`sice.io.read_rgb` (8-bit JPEG/PNG -> float32 in [0, 1], RGB,
  EXIF orientation applied). No colour management, no linearisation: scores are computed on
  the sRGB-encoded values, data range 1.0.
* ``size=None`` means native resolution: input and reference must then have the same size,
  otherwise the item fails with "size mismatch" (reported, never silently resized).
* ``photos`` is the no-reference protocol: every image of a plain folder (recursively), no
  label, scored only by the figures that need none (:mod:`sice.evaluation.tone`, LOE). Its
  "level" is a group name: the first sub-folder an image sits in (``DICM``, ``under``...), or
  the folder's own name for images directly inside it.
* With a ``size`` (width, height), input and reference are both resized with
  ``cv2.INTER_AREA`` (area averaging; equivalent to bilinear when enlarging) in float32,
  before the method runs; width and height are swapped when the input frame is portrait
  (see :func:`oriented`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

from ..dataset.layout import Scene
from ..dataset.layout import split_scenes

__all__ = ["EvalItem", "Protocol", "PROTOCOLS", "middle_index", "items_for", "oriented", "photo_items",
           "exposure_of", "is_sice_layout"]


@dataclasses.dataclass(frozen=True)
class EvalItem:
    """One input image of a protocol.

    Attributes
    ----------
    scene : str
        Scene key (``"Part1/12"`` for the authors' layout, ``"012"`` for ours).
    frame : Path
        The input frame.
    index : int
        Its 1-based position in the sequence (dark -> bright).
    count : int
        Number of frames in the sequence.
    level : int or str
        ``index - middle``; negative = darker than the middle frame. For the ``photos``
        protocol, the image's group (a sub-folder name).
    reference : Path or None
        The scene's label (None when the dataset has none: only no-reference metrics then).
    size : (int, int) or None
        ``(width, height)`` of a landscape image that both images are resized to (swapped for a
        portrait input, :func:`oriented`), or None for native size.
    stack : tuple of Path
        All frames of the sequence (for MEF-SSIM).
    """

    scene: str
    frame: Path
    index: int
    count: int
    level: int | str
    reference: Path | None
    size: tuple[int, int] | None = None
    stack: tuple[Path, ...] = ()

    @property
    def id(self) -> str:
        """File-name-safe unique id: ``Part1_12__3`` (scene, frame index); scene keys with other
        characters (photo paths) get a hash, so ``a_b/c.jpg`` and ``a/b_c.jpg`` stay apart."""
        if re.fullmatch(r"[\w-]+(/[\w-]+)?", self.scene):
            return f"{self.scene.replace('/', '_')}__{self.index}"
        safe = re.sub(r"[^\w-]+", "_", self.scene)[-60:]
        return f"{safe}-{hashlib.sha1(self.scene.encode()).hexdigest()[:8]}__{self.index}"


def middle_index(count: int) -> int:
    """1-based middle frame of a sequence of ``count`` frames: ``(count + 1) // 2``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    return (count + 1) // 2


def _item(scene: Scene, index: int, size=None) -> EvalItem:
    n = len(scene.frames)
    return EvalItem(scene=scene.key, frame=scene.frames[index - 1], index=index, count=n,
                    level=index - middle_index(n), reference=scene.label, size=size,
                    stack=tuple(scene.frames))


def _at_levels(scenes: Sequence[Scene], levels: Sequence[int]) -> list[EvalItem]:
    out = []
    for s in scenes:
        n = len(s.frames)
        m = middle_index(n)
        out += [_item(s, m + lv) for lv in levels if 1 <= m + lv <= n]
    return out


#: Zero-DCE's test size for SICE Part 2 (width x height of a landscape image).
ZERO_DCE_SIZE = (1200, 900)


def oriented(size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """``size`` (landscape w x h) turned to the orientation of a ``width`` x ``height`` image."""
    big, small = max(size), min(size)
    return (big, small) if width >= height else (small, big)


def _sice58(scenes):
    return _at_levels(split_scenes(scenes, official_test=True)["test"], (-1, 1))


def _zero_dce_part2(scenes):
    has_parts = any(s.part for s in scenes)
    out = []
    for s in scenes:
        if has_parts and s.part != "Part2":
            continue
        out += [_item(s, k, ZERO_DCE_SIZE) for k in range(1, len(s.frames) // 2 + 1)]
    return out


def _levels(scenes):
    return _at_levels(scenes, (-2, -1, 1, 2))


def _all(scenes):
    return [_item(s, k) for s in scenes for k in range(1, len(s.frames) + 1)]


def photo_items(folder: Path) -> list[EvalItem]:
    """The ``photos`` protocol: every image under ``folder`` (recursively, natural order), one
    item each, no reference; the level is the first sub-folder's name (or ``folder``'s own)."""
    from ..io import list_images

    folder = Path(folder)
    out = []
    for path in list_images(folder, recursive=True):
        rel = path.relative_to(folder)
        group = rel.parts[0] if len(rel.parts) > 1 else (folder.resolve().name or "photos")
        out.append(EvalItem(scene=rel.as_posix(), frame=path, index=1, count=1, level=group, reference=None))
    return out


#: Words in a ``photos`` group name that say which way its photos are exposed.
_UNDER_WORDS, _OVER_WORDS = ("under", "low", "dark", "night", "dicm", "lime"), ("over", "bright")


def exposure_of(level: int | str, input_luma: float) -> str:
    """``"under"`` or ``"over"``: the sign of a frame's level; for a ``photos`` group, a word
    in its name (``under``, ``low``, ``dark``, ``night``, ``DICM``, ``LIME`` / ``over``,
    ``bright``), else the input's mean luma (below 0.5: under)."""
    if isinstance(level, int) and level:
        return "under" if level < 0 else "over"
    name = str(level).lower()
    if any(w in name for w in _UNDER_WORDS):
        return "under"
    if any(w in name for w in _OVER_WORDS):
        return "over"
    return "under" if input_luma < 0.5 else "over"


def is_sice_layout(folder: Path) -> bool:
    """Whether ``folder`` looks like a SICE-layout dataset (``Label/``, our ``manifest.json`` or
    the authors' ``Dataset_Part1``/``Dataset_Part2``) rather than a plain folder of photos."""
    folder = Path(folder)
    markers = ("Label", "manifest.json", "Dataset_Part1", "Dataset_Part2")
    return folder.name.startswith("Dataset_Part") or any((folder / m).exists() for m in markers)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A named, documented rule from scenes (or, with ``plain_folder``, a folder of photos)
    to :class:`EvalItem` s."""

    name: str
    summary: str
    select: Callable[[Sequence[Scene]], list[EvalItem]]
    plain_folder: bool = False


PROTOCOLS: dict[str, Protocol] = {
    "sice-58": Protocol(
        "sice-58",
        "the 58 published Part1 test sequences of Cai et al. 2018; frames at levels -1 and +1 "
        "(-1 EV / +1 EV), native size",
        _sice58),
    "zero-dce-part2": Protocol(
        "zero-dce-part2",
        "Part2 (every scene of a layout without parts); the darker half of each sequence, "
        "frames 1..floor(n/2); input and label resized to 1200x900 (900x1200 for a portrait input), INTER_AREA",
        _zero_dce_part2),
    "levels": Protocol(
        "levels",
        "every scene; frames at levels -2, -1, +1, +2 around the middle frame (those that exist), "
        "native size",
        _levels),
    "all": Protocol("all", "every frame of every scene, native size", _all),
    "photos": Protocol(
        "photos",
        "no reference: every image of a plain folder (recursively), native size, grouped by "
        "sub-folder; only no-reference figures",
        photo_items, plain_folder=True),
}


def items_for(protocol: str, scenes: Sequence[Scene]) -> list[EvalItem]:
    """The items of ``protocol`` for ``scenes`` (in scene order, then frame order)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if PROTOCOLS[protocol].plain_folder:
        raise ValueError(f"protocol {protocol!r} reads a folder of photos: use photo_items(folder)")
    return PROTOCOLS[protocol].select(scenes)
