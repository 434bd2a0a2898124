"""Running a planned batch (:mod:`sice.enhancement.plan`): one :class:`Outcome` per input
(written, skipped or failed) that callers only report.

:func:`triage` skips the jobs whose outputs exist (a re-run does only what is left);
:func:`enhance_job` runs one job and never raises for a bad file (one bad file must not stop a
library-sized batch); :func:`enhance_jobs` runs many, here (:func:`run_jobs`: the model loads
while the first photo is read) or over a cluster (:mod:`sice.parallel`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import SiceError
from .api import DEFAULT_TILE
from .plan import STDIO, Job, Plan, stat_problem


# --------------------------------------------------------------------------------------------
# Running a plan: triage (skip what exists), then one outcome per job
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Settings:
    """How every job of a batch is enhanced and written."""

    strength: float = 1.0
    quality: int | None = None
    max_pixels: int | None = None
    overwrite: bool = False


@dataclasses.dataclass
class Outcome:
    """What became of one input: ``status`` is "written", "skipped" (its outputs exist) or
    "failed" (``error`` says why, without repeating the input's name)."""

    source: str
    status: str
    output: Path | None = None
    compare: Path | None = None
    renamed_from: Path | None = None
    quality: int | None = None
    seconds: float | None = None
    error: str | None = None

    @classmethod
    def of(cls, job: Job | None, source, status: str, **kwargs) -> "Outcome":
        if job is None:
            return cls(str(source), status, **kwargs)
        return cls(str(source), status, job.output, job.compare, job.renamed_from, **kwargs)


def plan_failures(plan: Plan) -> list[Outcome]:
    """The input entries that failed while the plan was made (a missing file, a glob that matches
    nothing, a folder without images), as outcomes."""
    return [Outcome(str(entry), "failed", error=reason) for entry, reason in plan.failures]


def triage(plan: Plan, settings: Settings) -> tuple[list[Job], list[Outcome]]:
    """The jobs to run, and the outcomes known without running: the plan's failed entries,
    inputs that cannot be looked at (failed) and jobs whose outputs all exist (skipped, unless
    ``settings.overwrite``; a file named with ``-o`` is what the user asked for, so it is always
    written)."""
    todo, known = [], plan_failures(plan)
    for job in plan.jobs:
        problem = stat_problem(job.source)
        if problem is not None:
            known.append(Outcome.of(job, job.source, "failed", error=problem))
        elif not (settings.overwrite or plan.single_file) and all(t.exists() for t in job.targets()):
            known.append(Outcome.of(job, job.source, "skipped"))
        else:
            todo.append(job)
    return todo, known


def prepare_outputs(plan: Plan, jobs: list[Job]) -> None:
    """Create the output folder and clear the temp files a killed run left for these jobs'
    outputs (only theirs, never other files)."""
    from ..files import remove_stale_parts

    if plan.out_dir is not None:
        try:
            plan.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SiceError(f"{plan.out_dir}: cannot create output folder: {exc.strerror or exc}") from None
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        if str(job.output) != STDIO:
            for target in job.targets():
                by_folder.setdefault(target.parent, set()).add(target.name)
    for folder, names in by_folder.items():
        remove_stale_parts(folder, names)


def run_jobs(jobs: Iterable[Job], load_enhancer: Callable[[], Any], settings: Settings) -> Iterator[Outcome]:
    """One outcome per job, in order, each enhanced by the enhancer ``load_enhancer()`` returns.

    Two cores share the work: the model loads on one thread while the first photo is read on
    another, and each next photo is read while the one before it is enhanced and written
    (onnxruntime builds its session, libjpeg decodes and OpenCV computes without holding the
    GIL). A single photo pays the longer of loading and reading, not their sum; the photo read
    ahead is the only extra memory (60 MB at 20 MP). A model that cannot load stops the batch
    with its own error, before any photo's outcome.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="sice-load") as loader, \
            ThreadPoolExecutor(1, thread_name_prefix="sice-read") as reader:
        loading = loader.submit(load_enhancer)
        reads = ((job, reader.submit(read_job, job, settings)) for job in jobs)
        ahead = next(reads, None)
        while ahead is not None:
            job, reading = ahead
            ahead = next(reads, None)  # the next photo is read while this one is enhanced
            yield finish_job(job, reading.result(), loading.result, settings)


def enhance_job(job: Job, get_enhancer: Callable[[], Any], settings: Settings) -> Outcome:
    """Enhance one planned job into its output file(s) (:func:`read_job`, then
    :func:`finish_job`); a failure of the file becomes the outcome, never an exception."""
    return finish_job(job, read_job(job, settings), get_enhancer, settings)


def read_job(job: Job, settings: Settings) -> tuple[Any, Exception | None, float]:
    """The job's output folders made and its photo read: ``(ImageFile, None, seconds)``, or
    ``(None, the exception, seconds)`` when either fails (one bad file must not stop a
    library-sized batch; on a cluster the worker makes the folders it writes in)."""
    import time

    from .api import read_source

    start = time.perf_counter()
    try:
        for target in job.targets():
            target.parent.mkdir(parents=True, exist_ok=True)
        image = read_source(job.source, job.output, compare=job.compare, max_pixels=settings.max_pixels)
    except Exception as exc:
        return None, exc, time.perf_counter() - start
    return image, None, time.perf_counter() - start


def finish_job(job: Job, read: tuple[Any, Exception | None, float], get_enhancer: Callable[[], Any],
               settings: Settings) -> Outcome:
    """The outcome of ``job`` once :func:`read_job` has ``read`` its photo: enhanced and written,
    or the failure of the file (``KeyboardInterrupt`` still stops the batch).

    ``get_enhancer()`` is asked for the enhancer first, outside that error handling: a model
    that cannot load is the batch's error, not this file's.
    """
    import time

    from .api import write_enhanced

    image, error, seconds = read
    enhancer = get_enhancer()
    if error is not None:
        return Outcome.of(job, job.source, "failed", error=failure_reason(error, job.source))
    start = time.perf_counter()
    try:
        out = enhancer.enhance_pixels(image.pixels, strength=settings.strength)
        _, quality = write_enhanced(image, out, job.output, quality=settings.quality, compare=job.compare)
    except Exception as exc:
        return Outcome.of(job, job.source, "failed", error=failure_reason(exc, job.source))
    seconds += time.perf_counter() - start
    if job.output.suffix.lower() not in (".jpg", ".jpeg", ".jpe", ".webp"):
        quality = None  # the outcome records a quality only where the format has one
    return Outcome.of(job, job.source, "written", quality=quality, seconds=seconds)


def failure_reason(exc: BaseException, src) -> str:
    """An exception as the reason of a ``sice: failed: <src>: <reason>`` line (without repeating src)."""
    reason = str(exc) if isinstance(exc, SiceError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SiceError) and reason.startswith(f"{src}: "):
        reason = reason[len(str(src)) + 2:]
    return reason


# --------------------------------------------------------------------------------------------
# Many jobs: in this process, or spread over a cluster
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to load the batch's model itself: the arguments of
    :class:`~sice.enhancement.api.Enhancer`. Give the backend the batch's own enhancer resolved
    (not ``"auto"``), so that every worker runs the same one and writes the same bytes."""

    model: str | None
    device: str = "cpu"
    backend: str = "auto"
    tile: int = DEFAULT_TILE

    def load(self):
        from .api import Enhancer

        return Enhancer(self.model, device=self.device, backend=self.backend, tile=self.tile)


def enhance_jobs(jobs: list[Job], settings: Settings, *, load_enhancer: Callable[[], Any],
                 spec: ModelSpec | None = None, cluster: str | None = None) -> Iterator[Outcome]:
    """One :class:`Outcome` per job.

    Without ``cluster`` the jobs run here, in order, through the enhancer ``load_enhancer()``
    returns (:func:`run_jobs`: the model loads while the first photo is read). With one, each
    of the cluster's workers loads ``spec``'s model once and runs the jobs it is given, and the
    outcomes come as each finishes (:func:`sice.parallel.run_each`; the paths of the plan must
    be the same on every worker: a shared file system). A job whose worker died on every try
    is a failed outcome.
    """
    import functools

    from ..parallel import run_each

    if cluster is None:
        yield from run_jobs(jobs, load_enhancer, settings)
        return
    outcomes = run_each(functools.partial(_enhance_on_worker, spec=spec, settings=settings), jobs, cluster=cluster)
    try:
        for done in outcomes:
            job = done.item
            yield done.value if done.error is None else Outcome.of(job, job.source, "failed", error=done.error)
    finally:
        outcomes.close()  # an interrupt stops the cluster's remaining jobs


def _enhance_on_worker(job: Job, *, spec: ModelSpec, settings: Settings) -> Outcome:
    from ..parallel import worker_state

    state = worker_state()
    return enhance_job(job, lambda: state.get(("enhancer", spec), spec.load), settings)
