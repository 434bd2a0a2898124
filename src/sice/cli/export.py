"""``sice export MODEL -o model.onnx``."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import report_errors


@click.command(name="export")
@click.argument("model", metavar="NAME|PATH")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .onnx file.")
@click.option("--no-check", is_flag=True, help="Skip the ONNX checker.")
@report_errors
def command(model, output, no_check):
    """Export a model (registry name with shipped weights, or a checkpoint) to ONNX with dynamic
    height and width; writes OUTPUT and OUTPUT.json (its config)."""
    from ..models.onnx_export import export_onnx
    from ..models import load_model

    if output.suffix.lower() != ".onnx":
        raise click.BadParameter(f"{output}: the output must end in .onnx", param_hint="-o")
    if not output.parent.is_dir():
        raise click.ClickException(f"{output}: output folder {output.parent} does not exist")
    path = export_onnx(load_model(model), output, check=not no_check)
    click.echo(str(path))
