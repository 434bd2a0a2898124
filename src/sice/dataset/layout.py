"""Reading SICE-layout datasets: scenes, scene-level splits, and exposure selection.

Two layouts are read, and a parent folder holding several of them:

* the authors' release [1]_ ::

      Dataset_Part1/<seq>/<k>.JPG        frames k = 1..n of a sequence
      Dataset_Part1/Label/<seq>.JPG      its reference
      Dataset_Part2/Label/<seq>.PNG      (sequences > 125 of Part 2 have PNG labels)

* the layout that :mod:`sice.dataset.build` writes: scene folders plus ``Label/`` in one root,
  beside ``candidates/`` and ``manifest.json`` (ignored here).

Frames are ordered by the number in their file name (``2.JPG`` before ``10.JPG``; the authors'
names sort wrongly as strings). Frames of a sequence go from dark to bright in both layouts.

Writing the layout is :mod:`sice.dataset.build`; this module only reads.

References
----------
.. [1] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE Trans. Image Processing 27(4):2049-2062, 2018.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DatasetError

#: Frame and label file extensions (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
#: Folder names of the authors' two parts.
PARTS = ("Dataset_Part1", "Dataset_Part2")
#: Folders beside the scenes that are not scenes (our builder's candidate references).
NOT_SCENES = {"label", "candidates"}
#: The only published test list of the paper: 58 Part 1 sequence ids (DESIGN.md).
OFFICIAL_TEST_IDS: frozenset[int] = frozenset(
    [*range(4, 24), 28, 31, 33, 34, 37, 38, 39, *range(46, 53), *range(55, 70),
     *range(75, 80), *range(100, 104)]
)
assert len(OFFICIAL_TEST_IDS) == 58  # guards the transcription of the list above

DIRECTIONS = ("under", "over", "both")


@dataclasses.dataclass(frozen=True)
class Scene:
    """One multi-exposure sequence and its reference.

    Attributes
    ----------
    name : str
        Folder name of the sequence (``"12"`` in the authors' release, ``"012"`` in ours).
    frames : list of Path
        Frame files, dark to bright (numeric order of the file stem).
    label : Path or None
        The reference image, or None when the layout has none for this scene.
    part : str
        ``"Part1"`` / ``"Part2"`` for the authors' folders, ``""`` otherwise.
    """

    name: str
    frames: list[Path]
    label: Path | None
    part: str = ""

    @property
    def key(self) -> str:
        """Unique id across parts: ``"Part1/12"``, or ``name`` when there are no parts."""
        return f"{self.part}/{self.name}" if self.part else self.name

    @property
    def number(self) -> int | None:
        """The sequence number when the name is one (``"012"`` -> 12), else None."""
        return int(self.name) if self.name.isdigit() else None


class SceneList(list):
    """A list of :class:`Scene` that also carries what was skipped or is suspicious.

    Attributes
    ----------
    root : Path
        The folder that was read.
    problems : list of (str, str)
        ``(scene key or path, reason)`` for every scene left out or incomplete (no label,
        no frames, unnumbered frame files). Reading never fails because of one scene.
    """

    def __init__(self, scenes: Iterable[Scene] = (), *, root: Path | None = None,
                 problems: list[tuple[str, str]] | None = None):
        super().__init__(scenes)
        self.root = root
        self.problems: list[tuple[str, str]] = list(problems or [])


def read_sice_layout(root: os.PathLike | str) -> SceneList:
    """Find the scenes of a SICE-layout dataset.

    Parameters
    ----------
    root : path-like
        One of: a folder of scene folders with ``Label/`` (our builder's output, or a single
        ``Dataset_Part1``/``Dataset_Part2`` of the authors'); or a parent holding
        ``Dataset_Part1`` and/or ``Dataset_Part2``. A folder of scene folders without
        ``Label/`` (e.g. ``sice512``) is read too, every label then being None.

    Returns
    -------
    SceneList
        Scenes sorted by part and sequence number; ``.problems`` lists each scene without a
        label (kept, ``label=None``) and each folder left out (no numbered frames), with why.
        Only the directory listing is read: pixels are not decoded here.

    Raises
    ------
    DatasetError
        ``root`` is missing or holds no scene folder at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    parts = [root / p for p in PARTS if (root / p).is_dir()]
    if parts:
        folders = [(p, p.name.removeprefix("Dataset_")) for p in parts]
    else:
        part = root.name.removeprefix("Dataset_") if root.name in PARTS else ""
        folders = [(root, part)]
    result = SceneList(root=root)
    for folder, part in folders:
        _read_one_layout(folder, part, result)
    if not result:
        why = "; ".join(f"{k}: {r}" for k, r in result.problems[:3])
        raise DatasetError(
            f"{root}: no scene folders with numbered frames (expected <scene>/1.jpg.. and "
            f"Label/<scene>.jpg, or Dataset_Part1/Dataset_Part2){': ' + why if why else ''}"
        )
    return result


def _read_one_layout(folder: Path, part: str, out: SceneList) -> None:
    labels = _label_index(folder / "Label") if (folder / "Label").is_dir() else None
    scene_dirs = [d for d in folder.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and d.name.lower() not in NOT_SCENES]
    for d in sorted(scene_dirs, key=lambda d: _number_key(d.name)):
        key = f"{part}/{d.name}" if part else d.name
        frames, unnumbered = _numbered_images(d)
        if unnumbered:
            out.problems.append((key, f"ignored frame files without a number: {', '.join(unnumbered[:5])}"))
        if not frames:
            out.problems.append((key, f"{d}: no numbered frames (1.jpg, 2.jpg, ...); scene left out"))
            continue
        label = None
        if labels is None:
            out.problems.append((key, f"no label: {folder / 'Label'} does not exist"))
        else:
            label = _find_label(labels, d.name)
            if label is None:
                out.problems.append((key, f"no label {folder / 'Label' / d.name}.(jpg|png) found"))
        out.append(Scene(name=d.name, frames=frames, label=label, part=part))


def _number_key(name: str) -> tuple:
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _numbered_images(folder: Path) -> tuple[list[Path], list[str]]:
    """Image files named by an integer, in numeric order; and names of other image files."""
    numbered, other = [], []
    for p in folder.iterdir():
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
            continue
        (numbered if p.stem.isdigit() else other).append(p)
    return sorted(numbered, key=lambda p: (int(p.stem), p.name)), sorted(o.name for o in other)


def _label_index(label_dir: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in label_dir.iterdir():
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
            index.setdefault(p.stem, []).append(p)
            if p.stem.isdigit():  # "7" and "007" name the same sequence
                index.setdefault(f"#{int(p.stem)}", []).append(p)
    return index


def _find_label(index: dict[str, list[Path]], name: str) -> Path | None:
    hits = index.get(name) or (index.get(f"#{int(name)}") if name.isdigit() else None)
    if not hits:
        return None
    # Several labels for one scene (e.g. 7.JPG and 7.png): prefer the lossless one, then by name,
    # so the choice is deterministic.
    return sorted(hits, key=lambda p: (p.suffix.lower() not in (".png", ".tif", ".tiff"), p.name))[0]


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------
def split_scenes(scenes: Sequence[Scene], *, ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                 official_test: bool = False) -> dict[str, list[Scene]]:
    """Split scenes into train / val / test, never putting a scene in two splits.

    Parameters
    ----------
    scenes : sequence of Scene
    ratios : (3,) floats
        Shares of train, val, test; normalised to sum 1 (the paper's 7:1:2 by default).
    seed : int
        The split is a seeded permutation of the scenes sorted by :attr:`Scene.key`, so it does not
        depend on the order they are given in.
    official_test : bool
        Use the paper's 58 published Part 1 test sequences (:data:`OFFICIAL_TEST_IDS`) as test:
        scenes of part ``"Part1"`` (or, for a layout without parts, scenes whose number is in
        the list). The other scenes are split train/val in the ratio of ``ratios[0]:ratios[1]``.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted by key.

    Raises
    ------
    ValueError
        Bad ``ratios`` or duplicate scene keys.
    """
    r = np.asarray(ratios, dtype=float)
    if r.shape != (3,) or np.any(r < 0) or r.sum() <= 0:
        raise ValueError(f"ratios must be three non-negative numbers, got {tuple(ratios)!r}")
    r = r / r.sum()
    ordered = sorted(scenes, key=lambda s: (s.part, _number_key(s.name)))
    keys = [s.key for s in ordered]
    if len(set(keys)) != len(keys):
        raise ValueError("scenes contain duplicate keys; each scene may appear once")
    test: list[Scene] = []
    if official_test:
        has_parts = any(s.part for s in ordered)
        test = [s for s in ordered if s.number in OFFICIAL_TEST_IDS and (s.part == "Part1" or not has_parts)]
        test_keys = {s.key for s in test}
        rest = [s for s in ordered if s.key not in test_keys]
        r = np.array([r[0], r[1], 0.0]) / max(r[0] + r[1], 1e-12)
    else:
        rest = ordered
    order = np.random.default_rng(seed).permutation(len(rest))
    shuffled = [rest[i] for i in order]
    n = len(shuffled)
    n_train = int(round(r[0] * n))
    n_val = min(int(round(r[1] * n)), n - n_train)
    out = {
        "train": shuffled[:n_train],
        "val": shuffled[n_train:n_train + n_val],
        "test": test + shuffled[n_train + n_val:],
    }
    return {k: sorted(v, key=lambda s: (s.part, _number_key(s.name))) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Exposure selection
# --------------------------------------------------------------------------------------------
#: Default thresholds of the brightness ratio mean(frame) / mean(label) (see docs/training.md).
UNDER_MAX = 0.9
OVER_MIN = 1.1
#: Images are reduced to at most this long side before measuring brightness (speed only: a mean
#: of an area-averaged image equals the mean of the original up to border rounding).
BRIGHTNESS_SIDE = 256


@dataclasses.dataclass(frozen=True)
class FrameChoice:
    """A frame picked as a training/test input, with why.

    Attributes
    ----------
    path : Path
    direction : str
        ``"under"`` or ``"over"``.
    brightness_ratio : float
        Mean Rec. 601 luma of the frame over that of the scene's label.
    """

    path: Path
    direction: str
    brightness_ratio: float


def brightness(rgb: np.ndarray) -> float:
    """Mean Rec. 601 luma of a (H, W, 3) float RGB image in [0, 1]."""
    from ..imageops import luminance

    return float(luminance(rgb).mean(dtype=np.float64))


def classify_exposure(ratio: float, *, under_max: float = UNDER_MAX, over_min: float = OVER_MIN) -> str:
    """``"under"`` if ``ratio < under_max``, ``"over"`` if ``ratio > over_min``, else ``"well"``.

    ``ratio`` is mean(frame luma) / mean(label luma). Frames between the thresholds are close
    to the reference's brightness and are not used as inputs: they would teach the identity.
    """
    if not 0 < under_max <= 1 <= over_min:
        raise ValueError(f"need 0 < under_max <= 1 <= over_min, got under_max={under_max}, over_min={over_min}")
    if ratio < under_max:
        return "under"
    if ratio > over_min:
        return "over"
    return "well"


def select_frames(scene: Scene, direction: str = "under", *, under_max: float = UNDER_MAX,
                  over_min: float = OVER_MIN, read=None) -> list[FrameChoice]:
    """The frames of ``scene`` that are under- and/or over-exposed with respect to its label.

    Parameters
    ----------
    scene : Scene
        Must have a label.
    direction : {"under", "over", "both"}
    under_max, over_min : float
        Thresholds of the brightness ratio, see :func:`classify_exposure`.
    read : callable, optional
        ``read(path) -> (H, W, 3) float32 RGB in [0, 1]``; default :func:`sice.io.read_rgb`
        (the training code passes its cache).

    Returns
    -------
    list of FrameChoice
        Dark to bright.

    Raises
    ------
    DatasetError
        The scene has no label.
    ImageReadError
        A frame or the label cannot be decoded.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if scene.label is None:
        raise DatasetError(f"{scene.frames[0].parent}: scene {scene.key} has no label; cannot select frames")
    if read is None:
        read = _read_small
    label_mean = brightness(read(scene.label))
    if label_mean <= 0:
        raise DatasetError(f"{scene.label}: label is black; brightness ratios are undefined")
    wanted = ("under", "over") if direction == "both" else (direction,)
    out = []
    for path in scene.frames:
        ratio = brightness(read(path)) / label_mean
        kind = classify_exposure(ratio, under_max=under_max, over_min=over_min)
        if kind in wanted:
            out.append(FrameChoice(path=path, direction=kind, brightness_ratio=ratio))
    return out


def _read_small(path: Path) -> np.ndarray:
    from ..imageops import resize_long_side
    from ..io import read_rgb

    return resize_long_side(read_rgb(path), BRIGHTNESS_SIDE)
