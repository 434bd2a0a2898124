"""The one checkpoint format of sice, shared by training, import (Caffe) and enhancement.

A checkpoint is a ``torch.save`` dict::

    {"format": "sice-checkpoint", "version": 1,
     "model": <registry name>, "kwargs": {...builder kwargs},
     "state_dict": {...}, "meta": {...free-form provenance: data, recipe, scores, source}}

Training checkpoints add ``optimizer``, ``scheduler``, ``step``, ``epoch``, ``rng`` and ``config``
keys; they load the same way, so ``sice enhance --model RUN/last.pt`` works directly.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ModelError
from ..weights import resolve_alias, shipped_file
from ._registry import create_model, list_models

FORMAT = "sice-checkpoint"
VERSION = 1


def save_checkpoint(path: os.PathLike | str, model: nn.Module, *, meta: dict | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (built by :func:`create_model`) to ``path`` atomically.

    The file appears complete or not at all: it is written to a temporary file in the same
    folder and renamed over the target.
    """
    path = Path(path)
    name = getattr(model, "sice_config", None)
    if name is None:
        raise ValueError("model was not built by sice.models.create_model; cannot name it in a checkpoint")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.sice_config.name,
        "kwargs": dict(getattr(model, "sice_kwargs", {})),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    if extra:
        payload.update(extra)
    atomic_torch_save(payload, path)
    return path


def atomic_torch_save(obj: Any, path: os.PathLike | str) -> None:
    """``torch.save`` to a temp file in the target folder, fsync, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        from ..io import _default_file_mode

        os.fchmod(fd, _default_file_mode())  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_checkpoint(path: os.PathLike | str) -> dict:
    """Load and validate a checkpoint dict; :class:`ModelError` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/truncated files
        raise ModelError(f"{path}: not a readable sice checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a sice checkpoint (no 'format': '{FORMAT}' entry)")
    if payload.get("model") not in list_models():
        raise ModelError(f"{path}: checkpoint is for unknown model {payload.get('model')!r}")
    return payload


def load_checkpoint(path: os.PathLike | str) -> nn.Module:
    """Build the model a checkpoint names and load its weights (eval mode, CPU)."""
    payload = read_checkpoint(path)
    model = create_model(payload["model"], **payload.get("kwargs", {}))
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"{path}: weights do not fit model {payload['model']!r}: {str(exc).splitlines()[0]}") from None
    model.sice_meta = payload.get("meta", {})
    return model.eval()


def load_model(name_or_path: str | os.PathLike) -> nn.Module:
    """A ready model from a checkpoint path, or a registry name with its shipped weights.

    A registry name without shipped weights gives fresh (untrained) weights only when the
    name is spelled with the suffix ``:untrained``; otherwise :class:`ModelError` says so.
    """
    s = os.fspath(name_or_path)
    if not os.path.exists(s):
        s = resolve_alias(s)
    if os.path.sep in s or s.endswith(".pt") or os.path.exists(s):
        return load_checkpoint(s)
    if s.endswith(":untrained"):
        model = create_model(s[: -len(":untrained")])
        model.sice_meta = {"untrained": True}
        return model.eval()
    shipped = shipped_weights_path(s)
    if shipped is not None:
        return load_checkpoint(shipped)
    create_model(s)  # unknown names raise here with the list
    raise ModelError(
        f"model {s!r} has no shipped weights; pass a checkpoint file (--model PATH.pt), "
        f"import the original with 'sice import-caffe', or use '{s}:untrained'"
    )


def shipped_weights_path(name: str) -> Path | None:
    """Path of the weights shipped inside the package for ``name``, if any."""
    return shipped_file(name, ".pt")
