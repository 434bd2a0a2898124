"""Training checkpoints: what ``--resume`` needs beyond the weights, and reading it back.

A training checkpoint is a :func:`sice.models.save_checkpoint` file (so ``sice enhance --model
RUN/last.pt`` uses it directly) with ``optimizer``, ``scheduler``, ``step``, ``epoch``, ``rng``
(torch, CUDA and Python random state), ``config``, ``best_psnr`` and ``log_window`` (the sums
of the training-log row in progress) added.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from ..errors import ModelError

#: Keys a checkpoint must hold for ``--resume`` (``best_psnr`` and ``log_window`` are optional:
#: older runs lack them).
RESUME_KEYS = ("optimizer", "scheduler", "step", "epoch", "rng", "config")


def read_training_checkpoint(path: os.PathLike | str) -> dict:
    """A checkpoint that ``--resume`` can continue from; :class:`ModelError` naming the file if not."""
    from ..models.checkpoint import read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no checkpoint to resume from (the run folder has no last.pt; "
                         f"start without --resume)")
    payload = read_checkpoint(path)
    missing = [k for k in RESUME_KEYS if k not in payload]
    if missing:
        raise ModelError(f"{path}: not a training checkpoint (missing {', '.join(missing)}); "
                         f"use --init to fine-tune from it instead")
    return payload


def rng_state() -> dict:
    """The random state a resumed run must continue from (torch, Python, and CUDA if present)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    """random.setstate needs tuples where a round trip may have left lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
