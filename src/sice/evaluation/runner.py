"""Run methods over a protocol's items, with a per-(method, image) cache and worker processes.

The unit of work is one :class:`~sice.evaluation.protocols.EvalItem`: its input and reference
are decoded once, every method that has no cached result runs on it, its output is rounded to
8 bit (as if saved to a PNG: scores never depend on precision that a saved result would not
have) and scored. Each result is cached in ``REPORT/cache/<method>/<size>/<item>.{png,json}``;
a re-run with one more method only computes that method, and a re-run with nothing new reads
JSON files only.

Nothing fails the run: a missing label, a size mismatch, an unreadable file or a method that
raises is recorded in the item's :class:`Record` (``status`` and ``error``) and in
:attr:`EvalResult.problems`, and the report shows it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ..errors import SiceError
from ..imageops import from_float32, to_float32
from ..parallel import check_parallel, run_each, worker_state
from .baselines import BASELINES
from .metrics import DEFAULT_METRICS, METRICS, compute_metrics
from .protocols import PROTOCOLS, EvalItem, exposure_of, items_for, oriented, photo_items

__all__ = ["Record", "EvalResult", "evaluate", "method_names", "resolve_method", "CACHE_VERSION"]

#: Bump when a baseline or the scoring changes so that old cached results are not reused.
CACHE_VERSION = 2


def method_names() -> list[str]:
    """Names ``--methods`` accepts besides model names/checkpoint paths: the baselines."""
    return list(BASELINES)


def _slug(name: str) -> str:
    """File-name-safe, unique folder name for a method (checkpoint paths get a short hash)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "method"
    if safe != name:
        safe = f"{safe[-40:]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return safe


def _signature(name: str) -> str:
    """What the cached result of ``name`` depends on besides the input."""
    if name in BASELINES:
        return f"baseline:{name}:v{CACHE_VERSION}"
    p = Path(name)
    if p.is_file():
        st = p.stat()
        return f"file:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}:v{CACHE_VERSION}"
    # A registry name means its shipped weights: stamp them, or re-shipped weights would be
    # served stale results from the cache.
    from ..weights import shipped_file

    base = name.split(":")[0]
    stamps = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
              for f in (shipped_file(base, ".pt"), shipped_file(base, ".onnx")) if f is not None]
    return f"model:{name}:{','.join(stamps)}:v{CACHE_VERSION}"


def resolve_method(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """``name`` -> ``fn(rgb float32 [0, 1]) -> rgb``: a baseline, else a model by registry name
    or checkpoint path through :class:`sice.enhancement.Enhancer` (loaded once per worker, kept
    in its :func:`sice.parallel.worker_state`).

    Raises
    ------
    ModelError
        Unknown model name or unreadable checkpoint.
    """
    if name in BASELINES:
        return BASELINES[name]
    return worker_state().get(("eval-method", name), lambda: _load_model(name))


def _load_model(name: str) -> Callable[[np.ndarray], np.ndarray]:
    from ..enhancement import Enhancer

    return Enhancer(name).enhance_rgb


@dataclasses.dataclass
class Record:
    """The result of one method on one item (a row of the per-image table)."""

    scene: str
    index: int
    count: int
    level: int | str
    frame: str
    method: str
    status: str  # "ok" or "failed"
    error: str = ""
    seconds: float = float("nan")
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    output: str = ""  # cached output PNG, relative to the report folder
    item_id: str = ""
    #: "under" or "over": which way the input is exposed (:func:`~.protocols.exposure_of`).
    exposure: str = ""


@dataclasses.dataclass
class EvalResult:
    """Everything a report needs."""

    dataset: str
    protocol: str
    methods: list[str]
    metrics: list[str]
    items: list[EvalItem]
    records: list[Record]
    problems: list[tuple[str, str]]  # (item or scene, reason)
    out_dir: Path
    seconds: float = 0.0
    computed: int = 0  # (method, item) pairs run now (the rest came from the cache)


# --------------------------------------------------------------------------------- one item

def _size_tag(item: EvalItem) -> str:
    return "native" if item.size is None else f"{item.size[0]}x{item.size[1]}"


def _cache_paths(out_dir: Path, method: str, item: EvalItem) -> tuple[Path, Path]:
    folder = out_dir / "cache" / _slug(method) / _size_tag(item)
    return folder / f"{item.id}.png", folder / f"{item.id}.json"


def _file_stamp(path: Path | None) -> list | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), st.st_size, st.st_mtime_ns]


def _load(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    from ..io import read_rgb

    img = read_rgb(path)
    if size is not None:
        w, h = oriented(size, img.shape[1], img.shape[0])
        if (img.shape[1], img.shape[0]) != (w, h):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(img, 0.0, 1.0)


def _quantise(img: np.ndarray) -> np.ndarray:
    """Round to 8 bit exactly as writing and re-reading the cached PNG would."""
    return to_float32(from_float32(img, np.uint8))


def _evaluate_item(task: tuple) -> tuple[list[dict], list[tuple[str, str]], int]:
    """Worker body: every method on one item. Returns (record dicts, problems, computed)."""
    item, methods, metric_names, out_dir = task
    from ..files import atomic_write_bytes
    from ..io import read_rgb, write_image

    problems: list[tuple[str, str]] = []
    stamps = {"input": _file_stamp(item.frame), "reference": _file_stamp(item.reference),
              "metrics": sorted(metric_names)}
    base = dict(scene=item.scene, index=item.index, count=item.count, level=item.level,
                frame=str(item.frame), item_id=item.id)
    records: list[dict] = []
    todo: list[tuple[str, Path, Path, dict | None]] = []
    for m in methods:
        png, js = _cache_paths(out_dir, m, item)
        cached = None
        try:
            cached = json.loads(js.read_text())
        except (OSError, ValueError):
            pass
        if (cached and cached.get("signature") == _signature(m) and cached.get("stamps") == stamps
                and png.is_file()):
            records.append(cached["record"])
        else:
            todo.append((m, png, js, cached))
    if not todo:
        return records, problems, 0

    # Decode once for all methods that need computing.
    try:
        original = _load(item.frame, item.size)
    except (SiceError, OSError, ValueError) as exc:
        reason = f"cannot read input: {exc}"
        problems.append((item.id, reason))
        for m, *_ in todo:
            records.append(dict(base, method=m, status="failed", error=reason, metrics={}, output=""))
        return records, problems, 0
    reference = None
    ref_problem = ""
    if item.reference is None:
        ref_problem = "no reference (missing label)"
    else:
        try:
            reference = _load(item.reference, item.size)
        except (SiceError, OSError, ValueError) as exc:
            ref_problem = f"cannot read reference: {exc}"
        else:
            if reference.shape != original.shape:
                ref_problem = (f"size mismatch: input {original.shape[1]}x{original.shape[0]}, "
                               f"reference {reference.shape[1]}x{reference.shape[0]}")
                reference = None
    if ref_problem and any(METRICS[n].needs == "reference" for n in metric_names):
        problems.append((item.id, ref_problem))
    frames = None
    if "mef-ssim" in metric_names:
        try:
            frames = [_load(p, item.size) for p in item.stack]
            if any(f.shape != original.shape for f in frames):
                frames = None
        except (SiceError, OSError, ValueError):
            frames = None

    from ..imageops import luminance

    base["exposure"] = exposure_of(item.level, float(luminance(original).mean()))
    # float64 once here, so that no metric converts (copies) them again per method.
    original64 = original.astype(np.float64)
    reference = None if reference is None else reference.astype(np.float64)
    computed = 0
    memo: dict = {}  # the reference's FSIM features, shared by all methods of this item
    for m, png, js, cached in todo:
        rec = dict(base, method=m, status="ok", error="", output=str(png.relative_to(out_dir)))
        try:
            if cached and cached.get("signature") == _signature(m) and png.is_file() \
                    and cached.get("stamps", {}).get("input") == stamps["input"]:
                # The output is still valid; only the metrics (or the reference) changed.
                out = read_rgb(png)
                rec["seconds"] = cached["record"].get("seconds", float("nan"))
            else:
                fn = resolve_method(m)
                t0 = time.perf_counter()
                out = np.asarray(fn(original.copy()))  # a method must not alter the shared input
                rec["seconds"] = time.perf_counter() - t0
                if out.shape != original.shape:
                    raise ValueError(f"method returned shape {out.shape} for input {original.shape}")
                if not np.all(np.isfinite(out)):
                    raise ValueError("method returned non-finite values")
                out = _quantise(out)
                write_image(png, out)
                computed += 1
            scores = compute_metrics(out, metric_names, reference=reference, original=original64, frames=frames,
                                     memo=memo)
            if ref_problem:
                scores = {k: (ref_problem if isinstance(v, str) and v.startswith("no reference") else v)
                          for k, v in scores.items()}
            rec["metrics"] = scores
        except Exception as exc:  # noqa: BLE001 - a failing method must not stop the run
            rec.update(status="failed", error=f"{type(exc).__name__}: {exc}", metrics={}, output="")
            problems.append((f"{item.id} [{m}]", rec["error"]))
            records.append(rec)
            continue
        records.append(rec)
        # Only complete results are cached (a failure is retried next time).
        if not ref_problem or item.reference is None:
            payload = {"signature": _signature(m), "stamps": stamps, "record": rec}
            atomic_write_bytes(js, json.dumps(payload, default=_json_default).encode())
    return records, problems, computed


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ------------------------------------------------------------------------------------ driver

def evaluate(dataset: os.PathLike | str, methods: Sequence[str], *, protocol: str = "levels",
             out_dir: os.PathLike | str, metrics: Sequence[str] = DEFAULT_METRICS, workers: int = 1,
             cluster: str | None = None, limit: int | None = None, split: str | None = None, split_seed: int = 0,
             progress: bool = True) -> EvalResult:
    """Evaluate ``methods`` on ``dataset`` with ``protocol``; results cached under ``out_dir``.

    Parameters
    ----------
    dataset : path-like
        A SICE-layout dataset (authors' release or ``sice build-dataset`` output), or for the
        ``photos`` protocol a plain folder of photos.
    methods : sequence of str
        Baseline names (:data:`~sice.evaluation.baselines.BASELINES`), registered model names
        or checkpoint paths.
    protocol : str
        A key of :data:`~sice.evaluation.protocols.PROTOCOLS`.
    metrics : sequence of str
        Keys of :data:`~sice.evaluation.metrics.METRICS`.
    workers : int
        Worker processes of this machine (1: in this process).
    cluster : str, optional
        Evaluate on a Dask cluster instead: ``local:N`` or a scheduler address
        (:func:`sice.parallel.run_each`; dataset and report folder on a file system every
        worker sees). The tables are the same as from one process.
    limit : int, optional
        Use only the first ``limit`` scenes (after the split).
    split : {"train", "val", "test"}, optional
        Use one split of :func:`sice.dataset.layout.split_scenes` with ``split_seed``.

    Returns
    -------
    EvalResult

    Raises
    ------
    DatasetError
        The dataset folder is unusable as a whole.
    ValueError
        Unknown protocol, metric or split; no method; ``workers`` < 1 or a bad ``cluster``.
    ClusterError
        ``cluster`` given and Dask missing or the scheduler unreachable.
    ModelError
        A method is neither a baseline nor a loadable model.
    """
    from ..dataset.layout import read_sice_layout
    from ..dataset.layout import split_scenes

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("methods must name at least one method")
    cluster = check_parallel(workers, cluster)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    # A model that cannot be loaded at all is a usage error, reported once before any work
    # (failures on single images are still reported per image).
    for m in methods:
        resolve_method(m)
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if PROTOCOLS[protocol].plain_folder:
        # photos have no label and no stack: only the figures that compare with the input
        metrics = [m for m in metrics if METRICS[m].needs == "input"]
        if not metrics:
            raise ValueError(f"protocol {protocol!r} has no references: choose metrics that need none "
                             f"({', '.join(m for m in METRICS if METRICS[m].needs == 'input')})")
        if split is not None:
            raise ValueError(f"protocol {protocol!r} reads a plain folder of photos, which has no scene split")
        if not Path(dataset).is_dir():
            raise SiceError(f"{dataset}: no such folder")
        items = photo_items(Path(dataset))[:limit] if limit else photo_items(Path(dataset))
        if not items:
            raise SiceError(f"{dataset}: no image files in this folder or below it")
        problems: list[tuple[str, str]] = []
    else:
        scenes = read_sice_layout(dataset)
        problems = list(scenes.problems)
        if split is not None:
            parts = split_scenes(scenes, seed=split_seed)
            if split not in parts:
                raise ValueError(f"split must be one of {', '.join(parts)}, got {split!r}")
            scenes = parts[split]
        scenes = list(scenes)[:limit] if limit else list(scenes)
        items = items_for(protocol, scenes)
    for m in methods:
        for sub in ("native",) + tuple({_size_tag(i) for i in items} - {"native"}):
            (out_dir / "cache" / _slug(m) / sub).mkdir(parents=True, exist_ok=True)

    tasks = [(item, methods, list(metrics), out_dir) for item in items]
    records: list[Record] = []
    computed = 0
    bar = _progress(len(tasks), progress, f"eval {protocol}")
    outcomes = run_each(_evaluate_item, tasks, workers=workers, cluster=cluster)
    try:
        for outcome in outcomes:
            if outcome.error is None:
                recs, probs, n = outcome.value
            else:  # the item's worker died or _evaluate_item failed: its item fails, not the run
                item = outcome.item[0]
                reason = f"worker failed: {outcome.error}"
                recs, probs, n = [dict(scene=item.scene, index=item.index, count=item.count,
                                       level=item.level, frame=str(item.frame), item_id=item.id,
                                       method=m, status="failed", error=reason) for m in methods], \
                    [(item.id, reason)], 0
            records += [Record(**r) for r in recs]
            problems += probs
            computed += n
            bar.update(1)
    finally:
        outcomes.close()
        bar.close()
    order = {(i.id): k for k, i in enumerate(items)}
    mpos = {m: k for k, m in enumerate(methods)}
    records.sort(key=lambda r: (order.get(r.item_id, 0), mpos.get(r.method, 0)))
    return EvalResult(dataset=str(dataset), protocol=protocol, methods=methods, metrics=list(metrics),
                      items=items, records=records, problems=problems, out_dir=out_dir,
                      seconds=time.perf_counter() - t_start, computed=computed)


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False, dynamic_ncols=True)
