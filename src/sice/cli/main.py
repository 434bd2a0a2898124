"""The ``sice`` command: a click group whose subcommands load lazily.

Each subcommand lives in its own module (``sice/cli/<name>.py``) exposing a click command called
``command``. They are imported only when invoked, so ``sice --version`` and ``sice --help`` answer
without importing torch.
"""
from __future__ import annotations

import sys

import click

from ..version import __version__
from ._common import LazyGroup, fast_exit_allowed, one_line

# name -> (module, attribute, one-line help). The single table that feeds the CLI.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "enhance": ("sice.cli.enhance", "command", "Enhance photos (files, folders, globs)."),
    "models": ("sice.cli.models", "command", "List the registered models and their parameter counts."),
    "import-caffe": ("sice.cli.import_caffe", "command", "Import an original SICE .caffemodel as a sice checkpoint."),
    "export": ("sice.cli.export", "command", "Export a model to ONNX."),
    "build-dataset": ("sice.cli.build_dataset", "command", "Build a SICE-layout dataset from multi-exposure sequences."),
    "screen": ("sice.cli.screen", "command", "Serve the screening page where people choose references."),
    "serve": ("sice.cli.serve", "command", "Serve an HTTP API that enhances photos (for apps)."),
    "train": ("sice.cli.train", "command", "Train a network on SICE-layout data."),
    "eval": ("sice.cli.eval", "command", "Evaluate methods with a documented protocol."),
    "render": ("sice.cli.render", "command", "Render over- and under-exposed test photos from HDR panoramas."),
    "bench": ("sice.cli.bench", "command", "Benchmarks that print speed and memory figures."),
}


@click.group(cls=LazyGroup, table=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sice")
def cli():
    """sice: turn badly exposed photos into well-exposed, high-contrast ones."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"sice: warning: {one_line(message)}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run the ``sice`` command line (ends with :class:`SystemExit`, as click does)."""
    import warnings

    warnings.showwarning = _one_line_warning  # users get one line, not a source excerpt
    cli.main(args=argv, prog_name="sice", standalone_mode=True)


def run() -> None:
    """The ``sice`` program (console script, ``python -m sice``): :func:`main`, then the exit."""
    try:
        main()
    except SystemExit as exc:
        if fast_exit_allowed():
            _exit_now(exc.code)
        raise


def _exit_now(code) -> None:
    """End the process without the interpreter's teardown (finalizing OpenCV, onnxruntime and
    every module costs ~0.08 s, a quarter of decoding and encoding a 20 MP photo). Only after a
    command said that nothing is left to do: every output is already renamed into place and
    fsynced, and no other thread runs. Standard streams are flushed first."""
    import os
    import threading

    if threading.active_count() != 1:
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what the normal exit would also meet
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
