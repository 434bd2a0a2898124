"""Items in this process or over spawned processes of this machine (:mod:`sice.parallel`)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .base import Outcome, enter_scratch, error_line, one_thread, outcome_of


def run_here(fn, items) -> Iterator[Outcome]:
    """Every item in this process, in order."""
    for item in items:
        try:
            value = fn(item)
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others
            yield Outcome(item, error=error_line(exc))
        else:
            yield Outcome(item, value)


def run_pool(fn, items, workers: int) -> Iterator[Outcome]:
    """Items over ``workers`` spawned processes, outcomes as they complete."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # One thread per worker: N workers x the libraries' default thread pools would oversubscribe
    # the cores and make the run slower, not faster. Spawned: no inherited threads or locks.
    with _single_threaded_env():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_pool_worker, initargs=(os.getpid(),))
        futures = {pool.submit(fn, item): item for item in items}
    try:
        for future in as_completed(futures):
            yield outcome_of(futures[future], future, lost=BrokenProcessPool)
    finally:
        if not all(f.done() for f in futures):
            # Interrupted: queued items are cancelled and running ones killed (writes are
            # atomic, so nothing half-done counts), instead of waiting minutes for them.
            # ProcessPoolExecutor has no public way to stop running work, hence _processes.
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
        pool.shutdown(wait=True)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_env():
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_pool_scratch = None


def _init_pool_worker(parent_pid: int) -> None:
    from ..childproc import die_with_parent

    one_thread()
    # A worker dies with the run (even a SIGKILLed one), and its own watched scratch folder
    # holds its temp files: its watchdog removes them and its tools when it ends. Never left:
    # the worker exits without running exit handlers.
    global _pool_scratch
    die_with_parent(parent_pid)
    _pool_scratch = enter_scratch()  # kept: collecting it would end it


