"""What every command shares: turning core errors into one-line messages and exit codes."""
from __future__ import annotations

import functools
import importlib
import sys

import click

from ..errors import SiceError


def report_errors(fn):
    """Decorator for click command bodies: a :class:`SiceError` (or OSError) becomes
    ``sice: error: <message>`` on stderr and exit status 1 — one line, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SiceError as exc:
            _fail(str(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            _fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            click.echo("sice: interrupted", err=True)
            sys.exit(130)

    return wrapper


def _fail(message: str) -> None:
    message = " ".join(str(message).split())  # always one line
    click.echo(f"sice: error: {message}", err=True)
    sys.exit(1)


class BatchReport:
    """Collects per-item failures of a batch so the run goes on and reports them at the end."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed: list[tuple[str, str]] = []

    def success(self) -> None:
        self.ok += 1

    def failure(self, item: str, reason: str) -> None:
        self.failed.append((item, " ".join(str(reason).split())))

    def summary(self, what: str = "files") -> str:
        return f"{self.ok} {what} done, {len(self.failed)} failed"

    def finish(self, what: str = "files") -> None:
        """Print failures and the summary to stderr; exit 1 if anything failed."""
        for item, reason in self.failed:
            click.echo(f"sice: failed: {item}: {reason}", err=True)
        click.echo(self.summary(what), err=True)
        if self.failed:
            sys.exit(1)


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked.

    ``table`` maps a subcommand name to ``(module, attribute, one-line help)``; listing the
    group (``--help``) imports nothing, so help answers without loading torch.
    """

    def __init__(self, *args, table: dict[str, tuple[str, str, str]], section: str = "Commands", **kwargs):
        super().__init__(*args, **kwargs)
        self.table = table
        self.section = section

    def list_commands(self, ctx):
        return list(self.table)

    def get_command(self, ctx, name):
        if name not in self.table:
            return None
        module_name, attribute, _ = self.table[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise

            @click.command(name=name, help="(not available in this build)")
            def unavailable():
                raise click.ClickException(f"'{name}' is not available in this build of sice")

            return unavailable
        return getattr(module, attribute)

    def format_commands(self, ctx, formatter):
        with formatter.section(self.section):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in self.table.items()])
