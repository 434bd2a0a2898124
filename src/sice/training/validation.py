"""Scoring a model on whole validation images, with the metrics ``sice eval`` reports.

PSNR and SSIM come from :mod:`sice.evaluation.metrics`, so a figure in ``val_log.csv`` equals
what ``sice eval`` gives for the same output and label.
"""
from __future__ import annotations

import numpy as np
import torch

from .data import Pair, from_cache
from ..tensorops import image_to_tensor, tensor_to_image
from .objective import forward


@torch.no_grad()
def validate(model: torch.nn.Module, pairs: list[Pair], device: torch.device, *,
             channels_last: bool = False) -> dict:
    """Mean PSNR and SSIM of the model's outputs (clipped to [0, 1]) over whole validation images."""
    config = model.sice_config
    mult = max(1, config.size_multiple)
    was_training = model.training
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    psnrs, ssims = [], []
    for p in pairs:
        h, w = p.shape[0] - p.shape[0] % mult, p.shape[1] - p.shape[1] % mult
        rgb = image_to_tensor(from_cache(p.rgb[:h, :w]), device=device, memory_format=fmt)
        aux = None if p.aux is None else image_to_tensor(p.aux[:h, :w], device=device, memory_format=fmt)
        out = tensor_to_image(forward(model, rgb, aux, config).clamp(0, 1))
        psnr, ssim = _scores(out, from_cache(p.label[:h, :w]))
        psnrs.append(psnr)
        ssims.append(ssim)
    model.train(was_training)
    return {"psnr": float(np.mean(psnrs)) if psnrs else float("nan"),
            "ssim": float(np.mean(ssims)) if ssims else float("nan"), "images": len(pairs)}


def input_scores(pairs: list[Pair]) -> dict:
    """Mean PSNR and SSIM of the validation inputs themselves against their labels (the identity)."""
    scores = [_scores(from_cache(p.rgb), from_cache(p.label)) for p in pairs]
    return {"psnr": float(np.mean([s[0] for s in scores])), "ssim": float(np.mean([s[1] for s in scores]))}


def _scores(image: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of one image as ``sice eval`` reports them (:mod:`sice.evaluation.metrics`);
    NaN for an output that is not finite (a diverging model), which the metrics refuse."""
    from ..evaluation.metrics import psnr, ssim

    if not np.all(np.isfinite(image)):
        return float("nan"), float("nan")
    return psnr(image, label), ssim(image, label)
