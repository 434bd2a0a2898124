"""``sice bench enhance``: whole-process speed and peak memory of ``sice enhance`` on a real photo,
as ratios against a plain OpenCV decode + re-encode of the same file measured in the same run."""
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


def _run(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB) of that child alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
@click.option("--runs", type=click.IntRange(1, 20), default=3, show_default=True, help="Repetitions (median reported).")
@click.option("--batch", type=click.IntRange(0, 20), default=4, show_default=True,
              help="Also time a batch of this many copies in one process (0: skip).")
@report_errors
def bench_command(image, model, runs, batch):
    """Whole process (start, load, decode, enhance, encode) vs. OpenCV decode + encode."""
    if image is None:
        image = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sice-fullres" / "79.JPG"
        if not image.is_file():
            raise click.ClickException(f"{image}: default benchmark photo not found; pass --image")
    exe = [sys.executable, "-m", "sice", "enhance"]
    extra = ["--model", model] if model else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base, ours, rss_base, rss_ours = [], [], 0.0, 0.0
        for i in range(runs):
            w, r = _run([sys.executable, "-c", _BASELINE, str(image), str(tmp / "cv2.jpg")])
            base.append(w)
            rss_base = max(rss_base, r)
            w, r = _run(exe + [str(image), "-o", str(tmp / f"out{i}"), *extra])
            ours.append(w)
            rss_ours = max(rss_ours, r)
        b, o = statistics.median(base), statistics.median(ours)
        from PIL import Image

        with Image.open(image) as im:
            mp = im.size[0] * im.size[1] / 1e6
        click.echo(f"photo: {image} ({mp:.1f} MP)")
        click.echo(f"opencv decode+encode (whole process): {b:.2f} s, peak RSS {rss_base:.0f} MiB")
        click.echo(f"sice enhance (whole process):         {o:.2f} s, peak RSS {rss_ours:.0f} MiB")
        click.echo(f"ratio: {o / b:.2f}x  (target <= 4x; peak RSS target <= 1024 MiB)")
        if batch:
            folder = tmp / "batch"
            folder.mkdir()
            for k in range(batch):
                shutil.copy(image, folder / f"{k}{image.suffix}")
            w, r = _run(exe + [str(folder), "-o", str(tmp / "batch-out"), *extra])
            click.echo(f"batch of {batch}: {w:.2f} s = {w / batch:.2f} s per photo = {w / batch / b:.2f}x the "
                       f"baseline per photo (target <= 2.5x); peak RSS {r:.0f} MiB")
