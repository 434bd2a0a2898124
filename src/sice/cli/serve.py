"""``sice serve``: the enhancement HTTP API for app developers (see docs/serving.md)."""
from __future__ import annotations

import sys

import click

from ..webserver import is_loopback
from ._common import report_errors

_EXAMPLES = """
\b
Examples:
  sice serve                                   http://127.0.0.1:8766/docs
  curl --data-binary @dark.jpg -H 'Content-Type: image/jpeg' \\
       'http://127.0.0.1:8766/enhance?strength=0.8' -o bright.jpg
"""


@click.command(name="serve", epilog=_EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. Anything but loopback lets other machines use the API.")
@click.option("--port", default=8766, show_default=True, type=click.IntRange(1, 65535))
@click.option("-m", "--model", default=None, metavar="NAME|PATH",
              help="Registry name (see 'sice models'), a checkpoint .pt, or an .onnx file. Default: the shipped model.")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda", help="Where torch runs the model.")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto", show_default=True,
              help="auto: onnxruntime on the CPU when the model has an ONNX form, else torch.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Photos enhanced at once (threads sharing the one loaded model).")
@click.option("--queue", "queue", type=click.IntRange(0, 1024), default=16, show_default=True,
              help="Requests accepted beyond the running ones, waiting for a worker; later ones wait before "
                   "their upload is read, and get 503 only after --queue-timeout seconds.")
@click.option("--queue-timeout", type=click.FloatRange(1, None), default=120.0, show_default=True,
              help="Seconds a request may wait for a place in the queue.")
@click.option("--upload-timeout", type=click.FloatRange(1, None), default=120.0, show_default=True,
              help="Seconds an accepted upload may take to arrive (408 beyond).")
@click.option("--max-body-mb", type=click.IntRange(1, None), default=256, show_default=True,
              help="Largest upload in MiB (413 beyond).")
@click.option("--max-pixels", type=click.IntRange(1, None), default=None,
              help="Refuse larger images with 413 (default 200 MP or $SICE_MAX_PIXELS, as 'sice enhance').")
@report_errors
def command(host, port, model, device, backend, workers, queue, queue_timeout, upload_timeout, max_body_mb,
            max_pixels):
    """Serve an HTTP API that enhances photos: POST a photo to /enhance, get it back enhanced.

    The reply has the input's format, size, bit depth, alpha and metadata, as 'sice enhance'
    writes it; ?strength=0..1 scales the correction. The model is loaded once; requests wait
    in a bounded queue for a worker. The OpenAPI page is at /docs, health at /health.
    """
    from .. import webserver
    from ..serving.app import create_app

    loopback = is_loopback(host)
    if not loopback:
        click.echo(f"sice: warning: listening on {host}, not on loopback: anyone who can reach this machine "
                   "can use the API (there is no authentication)", err=True)
    app = create_app(model, device=device, backend=backend, workers=workers, queue=queue,
                     queue_timeout=queue_timeout, upload_timeout=upload_timeout,
                     max_body_size=max_body_mb * 1024 * 1024, max_pixels=max_pixels,
                     allowed_hosts=webserver.LOOPBACK_HOSTS if loopback else None)
    shown = f"[{host}]" if ":" in host else host
    enhancer = app.state.enhancer
    click.echo(f"serving model {enhancer.name} ({enhancer.backend}) at http://{shown}:{port}/enhance, "
               f"API docs at http://{shown}:{port}/docs; Ctrl+C stops", err=True)
    sys.stderr.flush()
    webserver.run_server(app, host=host, port=port)
