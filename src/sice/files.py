"""Writing files so that nothing half-written is ever taken for an output.

Every writer in sice (images, checkpoints, ONNX graphs, manifests, logs, plots, reports) goes
through :func:`atomic_write` or :func:`atomic_write_bytes`: the content goes to a hidden temp file
``.<name>.<random>.part`` in the target's folder (same file system, so the rename is atomic), is
fsynced, gets the permissions ``open()`` would have given it, then is renamed over the target.
A failure removes the temp file and leaves an existing target as it was. A process killed
mid-write leaves only the ``.part`` file, which :func:`remove_stale_parts` clears on the next run.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

from .errors import ImageWriteError

#: Suffix of every temp file a writer leaves behind if killed.
PART_SUFFIX = ".part"


def default_file_mode() -> int:
    """0666 minus the process umask: what ``open()`` would have given a new file (``mkstemp``
    makes 0600, which would hide outputs from other users)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temp path next to ``path``; when the block ends without error the temp file is
    fsynced, given ordinary permissions and renamed over ``path``.

    For writers that want a file name rather than a file object (``torch.onnx.export``).
    Errors of the file system raise :class:`~sice.errors.ImageWriteError` naming ``path``.
    """
    path = Path(path)
    folder = _folder_of(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX, dir=folder)
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write in {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise ImageWriteError(path, f"cannot write: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_write(path: os.PathLike | str, write: Callable[[object], None]) -> None:
    """Call ``write(f)`` with a binary file object and put what it wrote at ``path`` atomically.

    Errors of the file system (disk full, read-only folder) raise
    :class:`~sice.errors.ImageWriteError` whose message starts with ``path``.
    """
    with atomic_path(path) as tmp, os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as f:
        write(f)


def atomic_write_bytes(path: os.PathLike | str, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: os.PathLike | str, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def same_file(a: os.PathLike | str, b: os.PathLike | str) -> bool:
    """Whether ``a`` and ``b`` are the same file (hard links and symbolic links included); False
    when either cannot be looked at."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_stale_part(name: str, targets: Collection[str] | None = None) -> bool:
    """Whether ``name`` is a temp file an atomic writer left (``.<target>.<random>.part``), and,
    when ``targets`` is given, one of those targets'."""
    if not (name.startswith(".") and name.endswith(PART_SUFFIX)):
        return False
    if targets is None:
        return True
    target = name[1:-len(PART_SUFFIX)].rsplit(".", 1)[0]
    return target in targets


def remove_stale_parts(folder: os.PathLike | str, targets: Iterable[str] | None = None) -> int:
    """Delete the temp files that a killed writer left in ``folder`` (only those of ``targets``
    when given; never anything else). Returns how many were removed; a missing folder is fine."""
    wanted = None if targets is None else set(targets)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        if is_stale_part(entry.name, wanted):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
