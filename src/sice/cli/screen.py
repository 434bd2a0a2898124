"""``sice screen``: serve the screening page, or report its results."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..webserver import is_loopback
from ._common import report_errors


@click.command(name="screen")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. Anything but loopback lets other machines vote and see the images.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--results", is_flag=True,
              help="Do not serve: print per-scene winners, vote counts and agreement, and write them to a file.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="With --results: the file format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --results: the file to write (default DATASET/screening-results.<format>; '-' = stdout).")
@report_errors
def command(dataset: Path, host: str, port: int, results: bool, fmt: str, output: Path | None) -> None:
    """Serve the page where people choose each scene's reference among blind candidates.

    Raters type their name, see each scene's candidates (shuffled, unnamed) with the source
    frames, and pick the best or "none acceptable". Votes go to DATASET/screening.sqlite as they
    are cast. With --results, print the outcome instead of serving.
    """
    if results:
        _results(dataset, fmt, output)
    else:
        _serve(dataset, host, port)


def _results(dataset: Path, fmt: str, output: Path | None) -> None:
    from ..screening.results import screening_results, summary, to_csv, to_json, write_results

    res = screening_results(dataset)
    if output is not None and str(output) == "-":
        click.echo(to_csv(res) if fmt == "csv" else to_json(res), nl=False)
        click.echo(summary(res), err=True, nl=False)
        return
    output = output or dataset / f"screening-results.{fmt}"
    write_results(res, output, fmt)
    click.echo(summary(res), nl=False)
    click.echo(f"wrote {output}", err=True)


def _serve(dataset: Path, host: str, port: int) -> None:
    from .. import webserver
    from ..screening.app import create_app
    from ..screening.store import DB_NAME

    loopback = is_loopback(host)
    if not loopback:
        click.echo(f"sice: warning: listening on {host}, not on loopback: anyone who can reach this machine "
                   "can see the images and vote under any name", err=True)
    app = create_app(dataset, allowed_hosts=webserver.LOOPBACK_HOSTS if loopback else None)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"screening {len(app.state.scenes)} scenes of {dataset} at http://{shown}:{port}/ "
               f"(votes in {dataset / DB_NAME}); Ctrl+C stops", err=True)
    sys.stderr.flush()
    webserver.run_server(app, host=host, port=port)
