"""Per-item work in this process, over local worker processes, or over a Dask cluster.

``sice build-dataset`` (one scene per item), ``sice eval`` (one image, every method) and
``sice enhance --cluster`` (one photo) share this one layer. :func:`run_each` calls a picklable
``fn(item)`` for every item and yields an :class:`Outcome` per item as it completes, whichever
way the work runs:

* ``workers=1``: in this process, in order (nothing is pickled);
* ``workers=N``: N spawned processes of this machine (:mod:`concurrent.futures`);
* ``cluster="local:N"``: a Dask cluster of N worker processes started for the run;
  ``cluster="tcp://host:8786"`` (or ``host:8786``): a running Dask scheduler.

Every way reports per item: a value, or an error string (``fn`` raised, or the worker that ran
it died). What counts as resumable, and the progress bar, stay with the caller, which sees the
same outcomes from every way. Items and ``fn`` travel to the workers pickled: they hold paths,
never pixels, so a cluster needs the inputs and outputs on a file system every worker sees.

Dask is an optional extra (``pip install 'sice[cluster]'``), imported only when a cluster is
asked for. A Dask worker that dies mid-item (SIGKILL, out of memory) has its items run again on
the others by the scheduler; the caller still gets exactly one outcome per item. Writers are
atomic (:mod:`sice.files`), so an item cut short leaves no partial output.

Things a worker loads once and keeps for all its items (a model) live in its
:func:`worker_state`: one per Dask worker, one per process otherwise.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .base import INSTALL_HINT, WORKER_DIED, ClusterError, Outcome, WorkerState, check_parallel, worker_state
from .local import run_here, run_pool

__all__ = ["Outcome", "WorkerState", "worker_state", "run_each", "check_parallel", "ClusterError",
           "INSTALL_HINT", "WORKER_DIED"]


def run_each(fn: Callable[[Any], Any], items: Iterable, *, workers: int = 1,
             cluster: str | None = None) -> Iterator[Outcome]:
    """Call ``fn(item)`` for every item; yield one :class:`Outcome` per item as each finishes.

    Parameters
    ----------
    fn : callable
        Module-level function or :func:`functools.partial` of one (workers unpickle it).
    items : iterable
        Picklable items (paths, small records).
    workers : int
        Local processes when ``cluster`` is None (1: in this process, in order).
    cluster : str, optional
        ``local:N`` or a Dask scheduler address (:func:`check_parallel`).

    Yields
    ------
    Outcome
        In completion order. An exception of ``fn`` becomes the outcome's ``error``
        (``KeyboardInterrupt`` and ``SystemExit`` are not caught in this process).

    Notes
    -----
    Closing the generator early (an interrupt, an error in the caller) cancels the items not
    yet finished: local worker processes are stopped, a Dask cluster's tasks cancelled and a
    ``local:N`` cluster shut down.

    Raises
    ------
    ClusterError
        Dask is not installed, or the scheduler cannot be reached.
    ValueError
        See :func:`check_parallel`.
    """
    cluster = check_parallel(workers, cluster)
    items = list(items)
    if cluster is not None:
        return _run_cluster(fn, items, cluster)
    if workers == 1 or len(items) <= 1:
        return run_here(fn, items)
    return run_pool(fn, items, workers)


def _run_cluster(fn, items, cluster: str) -> Iterator[Outcome]:
    try:
        from . import dask_cluster  # imports Dask
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("dask", "distributed"):
            raise
        raise ClusterError(f"--cluster needs Dask, which is not installed: {INSTALL_HINT}") from None
    return dask_cluster.run_dask(fn, items, cluster)


