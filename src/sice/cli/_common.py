"""What every command shares: turning core errors into one-line messages and exit codes."""
from __future__ import annotations

import functools
import importlib
import sys
import unicodedata

import click

from ..errors import SiceError


#: Import name -> the package ``pip install`` wants, where they differ.
PIP_NAMES = {"cv2": "opencv-contrib-python-headless", "PIL": "pillow", "skimage": "scikit-image",
             "yaml": "pyyaml", "google": "protobuf"}


_FAST_EXIT = False


def allow_fast_exit() -> None:
    """Say that this command has finished everything it writes (outputs are atomic and fsynced,
    nothing runs in the background), so ``sice`` may skip the interpreter's teardown at exit."""
    global _FAST_EXIT
    _FAST_EXIT = True


def fast_exit_allowed() -> bool:
    return _FAST_EXIT


def report_errors(fn):
    """Decorator for click command bodies: a :class:`SiceError` (or OSError) becomes
    ``sice: error: <message>`` on stderr and exit status 1 — one line, no traceback. A missing
    Python package becomes one line naming the ``pip install`` that brings it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SiceError as exc:
            _fail(str(exc))
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.split(".")[0] == "sice":
                raise  # a bug in sice itself, not an installation problem
            top = exc.name.split(".")[0]
            package = PIP_NAMES.get(top, top)
            _fail(f"this command needs the Python package '{package}', which is not installed here: "
                  f"pip install {package}")
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            _fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            click.echo("sice: interrupted", err=True)
            sys.exit(130)

    return wrapper


def one_line(text) -> str:
    """``text`` made safe to print inside one line of a message.

    Control characters (newline, carriage return, tab, escape, the C1 range) and the Unicode
    line and paragraph separators, and the surrogates that stand for undecodable bytes of a
    file name, become visible escapes (``\\n``, ``\\x1b``, ``\\u2028``), so
    a file name can neither split a message nor forge a ``sice: failed:`` line of its own.
    Other text (spaces, accents, backslashes) is returned unchanged.
    """
    return "".join(_escape(c) if _is_control(c) else c for c in str(text))


def _is_control(c: str) -> bool:
    # Cc: C0, DEL, C1; Zl/Zp: U+2028/U+2029, which some terminals and editors break lines on;
    # Cs: the lone surrogates that stand for undecodable bytes of a file name (not printable)
    return unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs")


def _escape(c: str) -> str:
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c) or (
        f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def _fail(message: str) -> None:
    click.echo(f"sice: error: {one_line(message)}", err=True)
    sys.exit(1)


class BatchReport:
    """Collects per-item failures of a batch so the run goes on and reports them at the end."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed: list[tuple[str, str]] = []

    def success(self) -> None:
        self.ok += 1

    def failure(self, item: str, reason: str) -> None:
        self.failed.append((one_line(item), one_line(reason)))

    def summary(self, what: str = "files") -> str:
        return f"{self.ok} {what} done, {len(self.failed)} failed"

    def finish(self, what: str = "files", *, summary: bool = True) -> None:
        """Print failures and (unless ``summary`` is False) the summary to stderr; exit 1 if
        anything failed."""
        for item, reason in self.failed:
            click.echo(f"sice: failed: {item}: {reason}", err=True)
        if summary:
            click.echo(self.summary(what), err=True)
        if self.failed:
            sys.exit(1)


def _check_cluster(ctx, param, value):
    if value is None:
        return None
    from ..parallel import check_parallel

    try:
        return check_parallel(1, value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


#: ``--cluster ADDRESS``, the same for every command that spreads per-item work (docs/scaling.md).
cluster_option = click.option(
    "--cluster", default=None, metavar="ADDRESS|local:N", callback=_check_cluster,
    help="Spread the work over a Dask cluster: a running scheduler's address (tcp://host:8786), or "
         "local:N to start N worker processes here. Needs the 'cluster' extra (pip install 'sice[cluster]') "
         "and inputs and outputs on a file system every worker sees (docs/scaling.md).")


def workers_or_cluster(workers: int, cluster: str | None) -> None:
    """A usage error when both local worker processes and a cluster are asked for."""
    if cluster is not None and workers != 1:
        raise click.UsageError("--workers and --cluster exclude each other (a cluster has its own workers)")


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
