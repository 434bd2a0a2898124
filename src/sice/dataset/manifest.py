"""The manifest of a built data set: one entry per finished scene, merged into ``manifest.json``.

``DATASET/.manifest/<scene>.json`` is written last for a scene (atomically), so its existence
is what marks the scene finished; ``manifest.json`` is rebuilt from those files. Entries hold
the frames, exposures, shifts, flags, each generator's MEF-SSIM, statistics and time, and the
label with the reason it was chosen.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
SCENE_ENTRIES = ".manifest"
LABEL_DIR = "Label"
CANDIDATE_DIR = "candidates"
FORMAT = "sice-dataset/1"


def write_scene_entry(dataset: Path, entry: dict) -> Path:
    """Write ``.manifest/<scene>.json`` atomically: the mark that the scene is finished."""
    folder = Path(dataset) / SCENE_ENTRIES
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{entry['scene']}.json"
    _write_json(path, entry)
    return path


def read_scene_entries(dataset: os.PathLike | str, names: Iterable[str] | None = None) -> dict:
    """Every finished scene's entry (or those of ``names``), from ``.manifest/*.json``
    (unreadable files are ignored: their scenes are unfinished and will be rebuilt)."""
    folder = Path(dataset) / SCENE_ENTRIES
    entries = {}
    if folder.is_dir():
        paths = sorted(folder.glob("*.json")) if names is None else [folder / f"{n}.json" for n in names]
        for path in paths:
            try:
                entry = json.loads(path.read_text())
                entries[entry["scene"]] = entry
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return entries


def write_manifest(dataset: os.PathLike | str, entries: dict, *, failed: Sequence[tuple[str, str]] = (),
                   options: dict | None = None) -> Path:
    """Merge scene entries into ``manifest.json`` atomically."""
    from ..version import __version__

    manifest = {
        "format": FORMAT,
        "created_by": f"sice {__version__}",
        "options": options or {},
        "scenes": {name: entries[name] for name in _natural_sorted(entries)},
        "failed": {name: reason for name, reason in failed},
    }
    path = Path(dataset) / MANIFEST
    _write_json(path, manifest)
    return path


def _write_json(path: Path, data) -> None:
    from ..files import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(jsonable(data), indent=1, allow_nan=True) + "\n").encode())


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _natural_sorted(names: Iterable[str]) -> list[str]:
    from ..io import natural_key

    return sorted(names, key=natural_key)
