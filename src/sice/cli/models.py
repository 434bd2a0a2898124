"""``sice models``: the registered networks, their size, and whether weights ship with sice."""
from __future__ import annotations

import click

from ._common import report_errors


@click.command(name="models")
@report_errors
def command():
    """List every registered model: name, parameters, shipped weights, description."""
    from ..models import count_parameters, create_model, list_models, model_config
    from ..models.checkpoint import shipped_weights_path

    rows = [("NAME", "PARAMETERS", "WEIGHTS", "DESCRIPTION")]
    for name in list_models():
        config = model_config(name)
        weights = "shipped" if shipped_weights_path(name) is not None else "-"
        rows.append((name, f"{count_parameters(create_model(name)):,}", weights, config.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
