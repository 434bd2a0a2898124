"""One process or many: torchrun's environment, DDP setup, and rank-0-only side effects.

``torchrun --nproc_per_node=N -m sice train ...`` (or with ``--nnodes``/``--rdzv-endpoint`` for
several machines) starts N copies of the command with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``
and ``MASTER_ADDR``/``MASTER_PORT`` set. :func:`setup` turns them into a process group (gloo on
CPU, nccl on CUDA) and picks the device; a plain ``sice train`` is a world of one and never
touches ``torch.distributed``.
"""
from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only this process writes checkpoints, logs, plots and runs validation."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def setup(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group that torchrun describes (if any) and choose the device.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``auto``: CUDA when available. Under torchrun each rank takes ``cuda:LOCAL_RANK``.
    timeout_s : float
        Collective timeout; rank 0 validates while the others wait at a barrier.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.local_rank])
        else:
            dist.barrier()


def mean_across(value: float, info: DistInfo) -> float:
    """The mean of a scalar over all ranks (the value itself for one process)."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` in a world of several processes, else ``model``."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
