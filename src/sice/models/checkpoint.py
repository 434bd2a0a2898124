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
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ModelError
from ..files import atomic_write_bytes
from ..weights import resolve_alias, shipped_file
from ._registry import create_model, list_models

FORMAT = "sice-checkpoint"
VERSION = 1

#: Largest magnitude accepted in a weight tensor. Trained networks stay far below it (every
#: shipped, registered and released Caffe model is below 2); a diverging run passes it within a
#: step or two of going wrong and reaches 1e30 soon after, and its outputs are black or NaN.
MAX_ABS_WEIGHT = 1e4


def check_weights(state: Mapping[str, Any], source: os.PathLike | str) -> None:
    """Refuse weights that no working network has: NaN, infinite, or above :data:`MAX_ABS_WEIGHT`.

    Parameters
    ----------
    state : mapping of name -> tensor
        A ``state_dict`` (entries that are not floating-point tensors are ignored).
    source : path-like
        The file they come from or go to, for the message.

    Raises
    ------
    ModelError
        Naming ``source``, the first bad tensor, and what is wrong with it.
    """
    for name, tensor in state.items():
        if not torch.is_tensor(tensor) or not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        t = tensor.detach()
        n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        if n_nan or n_inf:
            raise ModelError(f"{source}: tensor {name!r} holds {n_nan} NaN and {n_inf} infinite values "
                             f"(of {t.numel()}): the weights diverged or the file is corrupt")
        largest = float(t.abs().max())
        if largest > MAX_ABS_WEIGHT:
            raise ModelError(f"{source}: tensor {name!r} holds a weight of magnitude {largest:.3g} "
                             f"(limit {MAX_ABS_WEIGHT:g}): the weights diverged or the file is corrupt")


def save_checkpoint(path: os.PathLike | str, model: nn.Module, *, meta: dict | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (built by :func:`create_model`) to ``path`` atomically.

    The file appears complete or not at all: it is written to a temporary file in the same
    folder and renamed over the target. Weights that fail :func:`check_weights` raise
    :class:`ModelError` and nothing is written, so an existing file stays the last good one.
    """
    path = Path(path)
    name = getattr(model, "sice_config", None)
    if name is None:
        raise ValueError("model was not built by sice.models.create_model; cannot name it in a checkpoint")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check_weights(state, path)
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
    """``torch.save`` to ``path`` atomically (:func:`sice.files.atomic_write`).

    Raises :class:`SiceError` naming ``path`` when it cannot be written (disk full, read-only);
    an existing ``path`` is left as it was.
    """
    # Serialised in memory first: torch's zip writer reports a full disk as an opaque
    # RuntimeError ("unexpected pos 704 vs 598"); a plain write says ENOSPC.
    data = io.BytesIO()
    torch.save(obj, data)
    atomic_write_bytes(path, data.getbuffer())


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
    if not isinstance(payload.get("state_dict"), Mapping):
        raise ModelError(f"{path}: not a sice checkpoint (no 'state_dict' entry)")
    check_weights(payload["state_dict"], path)
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
