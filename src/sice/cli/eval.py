"""``sice eval DATASET --methods ... --protocol NAME -o REPORT``: documented, cached evaluations."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import BatchReport, cluster_option, report_errors, workers_or_cluster

# Kept here (not imported from sice.evaluation) so that `sice eval --help` stays instant.
_PROTOCOLS = ["auto", "sice-58", "zero-dce-part2", "levels", "all", "photos"]
_BASELINES = ["identity", "he", "clahe", "gamma", "lime", "msrcr"]
_METRICS = ["psnr", "ssim", "fsim", "fsimc", "mae", "loe", "mef-ssim", "white-point", "black-point",
            "clipped-luma", "black-luma", "colourfulness", "shadow-noise"]
_DEFAULT_METRICS = "psnr,ssim,fsim,fsimc,mae,loe,white-point,black-point,clipped-luma,black-luma,colourfulness,shadow-noise"


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command(name="eval")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("-m", "--methods", default="identity,he,clahe,gamma,lime", show_default=True,
              metavar="LIST",
              help=f"Comma-separated: baselines ({', '.join(_BASELINES)}), registered model names "
                   "(see 'sice models'; 'default' is the shipped model) or checkpoint paths.")
@click.option("-p", "--protocol", type=click.Choice(_PROTOCOLS), default="auto", show_default=True,
              help="Which frames, at what size (docs/evaluation.md). auto: 'levels' for a SICE-layout "
                   "dataset, 'photos' (no reference) for a plain folder of photos.")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), required=True,
              help="Report folder (created; its cache/ makes re-runs cheap).")
@click.option("--metrics", default=_DEFAULT_METRICS, show_default=True, metavar="LIST",
              help=f"Comma-separated, from: {', '.join(_METRICS)}.")
@click.option("-j", "--workers", type=click.IntRange(1, None), default=1, show_default=True,
              help="Worker processes.")
@cluster_option
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Only the first N scenes.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None,
              help="Only one split of the scenes (sice.dataset.layout.split_scenes, ratios 7:1:2).")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of --split.")
@click.option("--grids/--no-grids", default=True, show_default=True, help="Write a comparison grid per scene.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@report_errors
def command(dataset, methods, protocol, output, metrics, workers, cluster, limit, split, split_seed, grids,
            progress):
    """Evaluate enhancement methods on a SICE-layout DATASET with a documented protocol, or on
    a plain folder of photos without labels (no-reference tone figures only).

    Writes REPORT/results.md, results.csv, results.json, per_image.csv, grids/ and
    psnr_vs_level.png. Problems with single images (missing labels, size mismatches, a
    method failing) are listed in the report and make the exit status 1; the run goes on.
    """
    from ..evaluation import evaluate, write_report
    from ..evaluation.metrics import METRICS
    from ..evaluation.protocols import is_sice_layout

    workers_or_cluster(workers, cluster)
    if protocol == "auto":
        protocol = "levels" if is_sice_layout(dataset) or not dataset.is_dir() else "photos"

    method_list = _csv(methods)
    metric_list = _csv(metrics)
    if not method_list:
        raise click.UsageError("--methods must name at least one method")
    unknown = [m for m in metric_list if m not in METRICS]
    if unknown:
        raise click.UsageError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    try:
        result = evaluate(dataset, method_list, protocol=protocol, out_dir=output, metrics=metric_list,
                          workers=workers, cluster=cluster, limit=limit, split=split, split_seed=split_seed,
                          progress=progress)
    except ValueError as exc:  # a choice that does not fit this dataset (metrics, split)
        raise click.UsageError(str(exc)) from None
    paths = write_report(result, grids=grids)
    report = BatchReport()
    for r in result.records:
        if r.status == "ok":
            report.success()
    for what, why in result.problems:
        report.failure(what, why)
    click.echo(f"{len(result.items)} images x {len(result.methods)} methods, protocol {protocol}, "
               f"{result.seconds:.1f} s ({result.computed} computed); report: {paths['markdown']}", err=True)
    report.finish("results")


@click.command(name="eval")
@click.argument("dataset", required=False, type=click.Path(path_type=Path))
@click.option("-j", "--workers", type=click.IntRange(1, None), default=2, show_default=True, help="Worker processes.")
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Only the first N scenes (quick look).")
@click.option("-m", "--methods", default=",".join(_BASELINES), show_default=True, metavar="LIST")
@report_errors
def bench_command(dataset, workers, limit, methods):
    """Time the classic baselines with the `levels` protocol and the default metrics.

    DATASET defaults to data-built/sice512 (labelled) or else ../shared/data/sice512. Target of
    issue #8: the 209 sequences at 512x512 in at most 10 minutes.
    """
    from ..evaluation.bench import bench_eval

    out = bench_eval(dataset, methods=_csv(methods), workers=workers, limit=limit)
    click.echo(out["line"])
