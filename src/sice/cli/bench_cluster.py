"""``sice bench cluster``: throughput of ``sice enhance`` (photos/s) and ``sice build-dataset``
(scenes/s) on one process and on local Dask clusters of 1 and 2 workers, from the same run."""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from ._common import report_errors

_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


# A cluster started and stopped around one trivial task: the fixed cost of --cluster local:N.
_START = "from sice.parallel import run_each; list(run_each(abs, [1], cluster={cluster!r}))"


def _timed(cmd: list[str]) -> float:
    """Wall seconds of a whole ``sice`` process (start, imports, cluster start, work, shutdown)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise click.ClickException(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}: "
                                   f"{proc.stderr.strip()[-300:]}")
    return time.perf_counter() - start


def _modes(workers: tuple[int, ...]) -> list[tuple[str, list[str]]]:
    return [("one process", [])] + [(f"local:{n}", ["--cluster", f"local:{n}"]) for n in workers]


def _subset(folder: Path, count: int, tmp: Path, *, scenes: bool) -> tuple[Path, int]:
    """The first ``count`` scene folders (or photos) of ``folder``, linked into one folder."""
    from ..io import list_images, natural_key

    entries = sorted((p for p in folder.iterdir() if p.is_dir()) if scenes else list_images(folder),
                     key=lambda p: natural_key(p.name))[:count]
    if not entries:
        raise click.ClickException(f"{folder}: no {'scene folders' if scenes else 'photos'} to time")
    subset = tmp / ("scenes" if scenes else "photos")
    subset.mkdir()
    for entry in entries:
        (subset / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return subset, len(entries)


@click.command(name="cluster")
@click.option("--photos", "photos_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of photos for sice enhance [default: ../shared/data/lowlight/DICM].")
@click.option("--photo-count", type=click.IntRange(1, None), default=64, show_default=True)
@click.option("--scenes", "scenes_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of sequences for sice build-dataset [default: ../shared/data/sice512].")
@click.option("--scene-count", type=click.IntRange(1, None), default=8, show_default=True)
@click.option("--generators", default="mertens,debevec-reinhard", show_default=True,
              help="Generators of build-dataset (a short list keeps the benchmark short).")
@click.option("--workers", default="1,2", show_default=True, help="Local cluster sizes to time, comma-separated.")
@click.option("--runs", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Rounds; the modes alternate within each round and the median is reported.")
@report_errors
def bench_command(photos_dir, photo_count, scenes_dir, scene_count, generators, workers, runs):
    """Photos/s and scenes/s of whole sice processes: one process vs. --cluster local:N.

    Each row is one whole command (imports, cluster start and shutdown included), on the same
    inputs, written to a fresh folder. A local cluster shares this machine's cores: it shows
    the overhead of the cluster path and what N processes gain here, not a remote cluster.
    "start" is a cluster started and stopped around one trivial task (a Python process of its
    own); "net" rates leave that time out. The modes alternate, round after round, so that a
    machine shared with other work loads them alike; medians are printed.
    """
    sizes = tuple(int(n) for n in workers.split(",") if n.strip())
    photos_dir = photos_dir or _SHARED / "lowlight" / "DICM"
    scenes_dir = scenes_dir or _SHARED / "sice512"
    exe = [sys.executable, "-m", "sice"]
    tmp = Path(tempfile.mkdtemp(prefix="sice-bench-cluster-"))
    try:
        photos, n_photos = _subset(photos_dir, photo_count, tmp, scenes=False)
        scenes, n_scenes = _subset(scenes_dir, scene_count, tmp, scenes=True)
        times: dict = {}
        for run in range(runs):
            for k, (name, extra) in enumerate(_modes(sizes)):
                start_s = _timed([sys.executable, "-c", _START.format(cluster=extra[1])]) if extra else 0.0
                photo_s = _timed(exe + ["enhance", str(photos), "-o", str(tmp / f"enhanced{run}-{k}"), "-q", *extra])
                scene_s = _timed(exe + ["build-dataset", str(scenes), "-o", str(tmp / f"dataset{run}-{k}"), "-q",
                                        "--generators", generators, *extra])
                for key, value in (("start", start_s), ("photos", photo_s), ("scenes", scene_s)):
                    times.setdefault((name, key), []).append(value)
        rows = []
        for name, _ in _modes(sizes):
            start_s, photo_s, scene_s = (statistics.median(times[(name, key)]) for key in ("start", "photos", "scenes"))
            rows.append((name, start_s, n_photos / photo_s, n_photos / (photo_s - start_s), photo_s,
                         n_scenes / scene_s, n_scenes / (scene_s - start_s), scene_s))
        click.echo(f"{n_photos} photos from {photos_dir}, {n_scenes} scenes from {scenes_dir} "
                   f"(generators {generators}); {_cores()} cores; median of {runs} alternating rounds")
        click.echo(f"{'mode':<12} {'start s':>7} | {'photos/s':>8} {'x one':>6} {'net/s':>6} {'s':>6} | "
                   f"{'scenes/s':>8} {'x one':>6} {'net/s':>6} {'s':>6}")
        one = rows[0]
        for name, start_s, pps, pnet, photo_s, sps, snet, scene_s in rows:
            click.echo(f"{name:<12} {start_s:7.1f} | {pps:8.2f} {pps / one[2]:6.2f} {pnet:6.2f} {photo_s:6.1f} | "
                       f"{sps:8.3f} {sps / one[5]:6.2f} {snet:6.3f} {scene_s:6.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
