"""What every way of running items shares: outcomes, the per-worker state, the checks, and
what a worker does when it starts (:mod:`sice.parallel`)."""
from __future__ import annotations

import dataclasses
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..errors import SiceError

#: What a user runs when Dask is missing.
INSTALL_HINT = "pip install 'sice[cluster]' (or: pip install 'dask[distributed]')"
#: Why an item whose worker died has no result (the caller adds the item's name).
WORKER_DIED = ("a worker process died (killed or out of memory) while this item was queued or running; "
               "re-run to resume")
#: ``--cluster local:N``: a Dask cluster of N processes started on this machine for the run.
LOCAL = re.compile(r"local:(\d+)")
#: Name of the Dask worker plugin that holds each worker's WorkerState (:mod:`.dask_cluster`).
PLUGIN = "sice"


class ClusterError(SiceError):
    """A cluster cannot be used: Dask missing, a bad address, a scheduler that cannot be reached."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one item: ``value`` (what ``fn`` returned) or ``error`` (one line)."""

    item: Any
    value: Any = None
    error: str | None = None


class WorkerState:
    """Objects a worker loads once and reuses for every item it runs (models, sessions).

    Thread-safe: a Dask worker with several threads loads each object once.
    """

    def __init__(self) -> None:
        self._objects: dict = {}
        self._lock = threading.Lock()

    def get(self, key, factory: Callable[[], Any]):
        """The object stored under ``key``, made by ``factory()`` the first time."""
        with self._lock:
            if key not in self._objects:
                self._objects[key] = factory()
            return self._objects[key]

    def clear(self) -> None:
        """Drop everything (the next :meth:`get` loads again)."""
        with self._lock:
            self._objects.clear()


_process_state = WorkerState()


def worker_state() -> WorkerState:
    """This worker's :class:`WorkerState`: the Dask worker's when called inside a Dask task,
    else this process's (the main process's or a local worker process's)."""
    if "distributed" in sys.modules:  # never imports Dask on one machine
        from distributed import get_worker

        try:
            plugin = get_worker().plugins.get(PLUGIN)
        except ValueError:  # not inside a Dask task
            plugin = None
        if plugin is not None and plugin.state is not None:
            return plugin.state
    return _process_state


def check_parallel(workers: int = 1, cluster: str | None = None) -> str | None:
    """Check how work is to be spread; return ``cluster`` stripped.

    Parameters
    ----------
    workers : int
        Local processes, >= 1.
    cluster : str, optional
        ``local:N`` (N >= 1) or a Dask scheduler address; only with ``workers=1``.

    Raises
    ------
    ValueError
        ``workers`` < 1, ``local:0``, an address with spaces or nothing in it, or both
        ``workers`` > 1 and a cluster.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if cluster is None:
        return None
    cluster = cluster.strip()
    local = LOCAL.fullmatch(cluster)
    if cluster.startswith("local:") and (local is None or int(local.group(1)) < 1):
        raise ValueError(f"cluster {cluster!r}: use local:N with N >= 1 worker processes, or a scheduler address")
    if not cluster or any(c.isspace() for c in cluster):
        raise ValueError(f"cluster {cluster!r}: use local:N or a scheduler address such as tcp://host:8786")
    if workers != 1:
        raise ValueError("give either workers (processes of this machine) or a cluster, not both")
    return cluster


def error_line(exc: BaseException) -> str:
    """An exception as one line: ``TypeName: message``."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def outcome_of(item, future, *, lost: type[BaseException]) -> Outcome:
    """The outcome of a finished future (concurrent.futures or Dask): its result; or
    :data:`WORKER_DIED` when it raised ``lost`` (the executor's exception for a dead worker);
    or the one-line error that ``fn`` raised."""
    try:
        return Outcome(item, future.result())
    except lost:
        return Outcome(item, error=WORKER_DIED)
    except Exception as exc:  # noqa: BLE001 - raised by fn in the worker
        return Outcome(item, error=error_line(exc))


def one_thread() -> None:
    """Make this worker's OpenCV single-threaded."""
    import cv2

    cv2.setNumThreads(1)  # OpenCV ignores OMP_NUM_THREADS; torch and BLAS follow the variables


def enter_scratch():
    """Enter a watched scratch folder for this worker's temp files (:mod:`sice.childproc`)
    and return it (kept by the caller: collecting it would end it)."""
    from ..childproc import scratch_tempdir

    scratch = scratch_tempdir(exit_on_sigterm=False)
    scratch.__enter__()
    return scratch
