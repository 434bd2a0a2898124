"""External programs and scratch folders that nothing outlives: not a SIGTERM, not a SIGKILL.

``sice build-dataset`` runs tools such as enfuse and pfstools in temporary folders of 4-10 MB.
Killed, it used to leave both behind: ``/tmp/sice-*`` folders and tools still running. Here:

* :func:`run_tool` starts a program in its own process group (so a shell pipeline is one unit)
  and kills the whole group when the call ends early: timeout, Ctrl-C (``KeyboardInterrupt``),
  SIGTERM (turned into ``SystemExit`` by :func:`scratch_tempdir`), any exception.
* :func:`scratch_tempdir` makes one folder per process the home of every temporary file
  (``tempfile.tempdir``), and starts a watchdog: a tiny process in its own session that holds
  the reading end of a pipe from this one. When this process ends in any way, SIGKILL included,
  the pipe closes; the watchdog then kills the process groups of the tools still registered
  and deletes the folder. The same thing a ``finally`` does, from outside.
* :func:`die_with_parent` makes a worker process die with the process that started it (Linux
  ``PR_SET_PDEATHSIG``), so its own watchdog then cleans up after it.

Written by hand because neither the standard library nor a maintained package ties temporary
folders and child process groups to the life of the parent across SIGKILL.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

# Runs as ``python -S -c``: reads "+PGID"/"-PGID" lines until end of file (the parent is gone),
# then kills what is still registered and removes the folder.
_WATCHDOG = """
import os, shutil, signal, sys
root, groups = sys.argv[1], set()
for line in sys.stdin:
    pgid = int(line[1:])
    groups.add(pgid) if line[0] == "+" else groups.discard(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
shutil.rmtree(root, ignore_errors=True)
"""


class _Session:
    """This process's scratch folder and the watchdog that removes it."""

    def __init__(self, prefix: str):
        self.pid = os.getpid()
        self.root = Path(tempfile.mkdtemp(prefix=f"{prefix}{self.pid}-"))
        self.lock = threading.Lock()
        try:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-S", "-c", _WATCHDOG, str(self.root)], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, text=True)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.depth = 0

    def tell(self, line: str) -> None:
        with self.lock:
            try:
                self.watchdog.stdin.write(line + "\n")
                self.watchdog.stdin.flush()
            except (OSError, ValueError):  # the watchdog is gone: run_tool still kills its groups
                pass

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.watchdog.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.watchdog.wait(timeout=10)


_session: _Session | None = None


def _current() -> _Session | None:
    return _session if _session is not None and _session.pid == os.getpid() else None


@contextlib.contextmanager
def scratch_tempdir(prefix: str = "sice-", *, exit_on_sigterm: bool = True) -> Iterator[Path]:
    """Make a watched per-process folder the temporary folder of everything run inside.

    Parameters
    ----------
    prefix : str
        Start of the folder's name (the process id follows), inside the usual temp folder.
    exit_on_sigterm : bool
        In the main thread, while SIGTERM has its default action, turn it into
        ``SystemExit(143)`` so that ``finally`` blocks run (tools killed, folders removed).

    Yields
    ------
    Path
        The folder; ``tempfile.gettempdir()`` returns it until the block ends. Nested uses in
        one process share it.
    """
    global _session
    session = _current()
    if session is None:
        session = _session = _Session(prefix)
    session.depth += 1
    previous_tempdir = tempfile.tempdir
    tempfile.tempdir = str(session.root)
    restore = None
    if (exit_on_sigterm and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
        restore = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield session.root
    finally:
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)
        tempfile.tempdir = previous_tempdir
        session.depth -= 1
        if session.depth == 0:
            _session = None
            session.close()


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def run_tool(cmd: Sequence[str] | str, *, cwd: os.PathLike | str | None = None, stdin: bytes | None = None,
             shell: bool = False, env: dict | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True)`` in a process group of its own that is killed
    whole if the call does not finish normally, and by the watchdog if this process dies.

    Raises
    ------
    subprocess.TimeoutExpired
        After ``timeout`` seconds (the group is killed first).
    OSError
        The program cannot be started.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, shell=shell, env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    session = _current()
    if session is not None:
        session.tell(f"+{proc.pid}")
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except BaseException:
        _kill_group(proc.pid)
        proc.kill()
        proc.communicate()
        raise
    finally:
        _kill_group(proc.pid)  # members of a pipeline that outlived the shell
        if session is not None:
            session.tell(f"-{proc.pid}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def die_with_parent(parent_pid: int) -> None:
    """Linux: this process gets SIGKILL when the thread that started it ends (its parent
    ``parent_pid`` died); elsewhere nothing. For worker processes, whose own watchdog then
    removes their scratch folder and tools."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the call: no signal will come
        os._exit(1)
