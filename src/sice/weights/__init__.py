"""Weights shipped inside the package, and which model is the default.

Kept free of heavy imports: the onnxruntime path of ``sice enhance`` finds the shipped ONNX file
through here without importing torch.
"""
from __future__ import annotations

from pathlib import Path

#: The architecture whose shipped weights ``sice enhance`` uses when no model is named.
DEFAULT_MODEL = "gaingrid"

FOLDER = Path(__file__).resolve().parent


def shipped_file(name: str, suffix: str) -> Path | None:
    """``<name><suffix>`` in the package's weights folder if it exists (``default`` = the
    default model)."""
    if name == "default":
        name = DEFAULT_MODEL
    p = FOLDER / f"{name}{suffix}"
    return p if p.is_file() else None
