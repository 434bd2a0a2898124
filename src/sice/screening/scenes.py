"""What there is to screen in a dataset folder: scenes, their candidates and source frames.

The layout (written by ``sice build-dataset``)::

    DATASET/<scene>/<k>.<ext>                 source frames of the sequence
    DATASET/candidates/<scene>/<generator>.png  candidate references, one per generator
    DATASET/Label/<scene>.png                 the current reference (not shown: it would bias)

Candidates are listed from the folder (not from ``manifest.json``), so a dataset screens the
same whatever its manifest schema. Only files whose real path (symlinks resolved) lies inside
the dataset folder are listed: a symlink out of the dataset is ignored, never served.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from ..io import list_images, natural_key

CANDIDATES_DIR = "candidates"


@dataclass(frozen=True)
class ScreeningScene:
    """One scene to screen: candidates by name and source frames, as listed (symlinks not resolved;
    each was inside the dataset when listed, and the server checks again before serving)."""

    name: str
    candidates: dict[str, Path]             # candidate name (file stem) -> file
    frames: tuple[Path, ...] = field(default=())


def inside(path: Path, root: Path, *, folder: bool = False) -> Path | None:
    """``path`` with symlinks resolved if it is a regular file (``folder=True``: a folder) under
    ``root`` (an already resolved path), else None."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not real.is_relative_to(root) or not (real.is_dir() if folder else real.is_file()):
        return None
    return real


def _listed_inside(folder: Path, root: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        return []
    out = []
    for path in list_images(folder):
        if inside(path, root) is None:
            warnings.warn(f"{path}: not served ({what} is not a file inside {root})", stacklevel=3)
        else:
            out.append(path)  # the listed name (a symlink's own name), checked again when served
    return out


def list_scenes(dataset_dir: os.PathLike | str) -> list[ScreeningScene]:
    """The screenable scenes of ``dataset_dir`` (those with at least one candidate), in natural order.

    Raises
    ------
    DatasetError
        If ``dataset_dir`` is not a folder or has no ``candidates/`` subfolder.
    """
    root = Path(dataset_dir).resolve()
    cand_root = root / CANDIDATES_DIR
    if not root.is_dir():
        raise DatasetError(f"{dataset_dir}: not a folder")
    if not cand_root.is_dir():
        raise DatasetError(f"{dataset_dir}: no {CANDIDATES_DIR}/ folder; build the dataset with "
                           "`sice build-dataset` first")
    scenes = []
    for folder in sorted(cand_root.iterdir(), key=lambda p: natural_key(p.name)):
        if folder.name.startswith(".") or inside(folder, root, folder=True) is None:
            continue
        candidates = {p.stem: p for p in _listed_inside(folder, root, "candidate")}
        if not candidates:
            continue
        frames_dir = root / folder.name
        frames = _listed_inside(frames_dir, root, "frame") if inside(frames_dir, root, folder=True) else []
        scenes.append(ScreeningScene(folder.name, candidates, tuple(frames)))
    return scenes

