"""``sice import-caffe FILE.caffemodel -o MODEL.pt``: port an original SICE Caffe model."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import report_errors

ARCH_CHOICES = ("sice2018-residual", "sice2018", "sice2018-perpixel")  # = sice.models.caffe.ARCHITECTURES
S2D_CHOICES = ("cij", "cji", "ijc", "jic")  # = sice.models.caffe.S2D_ORDERS (not imported: keeps --help fast)


@click.command(name="import-caffe")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Checkpoint to write (.pt); usable by 'sice enhance --model' and for fine-tuning.")
@click.option("--arch", type=click.Choice(ARCH_CHOICES),
              help="Force the architecture instead of recognising it from layers and blob shapes.")
@click.option("--show", is_flag=True, help="Print the embedded layer list (net definition and blob shapes).")
@click.option("--s2d-order", type=click.Choice(S2D_CHOICES), default=None,
              help="Model 3 only: space-to-depth channel order of the release (default: the one that "
                   "reproduces the authors' demo, see docs/caffe-port.md).")
@click.option("--no-transpose", is_flag=True, hidden=True,
              help="Do not swap kernel axes (wrong on purpose; for comparisons only).")
@report_errors
def command(file, output, arch, show, s2d_order, no_transpose):
    """Import an original SICE .caffemodel (Cai et al. 2018) as a sice checkpoint.

    The architecture (Model 1 'residual', Model 2 'Twostage' = sice2018, Model 3 'Perpixel') is
    recognised from the layers; kernels are transposed as MATLAB fed Caffe transposed images.
    """
    from ..models import caffe
    from ..models import count_parameters, save_checkpoint

    if output is None and not show:
        raise click.UsageError("give -o MODEL.pt (or --show to only print the layers)")
    if output is not None:
        if output.resolve() == file.resolve():
            raise click.ClickException(f"{output}: refusing to overwrite the input file")
        if not output.parent.is_dir():
            raise click.ClickException(f"{output}: output folder {output.parent} does not exist")
    net = caffe.read_caffemodel(file)
    if show:
        click.echo(caffe.describe(net))
    if output is None:
        return
    model = caffe.import_caffe(file, arch=arch, transpose=not no_transpose,
                               s2d_order=s2d_order or caffe.DEFAULT_S2D_ORDER)
    save_checkpoint(output, model, meta=model.sice_meta)
    click.echo(f"{output}: {model.sice_config.name} ({count_parameters(model):,} parameters) "
               f"from {file}")
