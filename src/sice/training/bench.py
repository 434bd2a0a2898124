"""Training throughput: patches per second for each registered model, NCHW vs channels_last.

One optimisation step is forward + loss + backward + SGD update on a batch of random patches
(and random aux layers for models that take them: their real cost is paid once per image by the
cache, not per step). Numbers are wall-clock medians over ``steps`` timed steps after one warm-up
step, in this process's torch thread setting.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch


@dataclasses.dataclass
class TrainSpeed:
    model: str
    channels_last: bool
    patch: int
    batch: int
    seconds_per_step: float

    @property
    def patches_per_s(self) -> float:
        return self.batch / self.seconds_per_step


def bench_training(models: list[str] | None = None, *, patch: int = 128, batch: int = 5, steps: int = 3,
                   device: str = "cpu", loss: dict | None = None) -> list[TrainSpeed]:
    """Time training steps of each model (all registered ones by default) in both memory formats.

    Parameters
    ----------
    models : list of str, optional
    patch : int
        Side of the square patches (rounded down to the model's size multiple).
    batch : int
        Patches per step (the release used 5).
    steps : int
        Timed steps per model and format.
    device : str
    loss : dict, optional
        Loss terms for :func:`sice.training.losses.build_loss`; default plain L2 as released.
    """
    from .losses import build_loss
    from ..models import create_model, list_models
    from .objective import forward

    if patch < 4 or batch < 1 or steps < 1:
        raise ValueError(f"need patch >= 4, batch >= 1, steps >= 1; got {patch}, {batch}, {steps}")
    dev = torch.device(device)
    loss_fn = build_loss(loss or {"l2": 1.0}).to(dev)
    out = []
    for name in models or list_models():
        for channels_last in (False, True):
            torch.manual_seed(0)
            model = create_model(name)
            cfg = model.sice_config
            p = patch - patch % max(1, cfg.size_multiple)
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model = model.to(dev, memory_format=fmt).train()
            opt = torch.optim.SGD(model.parameters(), lr=1e-9, momentum=0.9, weight_decay=1e-4)
            rgb = torch.rand(batch, 3, p, p, device=dev).contiguous(memory_format=fmt)
            target = torch.rand(batch, 3, p, p, device=dev).contiguous(memory_format=fmt)
            aux = torch.rand(batch, 2, p, p, device=dev).contiguous(memory_format=fmt) \
                if cfg.aux == "luminance_detail" else None
            times = []
            for i in range(steps + 1):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                loss_value = loss_fn(forward(model, rgb, aux, cfg), target)
                opt.zero_grad(set_to_none=True)
                loss_value.backward()
                opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                if i:  # the first step pays for allocation and kernel selection
                    times.append(time.perf_counter() - t)
            out.append(TrainSpeed(name, channels_last, p, batch, statistics.median(times)))
    return out
