"""``sice build-dataset`` and ``sice bench build-dataset``: thin adapters over
:mod:`sice.dataset.build`."""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click

from ._common import BatchReport, cluster_option, report_errors, workers_or_cluster


def _generator_names(value: str) -> list[str]:
    """``default`` (the in-process set), ``all`` (every generator) and names, comma-separated,
    expanded in order without repeats: ``default,enfuse`` -> the default set, then enfuse."""
    from .. import fusion

    groups = {"default": list(fusion.DEFAULT_GENERATORS), "all": list(fusion.GENERATORS)}
    names: list[str] = []
    for token in (t.strip() for t in value.split(",")):
        for name in groups.get(token.lower(), [token] if token else []):
            if name not in names:
                names.append(name)
    if not names:
        raise click.BadParameter("give generator names separated by commas, 'default' or 'all'")
    return names


def skipped_notice(skipped: dict[str, str]) -> str:
    """One line naming the generators skipped for missing tools and the Debian packages to install."""
    from .. import fusion

    packages = sorted({p for name in skipped for p in fusion.GENERATORS[name].packages})
    install = f" (apt-get install {' '.join(packages)})" if packages else ""
    return (f"sice: note: {len(skipped)} generator(s) skipped, their tools are not installed{install}: "
            f"{', '.join(skipped)}")


def _options(generators: str, align: bool, ecc: bool, ext: str | None, finish: str = "photo"):
    from ..dataset.build import BuildOptions
    from ..dataset.build import resolve_generators

    try:
        usable, skipped = resolve_generators(_generator_names(generators))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--generators") from None
    if skipped:
        click.echo(skipped_notice(skipped), err=True)
    if not usable:
        raise click.UsageError("no usable generator (see the note above)")
    return BuildOptions(generators=usable, align=align, ecc=ecc, ext=ext, finish=finish)


def _run(sequences, out, options, select, workers, limit, *, cluster=None, quiet=False):
    from tqdm import tqdm

    from ..dataset.build import build_dataset

    bar = {}

    def on_start(total):
        bar["tqdm"] = tqdm(total=total, unit="scene", desc="build-dataset", disable=quiet, file=sys.stderr)

    def on_scene(name, error):
        bar["tqdm"].set_postfix_str(name if error is None else f"{name} FAILED", refresh=False)
        bar["tqdm"].update(1)

    try:
        return build_dataset(sequences, out, options, select=select, workers=workers, cluster=cluster,
                             limit=limit, on_scene=on_scene, on_start=on_start)
    finally:
        if "tqdm" in bar:
            bar["tqdm"].close()


_GENERATORS_HELP = ("Comma-separated generator names (docs/generators.md), 'default' (every in-process "
                    "generator: no Debian tool needed) or 'all' (adds enfuse, pfstools and luminance-hdr where "
                    "installed; missing ones are skipped with one note).")


@click.command(name="build-dataset")
@click.argument("sequences", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write (SICE layout); an existing one is resumed.")
@click.option("--generators", default="default", show_default=True, help=_GENERATORS_HELP)
@click.option("--select", type=click.Choice(["mef-ssim", "votes"]), default="mef-ssim", show_default=True,
              help="Label choice: best MEF-SSIM, or screening votes from DATASET/screening.sqlite (ties by MEF-SSIM).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@cluster_option
@click.option("--align/--no-align", default=True, show_default=True, help="Align frames (MTB) and flag ghosts.")
@click.option("--ecc/--no-ecc", default=True, show_default=True, help="Sub-pixel ECC refinement of the alignment.")
@click.option("--ext", type=click.Choice(["png", "jpg"]), default=None,
              help="Format of the copied frames [default: keep JPEG/PNG bytes, other formats become PNG].")
@click.option("--finish", type=click.Choice(["photo", "none"]), default="photo", show_default=True,
              help="photo: labels get a black and a white point (docs/dataset.md); none: the fused "
                   "candidate as it is. Changing it on a built dataset rewrites only the labels.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Build only the first N scenes.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@report_errors
def command(sequences, out, generators, select, workers, cluster, align, ecc, ext, finish, limit, quiet):
    """Build a SICE-layout dataset from SEQUENCES (one folder of multi-exposure frames per scene).

    Writes OUTPUT/<scene>/<k>.<ext> (frames dark to bright), OUTPUT/Label/<scene>.png,
    OUTPUT/candidates/<scene>/<generator>.png and OUTPUT/manifest.json. Re-running resumes:
    finished scenes are skipped, or only given the candidates of generators they lack (a label
    chosen by MEF-SSIM is then chosen again). Failed scenes are listed at the end (exit status 1).
    """
    workers_or_cluster(workers, cluster)
    options = _options(generators, align, ecc, ext, finish)
    result = _run(sequences, out, options, select, workers, limit, cluster=cluster, quiet=quiet)
    report = BatchReport()
    for _ in result.built + result.extended + result.resumed:
        report.success()
    for item, reason in result.failed:
        report.failure(item, reason)
    for scene, generator, reason in result.generator_failures:
        click.echo(f"sice: warning: {scene}: generator {generator} failed: {reason}", err=True)
    for scene, flags in result.flagged.items():
        click.echo(f"sice: flagged: {scene}: {', '.join(flags)} (see manifest.json)", err=True)
    click.echo(f"{out}: {len(result.built)} scenes built, {len(result.extended)} given new candidates, "
               f"{len(result.resumed)} already done, {len(result.refinished)} labels re-finished ({finish}), "
               f"{len(result.flagged)} flagged, in {result.seconds:.1f} s", err=True)
    report.finish("scenes")


@click.command(name="build-dataset")
@click.argument("sequences", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the built dataset here [default: a temporary folder, removed afterwards].")
@click.option("--generators", default="default", show_default=True, help=_GENERATORS_HELP)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True,
              help="Scenes to build; the total for all scenes is extrapolated.")
@click.option("--align/--no-align", default=True, show_default=True)
@report_errors
def bench_command(sequences, out, generators, workers, limit, align):
    """Time building a dataset: per-generator seconds per megapixel and the total.

    SEQUENCES defaults to ../shared/data/sice512 (the 209 real SICE sequences). Prints, per
    generator, the mean time per scene and per output megapixel, and the projected wall time for
    every scene of SEQUENCES.
    """
    from ..dataset.build import find_scenes

    if sequences is None:
        import os

        shared = os.environ.get("SICE_SHARED_DATA") or Path(__file__).resolve().parents[3].parent / "shared" / "data"
        sequences = Path(shared) / "sice512"
        if not sequences.is_dir():
            raise click.UsageError(f"give SEQUENCES ({sequences} does not exist)")
    options = _options(generators, align, True, None)
    total_scenes = len(find_scenes(sequences)[0])
    tmp = None
    if out is None:
        tmp = Path(tempfile.mkdtemp(prefix="sice-bench-"))
        out = tmp / "dataset"
    try:
        result = _run(sequences, out, options, "mef-ssim", workers, limit)
        from ..dataset.manifest import read_scene_entries

        entries = [e for n, e in read_scene_entries(out).items() if n in result.built]
        click.echo(format_bench(entries, result.seconds, total_scenes, workers))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def format_bench(entries: list[dict], wall: float, total_scenes: int, workers: int) -> str:
    """The benchmark table from built scenes' manifest entries."""
    if not entries:
        return "no scene was built (nothing to time)"
    megapixels = sum(e["megapixels"] for e in entries)
    frames = sum(len(e["frames"]) for e in entries)
    per_gen: dict[str, list[float]] = {}
    for e in entries:
        for name, g in e["generators"].items():
            row = per_gen.setdefault(name, [0.0, 0.0, 0, 0])
            row[0] += g.get("seconds", 0.0)
            row[1] += g.get("score_seconds", 0.0)
            row[2] += "error" not in g
            row[3] += 1
    lines = [f"{len(entries)} scenes, {frames} frames, {megapixels:.2f} output megapixels, "
             f"{workers} worker(s), wall {wall:.1f} s",
             f"{'generator':<24} {'s/scene':>8} {'s/MP':>8} {'score s/MP':>10} {'ok':>6}"]
    for name, (gen_s, score_s, ok, n) in sorted(per_gen.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"{name:<24} {gen_s / n:8.3f} {gen_s / megapixels:8.2f} {score_s / megapixels:10.2f} {ok:>3}/{n:<2}")
    gen_total = sum(r[0] + r[1] for r in per_gen.values())
    lines.append(f"{'all generators + scoring':<24} {gen_total / len(entries):8.3f} {gen_total / megapixels:8.2f}")
    projected = wall / len(entries) * total_scenes
    lines.append(f"projected wall time for all {total_scenes} scenes: {projected / 60:.1f} min "
                 f"({wall / len(entries):.2f} s/scene wall)")
    return "\n".join(lines)
