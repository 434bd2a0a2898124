"""The ``sice`` command: a click group whose subcommands load lazily.

Each subcommand lives in its own module (``sice/cli/<name>.py``) exposing a click command called
``command``. They are imported only when invoked, so ``sice --version`` and ``sice --help`` answer
without importing torch.
"""
from __future__ import annotations

import importlib
import sys

import click

from .. import __version__

# name -> (module, one-line help). The single table that feeds the CLI.
COMMANDS: dict[str, tuple[str, str]] = {
    "enhance": ("sice.cli.enhance", "Enhance photos (files, folders, globs)."),
    "models": ("sice.cli.models", "List the registered models and their parameter counts."),
    "import-caffe": ("sice.cli.import_caffe", "Import an original SICE .caffemodel as a sice checkpoint."),
    "export": ("sice.cli.export", "Export a model to ONNX."),
    "build-dataset": ("sice.cli.build_dataset", "Build a SICE-layout dataset from multi-exposure sequences."),
    "screen": ("sice.cli.screen", "Serve the screening page where people choose references."),
    "train": ("sice.cli.train", "Train a network on SICE-layout data."),
    "eval": ("sice.cli.eval", "Evaluate methods with a documented protocol."),
    "bench": ("sice.cli.bench", "Benchmarks that print speed and memory figures."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return _unavailable(name)
            raise
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str) -> click.Command:
    @click.command(name=name, help="(not available in this build)")
    def cmd():
        raise click.ClickException(f"'{name}' is not available in this build of sice")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sice")
def cli():
    """sice: turn badly exposed photos into well-exposed, high-contrast ones."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())
    print(f"sice: warning: {text}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> None:
    import warnings

    warnings.showwarning = _one_line_warning  # users get one line, not a source excerpt
    cli.main(args=argv, prog_name="sice", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
