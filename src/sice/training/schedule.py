"""The optimiser and the learning-rate schedule of a run (``[optim]`` and ``[schedule]``)."""
from __future__ import annotations

import functools
import math

import torch

from .config import TrainConfig


def lr_factor(step: int, *, total: int, name: str, warmup_steps: int, min_lr_ratio: float,
              step_every: int, gamma: float) -> float:
    """Multiplier of the base LR after ``step`` optimiser steps (linear warm-up, then the schedule)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    if name == "step":
        return gamma ** (step // step_every)
    span = max(1, total - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    s = cfg.schedule
    fn = functools.partial(lr_factor, total=total_steps, name=s.name, warmup_steps=s.warmup_steps,
                           min_lr_ratio=s.min_lr_ratio, step_every=s.step_every, gamma=s.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
