"""``sice models``: the registered networks, their size, and whether weights ship with sice."""
from __future__ import annotations

import click

from ._common import report_errors


@click.command(name="models")
@report_errors
def command():
    """List every registered model: name, alias, parameters, shipped weights, description.

    Every name listed as "shipped" works with --model NAME (and the alias "default" names the
    model that 'sice enhance' uses when no --model is given); the others need a checkpoint
    (--model PATH.pt, see 'sice train' and 'sice import-caffe') or NAME:untrained.
    """
    from ..models import count_parameters, create_model, list_models, load_model, model_config
    from ..models.checkpoint import shipped_weights_path
    from ..weights import DEFAULT_ALIAS, DEFAULT_MODEL

    rows = [("NAME", "ALIAS", "PARAMETERS", "WEIGHTS", "DESCRIPTION")]
    for name in list_models():
        shipped = shipped_weights_path(name) is not None
        # a shipped model's size is that of its weights (an ensemble's member count is in them)
        model = load_model(name) if shipped else create_model(name)
        rows.append((name, DEFAULT_ALIAS if name == DEFAULT_MODEL else "-", f"{count_parameters(model):,}",
                     "shipped" if shipped else "-", model_config(name).description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
