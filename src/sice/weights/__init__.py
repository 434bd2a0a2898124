"""Weights shipped inside the package, and which model is the default.

Every shipped model lives here as ``<registry name>.pt`` (a sice checkpoint), optionally with
``<registry name>.onnx`` + ``.onnx.json`` (its fast onnxruntime form) and ``<registry name>.md``
(its model card). Kept free of heavy imports: the onnxruntime path of ``sice enhance`` finds
the shipped ONNX file through here without importing torch.
"""
from __future__ import annotations

from pathlib import Path

#: Registry name of the model whose shipped weights ``sice enhance`` uses when none is named.
DEFAULT_MODEL = "tonegrid"
#: The name that means :data:`DEFAULT_MODEL` in every command and in the API.
DEFAULT_ALIAS = "default"

FOLDER = Path(__file__).resolve().parent


def resolve_alias(name: str) -> str:
    """``"default"`` -> :data:`DEFAULT_MODEL` (also before a ``:untrained`` suffix); other names unchanged."""
    if name == DEFAULT_ALIAS or name.startswith(DEFAULT_ALIAS + ":"):
        return DEFAULT_MODEL + name[len(DEFAULT_ALIAS):]
    return name


def shipped_file(name: str, suffix: str) -> Path | None:
    """``<name><suffix>`` in the package's weights folder if it exists (``default`` = the
    default model)."""
    p = FOLDER / f"{resolve_alias(name)}{suffix}"
    return p if p.is_file() else None
