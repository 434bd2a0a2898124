"""The training loop: data, model, optimiser, schedule, checkpoints, validation, logs.

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
epoch, random state and config added, so ``sice enhance --model RUN/last.pt`` uses them directly
and ``--resume`` continues exactly where they were written: the sample drawn at each step is a
pure function of (seed, epoch, index) (:class:`sice.training.data.PairDataset`), so a resumed
run and an uninterrupted one see the same batches and, on the same machine, end with the same
weights.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..dataset.layout import read_sice_layout
from ..dataset.layout import split_scenes
from ..errors import DatasetError, ModelError, SiceError
from ..files import atomic_write_bytes, remove_stale_parts
from . import distributed as dd
from .config import TrainConfig, dumps_toml
from .data import Pair, PairDataset, load_pairs
from .plots import TRAIN_FIELDS, VAL_FIELDS, CsvLog, plot_curves


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


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------
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
    from ..models.tonegrid import luma

    def mean_luma(x: torch.Tensor) -> torch.Tensor:
        return luma(x).mean(dim=(1, 2, 3)).clamp(1e-3, 1 - 1e-3)

    gamma = (mean_luma(label).log() / mean_luma(rgb).log()).clamp(0.2, 5.0).view(-1, 1, 1, 1)
    t = ((rgb.amax(dim=1, keepdim=True) - start) / (1 - start)).clamp(0, 1)
    return (1 - t) * label + t * rgb.clamp_min(1e-6) ** gamma


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


@torch.no_grad()
def validate(model: torch.nn.Module, pairs: list[Pair], device: torch.device, *,
             channels_last: bool = False) -> dict:
    """Mean PSNR and SSIM of the model's outputs (clipped to [0, 1]) over whole validation images."""
    from .data import from_cache

    config = model.sice_config
    mult = max(1, config.size_multiple)
    was_training = model.training
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    psnrs, ssims = [], []
    for p in pairs:
        h, w = p.shape[0] - p.shape[0] % mult, p.shape[1] - p.shape[1] % mult
        rgb = torch.from_numpy(from_cache(p.rgb[:h, :w])).permute(2, 0, 1)[None]
        aux = None if p.aux is None else torch.from_numpy(np.ascontiguousarray(p.aux[:h, :w])).permute(2, 0, 1)[None]
        rgb = rgb.to(device).contiguous(memory_format=fmt)
        aux = None if aux is None else aux.to(device).contiguous(memory_format=fmt)
        out = forward(model, rgb, aux, config).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
        psnr, ssim = _scores(out, from_cache(p.label[:h, :w]))
        psnrs.append(psnr)
        ssims.append(ssim)
    model.train(was_training)
    return {"psnr": float(np.mean(psnrs)) if psnrs else float("nan"),
            "ssim": float(np.mean(ssims)) if ssims else float("nan"), "images": len(pairs)}


def input_scores(pairs: list[Pair]) -> dict:
    """Mean PSNR and SSIM of the validation inputs themselves against their labels (the identity)."""
    from .data import from_cache

    scores = [_scores(from_cache(p.rgb), from_cache(p.label)) for p in pairs]
    return {"psnr": float(np.mean([s[0] for s in scores])), "ssim": float(np.mean([s[1] for s in scores]))}


def _scores(image: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of one image as ``sice eval`` reports them (:mod:`sice.evaluation.metrics`);
    NaN for an output that is not finite (a diverging model), which the metrics refuse."""
    from ..evaluation.metrics import psnr, ssim

    if not np.all(np.isfinite(image)):
        return float("nan"), float("nan")
    return psnr(image, label), ssim(image, label)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    """random.setstate needs tuples where a round trip may have left lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def read_training_checkpoint(path: os.PathLike | str) -> dict:
    """A checkpoint that ``--resume`` can continue from; :class:`ModelError` naming the file if not."""
    from ..models.checkpoint import read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no checkpoint to resume from (the run folder has no last.pt; "
                         f"start without --resume)")
    payload = read_checkpoint(path)
    missing = [k for k in ("optimizer", "scheduler", "step", "epoch", "rng", "config") if k not in payload]
    if missing:
        raise ModelError(f"{path}: not a training checkpoint (missing {', '.join(missing)}); "
                         f"use --init to fine-tune from it instead")
    return payload


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
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
    from .losses import build_loss
    from ..models import create_model, load_checkpoint, save_checkpoint

    say = echo or (lambda _msg: None)
    run_dir = Path(run_dir)
    info = dd.setup(cfg.run.device)
    try:
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            _remove_stale_temps(run_dir)
        last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
        payload = None
        if resume:
            payload = read_training_checkpoint(last_path)
            if payload["model"] != cfg.model.name:
                raise ModelError(f"{last_path}: checkpoint is for model {payload['model']!r}, config says "
                                 f"{cfg.model.name!r}")
        elif last_path.exists():
            raise SiceError(f"{run_dir}: holds a run already (last.pt); continue it with --resume or "
                            f"write to another folder")
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        torch.manual_seed(cfg.run.seed)
        random.seed(cfg.run.seed)
        np.random.seed(cfg.run.seed % 2**32)

        # Model (fresh, fine-tuned from --init, or resumed).
        if init is not None:
            model = load_checkpoint(init)
            if model.sice_config.name != cfg.model.name:
                raise ModelError(f"{init}: holds model {model.sice_config.name!r}, but the run trains "
                                 f"{cfg.model.name!r}; pass --model {model.sice_config.name}")
            cfg.model.kwargs = dict(model.sice_kwargs)
        else:
            model = create_model(cfg.model.name, **cfg.model.kwargs)
        if payload is not None:
            try:
                model.load_state_dict(payload["state_dict"])
            except RuntimeError as exc:
                raise ModelError(f"{last_path}: weights do not fit the configured model: "
                                 f"{str(exc).splitlines()[0]}") from None
        mconf = model.sice_config
        if not mconf.fully_convolutional and cfg.data.mode != "full":
            raise ValueError(f"model {mconf.name!r} sees whole images (fully_convolutional=False): "
                             f"set data.mode = \"full\" (e.g. --full-image 512)")
        channels_last = cfg.run.channels_last if cfg.run.channels_last != "auto" else info.device.type == "cpu"
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(info.device, memory_format=fmt).train()

        # Data.
        scenes = read_sice_layout(dataset)
        problems = list(scenes.problems)
        split = split_scenes(scenes, ratios=cfg.data.ratios, seed=cfg.data.split_seed,
                             official_test=cfg.data.official_test)
        d = cfg.data
        # Full mode shrinks to full_size on the long side, never enlarges (small images stay).
        sizing = ({"max_side": d.full_size} if d.mode == "full" else {"scale": d.scale})
        need_aux = mconf.aux == "luminance_detail"
        common = dict(direction=d.direction, under_max=d.under_max, over_min=d.over_min, need_aux=need_aux,
                      aux_method=d.aux_method, aux_cache=_aux_cache_dir(d.aux_cache, run_dir))
        bar = _bar(len(split["train"]) + (len(split["val"]) if info.is_main else 0),
                   "loading scenes", progress and info.is_main)
        train_pairs = load_pairs(split["train"], **sizing, **common, problems=problems,
                                 frames_per_scene=d.train_frames_per_scene,
                                 progress=lambda _s: bar.update())
        limits = [x for x in (d.val_size, sizing.get("max_side", 0)) if x]
        val_sizing = {**sizing, "max_side": min(limits) if limits else 0}
        val_pairs = load_pairs(split["val"], **val_sizing, **common,
                               frames_per_scene=d.val_frames_per_scene, problems=problems,
                               progress=lambda _s: bar.update()) if info.is_main else []
        bar.close()
        if info.is_main:
            _write_problems(run_dir / "problems.txt", problems)
            for key, why in problems:
                say(f"note: {key}: {why}")
        if not train_pairs:
            shown = "; ".join(f"{k}: {w}" for k, w in problems[:5])
            raise DatasetError(f"{dataset}: no usable training pair left among {len(split['train'])} training "
                               f"scenes ({len(problems)} problems{': ' + shown if shown else ''})")
        ds = PairDataset(train_pairs, mode=d.mode, patch_size=d.patch_size, patches_per_image=d.patches_per_image,
                         augment=d.augment, colour_augment=d.colour_augment,
                         exposure_jitter=d.exposure_jitter, size_multiple=mconf.size_multiple, seed=cfg.run.seed)
        from torch.utils.data.distributed import DistributedSampler

        # The sampler shuffles per epoch from (seed, epoch) alone and gives every rank an equal,
        # disjoint share; with one process it is just a seeded shuffle.
        sampler = DistributedSampler(range(len(ds)), num_replicas=info.world_size, rank=info.rank,
                                     shuffle=True, seed=cfg.run.seed, drop_last=True)
        bs = d.batch_size
        steps_per_epoch = len(sampler) // bs
        if steps_per_epoch == 0:
            raise DatasetError(f"{dataset}: {len(ds)} training samples are fewer than one batch of "
                               f"{bs} x {info.world_size} processes; lower data.batch_size")
        total = cfg.run.steps or cfg.run.epochs * steps_per_epoch

        # Optimisation.
        ddp_model = dd.wrap(model, info)
        loss_fn = build_loss(dict(cfg.loss)).to(info.device)
        optimizer = make_optimizer(model.parameters(), cfg)
        scheduler = make_scheduler(optimizer, cfg, total)
        step, best_psnr = 0, -float("inf")
        if payload is not None:
            optimizer.load_state_dict(payload["optimizer"])
            # The schedule function itself is rebuilt from the config with this run's length
            # (``--steps`` may extend a resumed run); only its position comes from the file.
            scheduler.load_state_dict(payload["scheduler"])
            step = int(payload["step"])
            best_psnr = float(payload.get("best_psnr", -float("inf")))
            _set_rng_state(payload["rng"])

        cfg_dict = cfg.to_dict()
        # Where the starting weights came from, kept across --resume.
        init_source = os.fspath(init) if init is not None else (payload or {}).get("meta", {}).get("init")
        train_log = val_log = None
        if info.is_main:
            atomic_write_bytes(run_dir / "config.toml", dumps_toml(cfg_dict).encode("utf-8"))
            train_log = CsvLog(run_dir / "train_log.csv", TRAIN_FIELDS)
            val_log = CsvLog(run_dir / "val_log.csv", VAL_FIELDS)
            if resume:
                train_log.truncate_after(step)
                val_log.truncate_after(step)
            say(f"training {mconf.name} on {len(train_pairs)} pairs from {len(split['train'])} scenes "
                f"({len(val_pairs)} validation images), {steps_per_epoch} steps/epoch, {total} steps, "
                f"{info.world_size} process(es) on {info.device}")

        def save(path: Path, epoch: int, val: dict | None) -> None:
            extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                     "epoch": epoch, "rng": _rng_state(), "config": cfg_dict, "best_psnr": best_psnr,
                     "log_window": [window_loss, window_n, window_err]}
            meta = {"source": "sice train", "dataset": os.fspath(dataset), "step": step, "epoch": epoch,
                    "loss": dict(cfg.loss), "direction": d.direction}
            if init_source:
                meta["init"] = init_source
            if val:
                meta["val"] = val
            try:
                save_checkpoint(path, model, meta=meta, extra=extra)
            except ModelError as exc:  # NaN or huge weights: never saved, so last.pt stays good
                raise _diverged(run_dir, f"the weights diverged by step {step} "
                                         f"({str(exc).removeprefix(f'{path}: ')})", cfg, last_path) from None

        last_plot = time.monotonic() - cfg.run.plot_every_s / 2  # first drawing soon, not at once
        window_loss, window_n, window_err = 0.0, 0, 0.0
        val_history: list[dict] = []
        last_val: dict | None = None

        def maybe_plot(force: bool = False) -> None:
            # Drawing costs about a second on this CPU: at most every run.plot_every_s.
            nonlocal last_plot
            if force or time.monotonic() - last_plot > cfg.run.plot_every_s:
                plot_curves(run_dir / "train_log.csv", run_dir / "val_log.csv", run_dir / "curves.png",
                            title=f"{mconf.name} ({run_dir.name})")
                last_plot = time.monotonic()

        last_val_step = -1  # the same on every rank, so all of them meet at the barrier below

        def run_validation(epoch: int) -> None:
            nonlocal best_psnr, last_val, last_val_step
            last_val_step = step
            if info.is_main and val_pairs:
                v = validate(model, val_pairs, info.device, channels_last=channels_last)
                v.update(step=step, epoch=epoch)
                val_log.append(v)
                val_history.append(v)
                last_val = v
                say(f"step {step} epoch {epoch}: validation PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.4f} "
                    f"on {v['images']} images")
                if v["psnr"] > best_psnr:
                    best_psnr = v["psnr"]
                    save(best_path, epoch, v)
                maybe_plot()
            dd.barrier(info)

        if info.is_main and val_pairs and step == 0:
            base = input_scores(val_pairs)
            say(f"validation images as they are (input vs label): PSNR {base['psnr']:.2f} dB, "
                f"SSIM {base['ssim']:.4f}")
        if cfg.run.val_at_start and step == 0:
            run_validation(0)  # the starting point: fresh, or the --init weights
        pbar = _bar(total, "training", progress and info.is_main, initial=step)
        t0 = time.monotonic()
        window_loss, window_n, window_err, window_t, timed_n = 0.0, 0, 0.0, time.monotonic(), 0
        if payload is not None and "log_window" in payload:
            # The loss logged at the next log step averages the same steps as without the stop.
            window_loss, window_n = float(payload["log_window"][0]), int(payload["log_window"][1])
            window_err = float(payload["log_window"][2]) if len(payload["log_window"]) > 2 else float("nan")
        loss_value = float("nan")
        epoch = step // steps_per_epoch
        while step < total:
            epoch = step // steps_per_epoch
            sampler.set_epoch(epoch)
            order = list(iter(sampler))
            for b in range(step % steps_per_epoch, steps_per_epoch):
                batch = ds.batch(order[b * bs:(b + 1) * bs], epoch)
                rgb = torch.from_numpy(batch["rgb"]).to(info.device).contiguous(memory_format=fmt)
                label = torch.from_numpy(batch["label"]).to(info.device).contiguous(memory_format=fmt)
                aux = None if batch["aux"] is None else \
                    torch.from_numpy(batch["aux"]).to(info.device).contiguous(memory_format=fmt)
                pred = forward(ddp_model, rgb, aux, mconf)
                if d.rolloff_from > 0:
                    label = highlight_rolloff_target(rgb, label, d.rolloff_from)
                if d.lost_weight != 1.0:
                    w = lost_detail_weight(rgb, d.lost_weight)
                    loss = loss_fn(pred * w, label * w)
                else:
                    loss = loss_fn(pred, label)
                # Logged beside the loss, which keeps Caffe's scale (a sum over each image's
                # pixels: ~5e4 for L1 on 256x256 crops): the mean |error| per pixel and channel.
                err = float((pred.detach() - label).abs().mean())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise _diverged(run_dir, f"the loss became {loss_value} at step {step}", cfg, last_path)
                window_loss += loss_value
                window_err += err
                window_n += 1
                timed_n += 1
                pbar.update()
                if step % cfg.run.log_every == 0 or step == total:
                    mean_loss = dd.mean_across(window_loss / window_n, info)
                    mean_err = dd.mean_across(window_err / window_n, info)
                    now = time.monotonic()
                    if info.is_main:
                        train_log.append({"step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                                          "loss": mean_loss, "mean_abs_error": mean_err,
                                          "samples_per_s": timed_n * bs * info.world_size / max(now - window_t, 1e-9),
                                          "elapsed_s": now - t0})
                        pbar.set_postfix(loss=f"{mean_loss:.4g}", mean_abs_error=f"{mean_err:.4f}",
                                         lr=f"{optimizer.param_groups[0]['lr']:.3g}")
                        maybe_plot()
                    window_loss, window_n, window_err, window_t, timed_n = 0.0, 0, 0.0, now, 0
                if step % cfg.run.checkpoint_every == 0 and step < total and info.is_main:
                    save(last_path, step // steps_per_epoch, last_val)
                end_of_epoch = step % steps_per_epoch == 0
                if (cfg.run.val_every and step % cfg.run.val_every == 0) or \
                        (not cfg.run.val_every and end_of_epoch) or step == total:
                    if last_val_step != step:
                        run_validation(epoch)
                out_of_time = bool(cfg.run.time_limit_s) and time.monotonic() - t0 >= cfg.run.time_limit_s
                if cfg.run.time_limit_s and info.distributed:
                    # Clocks differ between ranks: all stop at the same step or DDP would hang.
                    out_of_time = dd.mean_across(float(out_of_time), info) > 0
                if step >= total or (stop_after is not None and step >= stop_after) or out_of_time:
                    break
            else:
                continue
            break  # stopped early (stop_after / time limit) or done
        pbar.close()
        epoch = step // steps_per_epoch
        if step < total:
            if info.is_main:
                say(f"stopped at step {step} of {total}; continue with --resume")
            if last_val_step != step and stop_after is None:
                run_validation(epoch)  # a time-boxed run ends with a score too
        if info.is_main:
            save(last_path, epoch, last_val)
            maybe_plot(force=True)
        dd.barrier(info)
        return TrainResult(run_dir=run_dir, step=step, epoch=epoch,
                           last_checkpoint=last_path if info.is_main else None,
                           best_checkpoint=best_path if info.is_main and best_path.exists() else None,
                           val=val_history, problems=problems, final_loss=loss_value, model=model)
    finally:
        dd.cleanup(info)


def _diverged(run_dir: Path, what: str, cfg: TrainConfig, last_path: Path) -> SiceError:
    """The error that ends a diverged run. Every checkpoint passed the weight check when it was
    saved (:func:`sice.models.save_checkpoint`), so an existing last.pt is a good one."""
    return SiceError(f"{run_dir}: {what}; lower optim.lr (now {cfg.optim.lr:g}) or set optim.grad_clip "
                     f"(last good: {last_path if last_path.exists() else 'none'})")


def _aux_cache_dir(setting: str, run_dir: Path) -> Path | None:
    if not setting:
        return None
    return run_dir / "aux_cache" if setting == "run" else Path(setting)


def _bar(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True,
                mininterval=1.0, smoothing=0.05)


def _write_problems(path: Path, problems: list[tuple[str, str]]) -> None:
    atomic_write_bytes(path, "".join(f"{k}\t{w}\n" for k, w in problems).encode("utf-8"))


#: What the run writes; a save killed half-way leaves ``.<name>.<random>.part`` next to it.
_RUN_FILES = ("last.pt", "best.pt", "config.toml", "problems.txt", "train_log.csv", "val_log.csv", "curves.png")


def _remove_stale_temps(run_dir: Path) -> None:
    """Delete the temp files of a run killed while saving (never outputs: they are renamed into
    place only when complete), so a resumed or restarted run clears them."""
    remove_stale_parts(run_dir, _RUN_FILES)
