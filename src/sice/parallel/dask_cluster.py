"""The Dask side of :mod:`sice.parallel`: a client for ``local:N`` or a scheduler address, the
worker plugin, and per-item outcomes from Dask futures.

Imported only when a run is given a cluster (it imports Dask, an optional extra).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import distributed
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.scheduler import KilledWorker

from .base import LOCAL, PLUGIN, ClusterError, Outcome, WorkerState, enter_scratch, one_thread, outcome_of


class WorkerSetup(WorkerPlugin):
    """Runs on every worker of the cluster for as long as it lives: OpenCV on one thread, a
    watched scratch folder for temp files, and the worker's :class:`~sice.parallel.WorkerState`
    (what :func:`sice.parallel.worker_state` returns in its tasks)."""

    idempotent = True  # a second run on the same cluster keeps the workers' loaded models

    def __init__(self) -> None:
        self.state = None  # made on the worker (a plugin travels pickled; a lock does not)
        self._scratch = None

    def setup(self, worker) -> None:
        one_thread()
        self.state = WorkerState()
        self._scratch = enter_scratch()

    def teardown(self, worker) -> None:
        if self.state is not None:
            self.state.clear()
        if self._scratch is not None:
            self._scratch.__exit__(None, None, None)


@contextlib.contextmanager
def dask_client(cluster: str) -> Iterator[distributed.Client]:
    """A client of ``cluster`` (``local:N`` starts N worker processes, shut down afterwards),
    with :class:`WorkerSetup` on every worker.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached.
    """
    local = LOCAL.fullmatch(cluster)
    started = None
    try:
        if local:
            # Processes with one thread each (our work holds the GIL in places); the nanny's
            # default environment makes OpenMP and BLAS single-threaded too.
            # No dashboard; the scheduler's own HTTP routes on a free loopback port, not 8787
            # (another cluster, or another user's, may hold it).
            started = distributed.LocalCluster(n_workers=int(local.group(1)), threads_per_worker=1,
                                               processes=True, dashboard_address=None,
                                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                               silence_logs=logging.ERROR)
            client = distributed.Client(started)
        else:
            client = distributed.Client(cluster, timeout="20s")
    except (OSError, TimeoutError) as exc:
        if started is not None:
            started.close()
        raise ClusterError(f"{cluster}: cannot reach the Dask scheduler: {' '.join(str(exc).split())}") from None
    try:
        client.register_plugin(WorkerSetup(), name=PLUGIN)
        yield client
    finally:
        client.close()
        if started is not None:
            started.close()


def run_dask(fn, items: list, cluster: str) -> Iterator[Outcome]:
    """:func:`sice.parallel.run_each` on a Dask cluster: one task per item, outcomes as they
    complete. A task whose worker dies is run again elsewhere by the scheduler; only when
    workers died under it ``distributed.scheduler.allowed-failures`` + 1 times does its
    outcome say so."""
    with dask_client(cluster) as client:
        # pure=False: every item runs (two equal items are two tasks, as everywhere else).
        futures = {client.submit(fn, item, pure=False): item for item in items}
        try:
            for future in distributed.as_completed(list(futures)):
                yield outcome_of(futures.pop(future), future, lost=KilledWorker)
                future.release()  # the scheduler forgets finished tasks: long runs stay small
        finally:
            if futures:  # interrupted: stop the rest
                client.cancel(list(futures))
