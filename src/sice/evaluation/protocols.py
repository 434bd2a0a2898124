"""Evaluation protocols: exactly which frames are enhanced, against what, at which size.

A protocol turns the scenes of a SICE-layout dataset (:func:`sice.dataset.read_sice_layout`)
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
* With a ``size`` (width, height), input and reference are both resized with
  ``cv2.INTER_AREA`` (area averaging; equivalent to bilinear when enlarging) in float32,
  before the method runs; width and height are swapped when the input frame is portrait
  (see :func:`oriented`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from ..dataset import Scene, split_scenes

__all__ = ["EvalItem", "Protocol", "PROTOCOLS", "middle_index", "items_for", "oriented"]


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
    level : int
        ``index - middle``; negative = darker than the middle frame.
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
    level: int
    reference: Path | None
    size: tuple[int, int] | None = None
    stack: tuple[Path, ...] = ()

    @property
    def id(self) -> str:
        """File-name-safe unique id: ``Part1_12__3`` (scene, frame index)."""
        return f"{self.scene.replace('/', '_')}__{self.index}"


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


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A named, documented rule from scenes to :class:`EvalItem` s."""

    name: str
    summary: str
    select: Callable[[Sequence[Scene]], list[EvalItem]]


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
}


def items_for(protocol: str, scenes: Sequence[Scene]) -> list[EvalItem]:
    """The items of ``protocol`` for ``scenes`` (in scene order, then frame order)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol].select(scenes)
