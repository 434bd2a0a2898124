"""``sice render HDR... -o OUT``: a reproducible over-/under-exposed test set from radiance maps."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import report_errors


def _evs(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


@click.command(name="render")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output folder: under/ and over/ are written inside.")
@click.option("--under", default="-4,-2.5", show_default=True, metavar="EVS", help="Under-exposures (EV < 0).")
@click.option("--over", default="1.5,2.5", show_default=True, metavar="EVS", help="Over-exposures (EV > 0).")
@click.option("--views", type=click.IntRange(1, 12), default=3, show_default=True,
              help="Views per panorama (evenly spaced headings on its horizon band).")
@click.option("--noise/--no-noise", default=True, show_default=True, help="Sensor noise in linear light.")
@click.option("--brackets", default=None, metavar="EVS",
              help="Instead: multi-exposure sequences at these EVs (e.g. -3,-1.5,0,1.5,3), one folder "
                   "per view, in the layout 'sice build-dataset' reads.")
@report_errors
def command(sources, output, under, over, views, noise, brackets):
    """Render badly exposed JPEG test photos from HDR panoramas (.exr; folders are searched).

    Every view of every panorama at every EV: exposed so that its median is middle grey at 0 EV,
    sensor noise, sRGB, 8 bit, JPEG quality 90 (docs/evaluation.md). The same inputs give the
    same files; score them without labels with `sice eval OUT -p photos`.
    """
    from ..dataset.rendering import render_brackets
    from ..dataset.rendering import render_set

    files = []
    for s in sources:
        files += sorted(s.glob("*.exr")) if s.is_dir() else [s]
    if not files:
        raise click.UsageError("no .exr file among the SOURCES")
    try:
        if brackets is not None:
            scenes = render_brackets(files, output, evs=_evs(brackets), views=views, noise=noise)
            click.echo(f"rendered {len(scenes)} sequences from {len(files)} panoramas into {output}", err=True)
            return
        written = render_set(files, output, under=_evs(under), over=_evs(over), views=views, noise=noise)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"rendered {len(written)} photos from {len(files)} panoramas into {output}", err=True)
