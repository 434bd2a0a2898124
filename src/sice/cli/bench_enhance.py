"""``sice bench enhance``: whole-process speed and peak memory of ``sice enhance`` on a real photo,
as ratios against a plain OpenCV decode + re-encode of the same file measured in the same run.

The machine may be shared: the baseline, the single photo and the batch run in turn, ``--runs``
times, and each figure is given as the best run (what the code costs when it gets the cores)
and the median.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from ._common import report_errors

_BASELINE = ("import cv2, sys; a = cv2.imread(sys.argv[1]); "
             "cv2.imwrite(sys.argv[2], a, [cv2.IMWRITE_JPEG_QUALITY, 95])")
#: Targets of the whole process on a 20 MP JPEG: time as a multiple of the baseline's, for one
#: photo and per photo of a batch, and peak RSS.
TARGET_RATIO, TARGET_BATCH_RATIO, TARGET_RSS_MIB = 2.0, 1.6, 512


def _child_env() -> dict:
    """The commands run as an installed package does: Python may cache the bytecode of sice's
    modules (pip compiles them at install; with PYTHONDONTWRITEBYTECODE set, as in some shells,
    every run would compile sice from source, a cost no installed copy pays)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB) of that child alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_child_env())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise click.ClickException(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}: {err.strip()[-300:]}")
    return wall, usage.ru_maxrss / 1024


@click.command(name="enhance")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Photo to time (default ../shared/data/sice-fullres/79.JPG, a 20 MP JPEG).")
@click.option("--model", default=None, help="Model for sice enhance (default: the shipped one).")
@click.option("--runs", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Rounds of baseline, single photo and batch, run in turn (best and median reported).")
@click.option("--batch", type=click.IntRange(0, 20), default=4, show_default=True,
              help="Also time a batch of this many copies in one process (0: skip).")
@report_errors
def bench_command(image, model, runs, batch):
    """Whole process (start, load, decode, enhance, encode) vs. OpenCV decode + encode."""
    if image is None:
        image = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sice-fullres" / "79.JPG"
        if not image.is_file():
            raise click.ClickException(f"{image}: default benchmark photo not found; pass --image")
    exe = [sys.executable, "-m", "sice", "enhance", "--overwrite"]
    extra = ["--model", model] if model else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "batch"
        folder.mkdir()
        for k in range(batch):
            shutil.copy(image, folder / f"{k}{image.suffix}")
        commands = {"base": [sys.executable, "-c", _BASELINE, str(image), str(tmp / "cv2.jpg")],
                    "single": exe + [str(image), "-o", str(tmp / "out"), *extra]}
        if batch:
            commands["batch"] = exe + [str(folder), "-o", str(tmp / "batch-out"), *extra]
        walls: dict[str, list[float]] = {name: [] for name in commands}
        rss = dict.fromkeys(commands, 0.0)
        for cmd in commands.values():  # warm-up, not counted: the file cache and bytecode, for all
            _run(cmd)
        for _ in range(runs):
            for name, cmd in commands.items():
                w, r = _run(cmd)
                walls[name].append(w)
                rss[name] = max(rss[name], r)
        from PIL import Image

        with Image.open(image) as im:
            mp = im.size[0] * im.size[1] / 1e6
    best = {name: min(w) for name, w in walls.items()}
    median = {name: statistics.median(w) for name, w in walls.items()}
    click.echo(f"photo: {image} ({mp:.1f} MP), {runs} round(s) after a warm-up; seconds as best / median")
    click.echo(f"opencv decode+encode (whole process): {best['base']:.2f} / {median['base']:.2f} s, "
               f"peak RSS {rss['base']:.0f} MiB")
    click.echo(f"sice enhance (whole process):         {best['single']:.2f} / {median['single']:.2f} s, "
               f"peak RSS {rss['single']:.0f} MiB")
    # each round runs the baseline and sice back to back: the median of the rounds' own ratios
    # is the figure that the load of the machine moves least
    paired = statistics.median(o / b for o, b in zip(walls["single"], walls["base"]))
    click.echo(f"ratio: {paired:.2f}x (median of the rounds' ratios; {best['single'] / best['base']:.2f}x best / best, "
               f"{median['single'] / median['base']:.2f}x median / median; target <= {TARGET_RATIO:g}x; "
               f"peak RSS target <= {TARGET_RSS_MIB} MiB)")
    if batch:
        per_photo = statistics.median(w / batch / b for w, b in zip(walls["batch"], walls["base"]))
        click.echo(f"batch of {batch}: {best['batch']:.2f} / {median['batch']:.2f} s = {per_photo:.2f}x the baseline "
                   f"per photo (median of the rounds' ratios; {best['batch'] / batch / best['base']:.2f}x best / best; "
                   f"target <= {TARGET_BATCH_RATIO:g}x); peak RSS {rss['batch']:.0f} MiB")
