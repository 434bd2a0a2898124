"""``sice train``: train a network on SICE-layout data (one process, or each rank under torchrun)."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import report_errors


@click.command(name="train")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "model_name", help="Registered model to train (see 'sice models'). "
              "Default: the config's model.name (sice2018).")
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: config.toml, last.pt, best.pt, logs and curves.png go here.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML config (see configs/); defaults are the released recipe adapted to a CPU.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value, e.g. --set optim.lr=1e-3 --set loss.ssim=0.1 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from last.pt exactly (its config, "
              "step, optimiser and random state); --steps/--epochs/--set may extend or adjust it.")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from the weights of this checkpoint (fine-tuning, e.g. an imported Caffe model).")
@click.option("--seed", type=int, help="Seed of initialisation, patch sampling and shuffling (run.seed).")
@click.option("--steps", type=click.IntRange(min=1), help="Total optimisation steps (run.steps).")
@click.option("--epochs", type=click.IntRange(min=1), help="Total epochs, when --steps is not given (run.epochs).")
@click.option("--direction", type=click.Choice(["under", "over", "both"]),
              help="Input frames: darker or brighter than the label, or both (data.direction).")
@click.option("--split-seed", type=int, help="Seed of the scene-level train/val/test split (data.split_seed).")
@click.option("--full-image", "full_image", type=click.IntRange(min=8), metavar="SIZE",
              help="Train on whole images shrunk to at most SIZE on the long side instead of patches "
              "(data.mode=full); needed by models that see the whole image.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="run.device (default auto).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars with ETA.")
@report_errors
def command(dataset, model_name, run_dir, config_file, overrides, resume, init, seed, steps, epochs, direction,
            split_seed, full_image, device, progress):
    """Train a network on the SICE-layout DATASET (the authors' Dataset_Part1/2 or a built one).

    \b
    Examples:
      sice train data-built/sice512 --model sice2018 -o runs/m2 --config configs/sice2018.toml
      sice train data-built/sice512 -o runs/m2 --resume --steps 4000
      torchrun --nproc_per_node=2 -m sice train data-built/sice512 -o runs/ddp --steps 500
    """
    from ..errors import SiceError
    from ..models import model_config
    from ..training import train

    cfg = _resolve_config(run_dir, config_file, overrides, resume, model_name, seed, steps, epochs, direction,
                          split_seed, full_image, device)
    if not model_config(cfg.model.name).fully_convolutional and cfg.data.mode == "patches":
        # Such a model looks at the whole (down-scaled) image: patches would train it on crops
        # it never sees at inference.
        cfg.set("data.mode=\"full\"")
        click.echo(f"note: {cfg.model.name} sees whole images: training on whole images of at most "
                   f"{cfg.data.full_size} px (data.mode = \"full\")", err=True)
    try:
        result = train(dataset, run_dir, cfg, resume=resume, init=init, progress=progress,
                       echo=lambda m: click.echo(m, err=True))
    except ValueError as exc:
        raise SiceError(str(exc)) from None
    if result.last_checkpoint is not None:
        best = ""
        if result.val:
            b = max(result.val, key=lambda v: v["psnr"])
            best = f"; best validation PSNR {b['psnr']:.2f} dB / SSIM {b['ssim']:.4f} at step {b['step']} -> {result.best_checkpoint}"
        click.echo(f"done: step {result.step}, epoch {result.epoch}: {result.last_checkpoint}{best}")


def _resolve_config(run_dir, config_file, overrides, resume, model_name, seed, steps, epochs, direction,
                    split_seed, full_image, device):
    from ..errors import SiceError
    from ..training import load_config

    base = config_file
    if resume:
        saved = run_dir / "config.toml"
        if config_file is not None:
            raise click.UsageError("--resume takes the run's own config.toml; adjust it with --set instead of --config")
        if not saved.is_file():
            raise SiceError(f"{saved}: no config to resume with (is {run_dir} a sice train run folder?)")
        base = saved
    flags = list(overrides)
    if model_name:
        flags.append(f"model.name={_q(model_name)}")
    if seed is not None:
        flags.append(f"run.seed={seed}")
    if steps is not None:
        flags.append(f"run.steps={steps}")
    if epochs is not None:
        flags += [f"run.epochs={epochs}", *([] if steps is not None else ["run.steps=0"])]
    if direction:
        flags.append(f"data.direction={_q(direction)}")
    if split_seed is not None:
        flags.append(f"data.split_seed={split_seed}")
    if full_image:
        flags += ['data.mode="full"', f"data.full_size={full_image}"]
    if device:
        flags.append(f"run.device={_q(device)}")
    try:
        cfg = load_config(base, flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if resume and model_name:
        saved_model = load_config(base).model.name
        if saved_model != cfg.model.name:
            raise click.UsageError(f"--model {model_name} differs from the resumed run's {saved_model}")
    return cfg


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@click.command(name="train")
@click.option("--model", "models", multiple=True, help="Model(s) to time (default: every registered one).")
@click.option("--patch", type=click.IntRange(min=4), default=128, show_default=True, help="Patch side.")
@click.option("--batch", type=click.IntRange(min=1), default=5, show_default=True, help="Patches per step.")
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True, help="Timed steps each.")
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda).")
@report_errors
def bench_command(models, patch, batch, steps, device):
    """Training throughput (patches/s) of each model, NCHW vs channels_last (``sice bench train``)."""
    import torch

    from ..training.bench import bench_training

    rows = bench_training(list(models) or None, patch=patch, batch=batch, steps=steps, device=device)
    click.echo(f"training step = forward + L2 + backward + SGD, batch {batch}, {torch.get_num_threads()} "
               f"threads, {device}")
    click.echo(f"{'model':24s} {'patch':>5s} {'NCHW p/s':>10s} {'channels_last p/s':>18s} {'speed-up':>9s}")
    by_model: dict[str, dict[bool, object]] = {}
    for r in rows:
        by_model.setdefault(r.model, {})[r.channels_last] = r
    for name, pair in by_model.items():
        a, b = pair[False], pair[True]
        click.echo(f"{name:24s} {a.patch:5d} {a.patches_per_s:10.2f} {b.patches_per_s:18.2f} "
                   f"{b.patches_per_s / a.patches_per_s:8.2f}x")
