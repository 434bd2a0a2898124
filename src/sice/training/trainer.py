"""The trainer: one run of ``sice train`` as a small class, and :func:`train`, its entry point.

:func:`train` runs in one process or, under ``torchrun``, in each of several (DDP); everything
that writes files or validates happens on rank 0 only. A run folder holds::

    config.toml      the resolved configuration (defaults + file + overrides)
    last.pt          the latest checkpoint (every run.checkpoint_every steps and at the end)
    best.pt          the checkpoint with the best validation PSNR so far
    train_log.csv    step, epoch, lr, loss, samples/s, elapsed time
    val_log.csv      step, epoch, PSNR, SSIM, number of validation images
    curves.png       loss and validation curves, redrawn during the run
    problems.txt     scenes and frames left out, and why

Checkpoints are :func:`sice.models.save_checkpoint` files with the optimiser, schedule, step,
epoch, random state and config added (:mod:`sice.training.checkpoints`), so ``sice enhance
--model RUN/last.pt`` uses them directly and ``--resume`` continues exactly where they were
written: the sample drawn at each step is a pure function of (seed, epoch, index)
(:class:`sice.training.data.PairDataset`), so a resumed run and an uninterrupted one see the
same batches and, on the same machine, end with the same weights.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..dataset.layout import read_sice_layout, split_scenes
from ..errors import DatasetError, ModelError, SiceError
from . import distributed as dd
from .checkpoints import read_training_checkpoint, rng_state, set_rng_state
from .config import TrainConfig, dumps_toml
from .data import PairDataset, load_pairs
from .logs import AUX_CACHE, RunFiles
from .objective import forward, weighted_loss
from .schedule import make_optimizer, make_scheduler
from .validation import input_scores, validate


@dataclasses.dataclass
class TrainResult:
    """What a finished :func:`train` call leaves behind (on rank 0; other ranks get the step only)."""

    run_dir: Path
    step: int
    epoch: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    val: list[dict]
    problems: list[tuple[str, str]]
    final_loss: float = float("nan")
    #: The trained network (this rank's copy, unwrapped from DDP, in train mode).
    model: torch.nn.Module | None = None


def train(dataset: os.PathLike | str, run_dir: os.PathLike | str, cfg: TrainConfig, *,
          resume: bool = False, init: os.PathLike | str | None = None, progress: bool = True,
          echo: Callable[[str], None] | None = None, stop_after: int | None = None) -> TrainResult:
    """Train ``cfg.model`` on the SICE-layout ``dataset``, writing the run into ``run_dir``.

    Parameters
    ----------
    dataset : path-like
        Anything :func:`sice.dataset.layout.read_sice_layout` reads.
    run_dir : path-like
        Output folder (created). Without ``resume`` it must not hold a run already.
    cfg : TrainConfig
    resume : bool
        Continue from ``run_dir/last.pt`` with its step, optimiser, schedule and random state.
    init : path-like, optional
        Start from the weights of this checkpoint (fine-tuning), with a fresh optimiser.
    progress : bool
        Show tqdm bars (rank 0).
    echo : callable, optional
        Receives one-line notes (problems, validation results); default: nothing.
    stop_after : int, optional
        Stop (with a checkpoint) once this step is reached, as ``run.time_limit_s`` does on time:
        the schedule still spans the whole run, and ``resume`` continues it.

    Raises
    ------
    DatasetError
        No usable training pair is left (the message lists why scenes were left out).
    ModelError
        ``--resume`` without or with a corrupt/non-training checkpoint; ``--init`` for another model.
    SiceError
        The loss became NaN/inf.
    """
    info = dd.setup(cfg.run.device)
    try:
        trainer = Trainer(dataset, run_dir, cfg, info, resume=resume, init=init, progress=progress,
                          echo=echo, stop_after=stop_after)
        trainer.setup()
        return trainer.run()
    finally:
        dd.cleanup(info)


@dataclasses.dataclass
class LossWindow:
    """Sums over the steps since the last training-log row: the row's means and samples/s."""

    loss: float = 0.0
    err: float = 0.0
    n: int = 0
    #: Steps timed since ``started`` (for samples/s; unlike the sums, not carried over a resume).
    timed_n: int = 0
    started: float = 0.0

    def add(self, loss: float, err: float) -> None:
        self.loss += loss
        self.err += err
        self.n += 1
        self.timed_n += 1

    def reset(self, now: float) -> None:
        self.loss, self.err, self.n, self.timed_n, self.started = 0.0, 0.0, 0, 0, now

    def saved(self) -> list:
        """What a checkpoint keeps, so that a resumed run's next row averages the same steps."""
        return [self.loss, self.n, self.err]

    def restore(self, saved: list) -> None:
        self.loss, self.n = float(saved[0]), int(saved[1])
        self.err = float(saved[2]) if len(saved) > 2 else float("nan")


class Trainer:
    """One training run on one rank: :meth:`setup`, then :meth:`run`.

    :meth:`setup` prepares the run folder (or the checkpoint to resume from), the model, the
    data, the optimiser and the logs; :meth:`run` repeats :meth:`train_step`, logs every
    ``run.log_every`` steps (:meth:`log`), checkpoints (:meth:`save`), validates
    (:meth:`run_validation`) and ends with :meth:`finish`. Parameters are those of
    :func:`train`, with ``info`` the rank's :class:`~sice.training.distributed.DistInfo`.

    Attributes
    ----------
    step, best_psnr, last_val, val_history, window
        The run's progress: optimiser steps done, best validation PSNR, the latest and all
        validations of this call, the sums of the training-log row in progress.
    model, ddp_model, mconf
        The network (``ddp_model`` wraps it under DDP) and its registry config (after setup).
    train_pairs, val_pairs, ds, sampler, steps_per_epoch, total
        The data and the run's length (after setup).
    optimizer, scheduler, loss_fn
        The optimisation (after setup).
    files
        What rank 0 writes (:class:`~sice.training.logs.RunFiles`); None on the other ranks.
    """

    def __init__(self, dataset: os.PathLike | str, run_dir: os.PathLike | str, cfg: TrainConfig,
                 info: dd.DistInfo, *, resume: bool = False, init: os.PathLike | str | None = None,
                 progress: bool = True, echo: Callable[[str], None] | None = None,
                 stop_after: int | None = None):
        self.dataset, self.run_dir, self.cfg, self.info = dataset, Path(run_dir), cfg, info
        self.resume, self.init, self.progress, self.stop_after = resume, init, progress, stop_after
        self.say = echo or (lambda _msg: None)
        self.last_path, self.best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        #: What rank 0 writes (None on the other ranks).
        self.files = RunFiles(self.run_dir, plot_every_s=cfg.run.plot_every_s) if info.is_main else None
        #: The checkpoint resumed from.
        self.payload: dict | None = None
        self.step = 0
        self.best_psnr = -float("inf")
        self.last_val: dict | None = None
        self.last_val_step = -1  # the same on every rank, so all of them meet at the barrier
        self.val_history: list[dict] = []
        self.window = LossWindow()
        self.loss_value = float("nan")
        self.t0 = 0.0
        self.bar = None

    # ---------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        """Everything before the first step; raises before any step when something is wrong."""
        self._prepare_folder()
        self._seed()
        self._build_model()
        self._load_data()
        self._build_optimisation()
        self._start_files()

    def _prepare_folder(self) -> None:
        if self.files is not None:
            self.files.clear_stale_parts()
        dd.barrier(self.info)  # no rank writes into the aux cache before rank 0 has cleared it
        if self.resume:
            self.payload = read_training_checkpoint(self.last_path)
            if self.payload["model"] != self.cfg.model.name:
                raise ModelError(f"{self.last_path}: checkpoint is for model {self.payload['model']!r}, "
                                 f"config says {self.cfg.model.name!r}")
        elif self.last_path.exists():
            raise SiceError(f"{self.run_dir}: holds a run already (last.pt); continue it with --resume or "
                            f"write to another folder")

    def _seed(self) -> None:
        run = self.cfg.run
        if run.threads:
            torch.set_num_threads(run.threads)
        torch.manual_seed(run.seed)
        random.seed(run.seed)
        np.random.seed(run.seed % 2**32)

    def _build_model(self) -> None:
        """The model: fresh, fine-tuned from ``init``, or resumed; on this rank's device."""
        from ..models import create_model, load_checkpoint

        cfg = self.cfg
        if self.init is not None:
            model = load_checkpoint(self.init)
            if model.sice_config.name != cfg.model.name:
                raise ModelError(f"{self.init}: holds model {model.sice_config.name!r}, but the run trains "
                                 f"{cfg.model.name!r}; pass --model {model.sice_config.name}")
            cfg.model.kwargs = dict(model.sice_kwargs)
        else:
            model = create_model(cfg.model.name, **cfg.model.kwargs)
        if self.payload is not None:
            try:
                model.load_state_dict(self.payload["state_dict"])
            except RuntimeError as exc:
                raise ModelError(f"{self.last_path}: weights do not fit the configured model: "
                                 f"{str(exc).splitlines()[0]}") from None
        self.mconf = model.sice_config
        if not self.mconf.fully_convolutional and cfg.data.mode != "full":
            raise ValueError(f"model {self.mconf.name!r} sees whole images (fully_convolutional=False): "
                             f"set data.mode = \"full\" (e.g. --full-image 512)")
        setting = cfg.run.channels_last
        self.channels_last = setting if setting != "auto" else self.info.device.type == "cpu"
        self.fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(self.info.device, memory_format=self.fmt).train()

    def _load_data(self) -> None:
        """Training pairs (every rank), validation pairs (rank 0), the sampler and the run length."""
        d, info = self.cfg.data, self.info
        scenes = read_sice_layout(self.dataset)
        self.problems = problems = list(scenes.problems)
        split = split_scenes(scenes, ratios=d.ratios, seed=d.split_seed, official_test=d.official_test)
        # Full mode shrinks to full_size on the long side, never enlarges (small images stay).
        sizing = ({"max_side": d.full_size} if d.mode == "full" else {"scale": d.scale})
        common = dict(direction=d.direction, under_max=d.under_max, over_min=d.over_min,
                      need_aux=self.mconf.aux == "luminance_detail", aux_method=d.aux_method,
                      aux_cache=_aux_cache_dir(d.aux_cache, self.run_dir))
        bar = _bar(len(split["train"]) + (len(split["val"]) if info.is_main else 0),
                   "loading scenes", self.progress and info.is_main)
        self.train_pairs = load_pairs(split["train"], **sizing, **common, problems=problems,
                                      frames_per_scene=d.train_frames_per_scene,
                                      progress=lambda _s: bar.update())
        limits = [x for x in (d.val_size, sizing.get("max_side", 0)) if x]
        val_sizing = {**sizing, "max_side": min(limits) if limits else 0}
        self.val_pairs = load_pairs(split["val"], **val_sizing, **common,
                                    frames_per_scene=d.val_frames_per_scene, problems=problems,
                                    progress=lambda _s: bar.update()) if info.is_main else []
        bar.close()
        if self.files is not None:
            self.files.write_problems(problems)
            for key, why in problems:
                self.say(f"note: {key}: {why}")
        self.train_scenes = len(split["train"])
        if not self.train_pairs:
            shown = "; ".join(f"{k}: {w}" for k, w in problems[:5])
            raise DatasetError(f"{self.dataset}: no usable training pair left among {self.train_scenes} "
                               f"training scenes ({len(problems)} problems{': ' + shown if shown else ''})")
        self.ds = PairDataset(self.train_pairs, mode=d.mode, patch_size=d.patch_size,
                              patches_per_image=d.patches_per_image, augment=d.augment,
                              colour_augment=d.colour_augment, exposure_jitter=d.exposure_jitter,
                              size_multiple=self.mconf.size_multiple, seed=self.cfg.run.seed)
        from torch.utils.data.distributed import DistributedSampler

        # The sampler shuffles per epoch from (seed, epoch) alone and gives every rank an equal,
        # disjoint share; with one process it is just a seeded shuffle.
        self.sampler = DistributedSampler(range(len(self.ds)), num_replicas=info.world_size, rank=info.rank,
                                          shuffle=True, seed=self.cfg.run.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // d.batch_size
        if self.steps_per_epoch == 0:
            raise DatasetError(f"{self.dataset}: {len(self.ds)} training samples are fewer than one batch of "
                               f"{d.batch_size} x {info.world_size} processes; lower data.batch_size")
        self.total = self.cfg.run.steps or self.cfg.run.epochs * self.steps_per_epoch

    def _build_optimisation(self) -> None:
        """DDP wrapper, loss, optimiser and schedule; on resume, their state and the random state."""
        from .losses import build_loss

        self.ddp_model = dd.wrap(self.model, self.info)
        self.loss_fn = build_loss(dict(self.cfg.loss)).to(self.info.device)
        self.optimizer = make_optimizer(self.model.parameters(), self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg, self.total)
        if self.payload is not None:
            self.optimizer.load_state_dict(self.payload["optimizer"])
            # The schedule function itself is rebuilt from the config with this run's length
            # (``--steps`` may extend a resumed run); only its position comes from the file.
            self.scheduler.load_state_dict(self.payload["scheduler"])
            self.step = int(self.payload["step"])
            self.best_psnr = float(self.payload.get("best_psnr", -float("inf")))
            set_rng_state(self.payload["rng"])

    def _start_files(self) -> None:
        self.cfg_dict = self.cfg.to_dict()
        # Where the starting weights came from, kept across --resume.
        self.init_source = (os.fspath(self.init) if self.init is not None
                            else (self.payload or {}).get("meta", {}).get("init"))
        if self.files is None:
            return
        self.files.write_config(dumps_toml(self.cfg_dict))
        self.files.open_logs(self.step if self.resume else None)
        self.say(f"training {self.mconf.name} on {len(self.train_pairs)} pairs from {self.train_scenes} scenes "
                 f"({len(self.val_pairs)} validation images), {self.steps_per_epoch} steps/epoch, "
                 f"{self.total} steps, {self.info.world_size} process(es) on {self.info.device}")

    # ------------------------------------------------------------------------------------ run
    def run(self) -> TrainResult:
        """Train from ``step`` to the end of the run (or to ``stop_after`` / the time limit)."""
        if self.info.is_main and self.val_pairs and self.step == 0:
            base = input_scores(self.val_pairs)
            self.say(f"validation images as they are (input vs label): PSNR {base['psnr']:.2f} dB, "
                     f"SSIM {base['ssim']:.4f}")
        if self.cfg.run.val_at_start and self.step == 0:
            self.run_validation(0)  # the starting point: fresh, or the --init weights
        self.bar = _bar(self.total, "training", self.progress and self.info.is_main, initial=self.step)
        self.t0 = time.monotonic()
        self.window.reset(time.monotonic())
        if self.payload is not None and "log_window" in self.payload:
            # The loss logged at the next log step averages the same steps as without the stop.
            self.window.restore(self.payload["log_window"])
        while self.step < self.total:
            if self._run_epoch(self.step // self.steps_per_epoch):
                break  # stopped early (stop_after / time limit) or done
        self.bar.close()
        return self.finish()

    def _run_epoch(self, epoch: int) -> bool:
        """The remaining steps of ``epoch``; True when the run stops within it."""
        self.sampler.set_epoch(epoch)
        order = list(iter(self.sampler))
        bs = self.cfg.data.batch_size
        for b in range(self.step % self.steps_per_epoch, self.steps_per_epoch):
            self.train_step(self.ds.batch(order[b * bs:(b + 1) * bs], epoch))
            if self._after_step(epoch):
                return True
        return False

    def train_step(self, batch: dict) -> None:
        """One optimiser step on ``batch`` (:meth:`PairDataset.batch`); SiceError if the loss is
        no longer finite."""
        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(self.info.device).contiguous(memory_format=self.fmt)

        rgb, label = tensor(batch["rgb"]), tensor(batch["label"])
        aux = None if batch["aux"] is None else tensor(batch["aux"])
        pred = forward(self.ddp_model, rgb, aux, self.mconf)
        loss, target = weighted_loss(self.loss_fn, pred, rgb, label, self.cfg.data)
        # Logged beside the loss, which keeps Caffe's scale (a sum over each image's
        # pixels: ~5e4 for L1 on 256x256 crops): the mean |error| per pixel and channel.
        err = float((pred.detach() - target).abs().mean())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.loss_value = float(loss.detach())
        if not math.isfinite(self.loss_value):
            raise self._diverged(f"the loss became {self.loss_value} at step {self.step}")
        self.window.add(self.loss_value, err)
        self.bar.update()

    def _after_step(self, epoch: int) -> bool:
        """Log, checkpoint and validate when due; True when the run must stop now."""
        step, total, run = self.step, self.total, self.cfg.run
        if step % run.log_every == 0 or step == total:
            self.log(epoch)
        if step % run.checkpoint_every == 0 and step < total and self.info.is_main:
            self.save(self.last_path, step // self.steps_per_epoch, self.last_val)
        end_of_epoch = step % self.steps_per_epoch == 0
        due = (run.val_every and step % run.val_every == 0) or (not run.val_every and end_of_epoch) or step == total
        if due and self.last_val_step != step:
            self.run_validation(epoch)
        out_of_time = bool(run.time_limit_s) and time.monotonic() - self.t0 >= run.time_limit_s
        if run.time_limit_s and self.info.distributed:
            # Clocks differ between ranks: all stop at the same step or DDP would hang.
            out_of_time = dd.mean_across(float(out_of_time), self.info) > 0
        return step >= total or (self.stop_after is not None and step >= self.stop_after) or out_of_time

    def log(self, epoch: int) -> None:
        """A training-log row: the means over the loss window, across all ranks."""
        w, info = self.window, self.info
        mean_loss = dd.mean_across(w.loss / w.n, info)
        mean_err = dd.mean_across(w.err / w.n, info)
        now = time.monotonic()
        if self.files is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            samples = w.timed_n * self.cfg.data.batch_size * info.world_size
            self.files.train_log.append({"step": self.step, "epoch": epoch, "lr": lr, "loss": mean_loss,
                                         "mean_abs_error": mean_err,
                                         "samples_per_s": samples / max(now - w.started, 1e-9),
                                         "elapsed_s": now - self.t0})
            self.bar.set_postfix(loss=f"{mean_loss:.4g}", mean_abs_error=f"{mean_err:.4f}", lr=f"{lr:.3g}")
            self._plot()
        w.reset(now)

    def run_validation(self, epoch: int) -> None:
        """Score the model on the validation images (rank 0; the others wait at a barrier), log
        it, and save ``best.pt`` when its PSNR is the best so far."""
        self.last_val_step = self.step
        if self.files is not None and self.val_pairs:
            v = validate(self.model, self.val_pairs, self.info.device, channels_last=self.channels_last)
            v.update(step=self.step, epoch=epoch)
            self.files.val_log.append(v)
            self.val_history.append(v)
            self.last_val = v
            self.say(f"step {self.step} epoch {epoch}: validation PSNR {v['psnr']:.2f} dB, "
                     f"SSIM {v['ssim']:.4f} on {v['images']} images")
            if v["psnr"] > self.best_psnr:
                self.best_psnr = v["psnr"]
                self.save(self.best_path, epoch, v)
            self._plot()
        dd.barrier(self.info)

    def save(self, path: Path, epoch: int, val: dict | None) -> None:
        """Write a training checkpoint of the current state (rank 0)."""
        from ..models import save_checkpoint

        extra = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "step": self.step, "epoch": epoch, "rng": rng_state(), "config": self.cfg_dict,
                 "best_psnr": self.best_psnr, "log_window": self.window.saved()}
        meta = {"source": "sice train", "dataset": os.fspath(self.dataset), "step": self.step, "epoch": epoch,
                "loss": dict(self.cfg.loss), "direction": self.cfg.data.direction}
        if self.init_source:
            meta["init"] = self.init_source
        if val:
            meta["val"] = val
        try:
            save_checkpoint(path, self.model, meta=meta, extra=extra)
        except ModelError as exc:  # NaN or huge weights: never saved, so last.pt stays good
            raise self._diverged(f"the weights diverged by step {self.step} "
                                 f"({str(exc).removeprefix(f'{path}: ')})") from None

    def finish(self) -> TrainResult:
        """The end of the run: a last validation if a time-boxed run has none, ``last.pt``, the curves."""
        epoch = self.step // self.steps_per_epoch
        if self.step < self.total:
            if self.info.is_main:
                self.say(f"stopped at step {self.step} of {self.total}; continue with --resume")
            if self.last_val_step != self.step and self.stop_after is None:
                self.run_validation(epoch)  # a time-boxed run ends with a score too
        if self.files is not None:
            self.save(self.last_path, epoch, self.last_val)
            self._plot(force=True)
        dd.barrier(self.info)
        main = self.info.is_main
        return TrainResult(run_dir=self.run_dir, step=self.step, epoch=epoch,
                           last_checkpoint=self.last_path if main else None,
                           best_checkpoint=self.best_path if main and self.best_path.exists() else None,
                           val=self.val_history, problems=self.problems, final_loss=self.loss_value,
                           model=self.model)

    # -------------------------------------------------------------------------------- helpers
    def _plot(self, force: bool = False) -> None:
        self.files.plot(f"{self.mconf.name} ({self.run_dir.name})", force=force)

    def _diverged(self, what: str) -> SiceError:
        """The error that ends a diverged run. Every checkpoint passed the weight check when it was
        saved (:func:`sice.models.save_checkpoint`), so an existing last.pt is a good one."""
        last = self.last_path if self.last_path.exists() else "none"
        return SiceError(f"{self.run_dir}: {what}; lower optim.lr (now {self.cfg.optim.lr:g}) or set "
                         f"optim.grad_clip (last good: {last})")


def _aux_cache_dir(setting: str, run_dir: Path) -> Path | None:
    if not setting:
        return None
    return run_dir / AUX_CACHE if setting == "run" else Path(setting)


def _bar(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True,
                mininterval=1.0, smoothing=0.05)
