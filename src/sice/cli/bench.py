"""``sice bench``: benchmarks that print speed and memory figures, one subcommand per area.

Subcommands load lazily from :data:`BENCHES`, so that a benchmark's heavy imports happen only
when it runs. To add one: write a click command in your own CLI module and add a row here.
"""
from __future__ import annotations

import click

from ._common import LazyGroup

# name -> (module, attribute, one-line help)
BENCHES: dict[str, tuple[str, str, str]] = {
    "build-dataset": ("sice.cli.build_dataset", "bench_command",
                      "Time building a dataset: per-generator s/MP and projected total."),
    "enhance": ("sice.cli.bench_enhance", "bench_command",
                "Whole-process time and peak RSS of sice enhance vs. OpenCV decode+encode."),
    "train": ("sice.cli.train", "bench_command",
              "Training throughput (patches/s) per model, with and without channels_last."),
    "eval": ("sice.cli.eval", "bench_command",
             "Time the classic baselines on sice512 with the levels protocol (target 10 min)."),
    "cluster": ("sice.cli.bench_cluster", "bench_command",
                "Photos/s and scenes/s: one process vs. local Dask clusters of 1 and 2 workers."),
}


@click.group(name="bench", cls=LazyGroup, table=BENCHES, section="Benchmarks")
def command():
    """Benchmarks that print speed and memory figures."""
