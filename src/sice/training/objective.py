"""What one training step optimises: how the model is fed, the target, the per-pixel weights.

All tensors are (B, C, H, W), RGB, in [0, 1].
"""
from __future__ import annotations

import torch


def forward(model: torch.nn.Module, rgb: torch.Tensor, aux: torch.Tensor | None, config) -> torch.Tensor:
    """Call ``model`` as its :class:`sice.models.ModelConfig` says it must be fed."""
    if config.aux == "luminance_detail":
        if aux is None:
            raise ValueError(f"model {config.name!r} needs aux = cat(L, D) and none was given")
        return model(rgb, aux)
    return model(rgb)


def lost_detail_weight(rgb: torch.Tensor, weight: float) -> torch.Tensor:
    """(B, 1, H, W) loss weights: ``weight`` where the input is clipped (every channel >= 250/255)
    or black (every channel <= 2/255), 1 elsewhere (see ``DataSection.lost_weight``)."""
    lo, hi = rgb.amin(dim=1, keepdim=True), rgb.amax(dim=1, keepdim=True)
    lost = (lo >= 249.5 / 255) | (hi <= 2.5 / 255)
    return torch.where(lost, torch.full_like(lo, weight), torch.ones_like(lo))


def highlight_rolloff_target(rgb: torch.Tensor, label: torch.Tensor, start: float) -> torch.Tensor:
    """The label, blended towards a gamma of the input where the input nears clipping.

    ``t = clip((max channel - start) / (1 - start), 0, 1)`` per pixel; the target is ``(1 - t)
    label + t rgb**gamma``, with one gamma per image that takes the input's mean luma to the
    label's. A clipped sky's neighbourhood holds no detail in this input; its label's detail
    (from darker frames) can only be matched by a curve that plunges just below white, which
    draws a hard edge around every clipped sun and lamp. The gamma rolls off into white smoothly.
    (B, 3, H, W) in [0, 1]; see ``DataSection.rolloff_from``.
    """
    from ..tensorops import luminance as luma

    def mean_luma(x: torch.Tensor) -> torch.Tensor:
        return luma(x).mean(dim=(1, 2, 3)).clamp(1e-3, 1 - 1e-3)

    gamma = (mean_luma(label).log() / mean_luma(rgb).log()).clamp(0.2, 5.0).view(-1, 1, 1, 1)
    t = ((rgb.amax(dim=1, keepdim=True) - start) / (1 - start)).clamp(0, 1)
    return (1 - t) * label + t * rgb.clamp_min(1e-6) ** gamma


def weighted_loss(loss_fn: torch.nn.Module, pred: torch.Tensor, rgb: torch.Tensor, label: torch.Tensor,
                  data) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, target)`` of one batch as ``data`` (a :class:`~sice.training.config.DataSection`)
    asks: the label rolled off near clipping (``rolloff_from``) and clipped or black input pixels
    weighted by ``lost_weight``."""
    if data.rolloff_from > 0:
        label = highlight_rolloff_target(rgb, label, data.rolloff_from)
    if data.lost_weight != 1.0:
        w = lost_detail_weight(rgb, data.lost_weight)
        return loss_fn(pred * w, label * w), label
    return loss_fn(pred, label), label
