"""The torch twin of :mod:`sice.imageops`: NumPy images <-> tensors, and luma of tensors.

Images in the core are NumPy ``(H, W, C)`` arrays; models take ``(B, C, H, W)`` tensors. The
conversions between the two layouts and the Rec. 601 luma of a tensor are written here once.
This module imports torch: only code that already uses torch imports it (the ONNX-only path
reads :mod:`sice.imageops`, which does not).
"""
from __future__ import annotations

import numpy as np
import torch

from .imageops import REC601

__all__ = ["image_to_tensor", "luminance", "tensor_to_image"]


def image_to_tensor(image: np.ndarray, *, device: torch.device | str | None = None,
                    memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """(H, W, C) ndarray -> (1, C, H, W) tensor of the same dtype, on ``device``.

    Parameters
    ----------
    image : (H, W, C) ndarray
        Any dtype torch takes (float32 for the models); the values are not changed.
    device : torch.device or str, optional
        Where the tensor goes (default: the CPU).
    memory_format : torch.memory_format
        ``torch.contiguous_format`` (default): a dense NCHW copy, made on the CPU before the
        transfer. ``torch.channels_last``: a view of the (C-contiguous) array itself, no copy
        on the CPU.

    Returns
    -------
    (1, C, H, W) torch.Tensor
    """
    a = np.asarray(image)
    if a.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {a.shape}")
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
    return t.contiguous(memory_format=memory_format).to(device)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) float32 ndarray (on the CPU, detached; values unchanged)."""
    if tensor.ndim != 4 or tensor.shape[0] != 1:
        raise ValueError(f"tensor must be (1, C, H, W), got shape {tuple(tensor.shape)}")
    return tensor[0].detach().float().permute(1, 2, 0).cpu().numpy()


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) Rec. 601 luma (:data:`sice.imageops.REC601`).

    Three channel slices times scalars, the form the shipped tonegrid weights were trained and
    exported with (a weighted ``sum`` over channels is another ONNX graph).
    """
    r, g, b = REC601
    return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]
