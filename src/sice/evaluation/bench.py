"""``sice bench eval``: time the classic baselines with the ``levels`` protocol.

The target of issue #8: every baseline on the 209 sequences of ``sice512`` (512x512) with the
``levels`` protocol and all default metrics in at most 10 minutes on the project machine
(2 cores). The run goes into a fresh temporary report folder, so the cache never flatters it.

Run it as ``python -m sice.evaluation.bench [DATASET] [--workers N] [--limit N]``; the
``sice bench`` group calls :func:`bench_eval`.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from .baselines import BASELINES
from .metrics import DEFAULT_METRICS

__all__ = ["bench_eval", "default_dataset", "TARGET_SECONDS"]

#: The performance target of issue #8: 209 sequences in 600 s.
TARGET_SECONDS, TARGET_SCENES = 600.0, 209


def default_dataset() -> Path:
    """The labelled build of sice512 when it exists (data-built/sice512), else the raw
    sequences (../shared/data/sice512, no labels: reference metrics are then not computed)."""
    repo = Path(__file__).resolve().parents[3]
    built = repo / "data-built" / "sice512"
    if (built / "Label").is_dir():
        return built
    return Path(os.environ.get("SICE_SHARED_DATA", repo.parent / "shared" / "data")) / "sice512"


def bench_eval(dataset: os.PathLike | str | None = None, *, methods=tuple(BASELINES), protocol: str = "levels",
               workers: int = 2, limit: int | None = None, metrics=DEFAULT_METRICS,
               progress: bool = True) -> dict:
    """Evaluate ``methods`` on ``dataset`` from scratch and return timing figures.

    Returns
    -------
    dict
        ``seconds`` (wall time of :func:`~sice.evaluation.runner.evaluate`), ``images``,
        ``runs`` (method x image), ``per_method_s`` (mean method time per image, without
        metrics), ``labelled`` (whether reference metrics were computed), ``failed`` runs,
        ``projected_s`` (scaled to 209 sequences when fewer ran), ``within_target``
        (``projected_s <= 600``) and ``line`` (one printable summary).
    """
    from .runner import evaluate

    dataset = Path(dataset) if dataset is not None else default_dataset()
    with tempfile.TemporaryDirectory(prefix="sice-bench-eval-") as tmp:
        t0 = time.perf_counter()
        res = evaluate(dataset, list(methods), protocol=protocol, out_dir=tmp, metrics=list(metrics),
                       workers=workers, limit=limit, progress=progress)
        seconds = time.perf_counter() - t0
    per = defaultdict(list)
    for r in res.records:
        if r.status == "ok" and r.seconds == r.seconds:
            per[r.method].append(r.seconds)
    per_method = {m: (sum(v) / len(v) if v else float("nan")) for m, v in per.items()}
    labelled = any(isinstance(r.metrics.get("psnr"), float) for r in res.records)
    failed = sum(r.status != "ok" for r in res.records)
    scenes = len({i.scene for i in res.items})
    # Fewer scenes than the target's 209 (--limit): project linearly, and say so.
    projected = seconds * TARGET_SCENES / scenes if scenes else float("nan")
    verdict = "OK" if projected <= TARGET_SECONDS else "OVER"
    line = (f"eval bench: {len(res.items)} images of {scenes} sequences x {len(res.methods)} methods "
            f"({protocol}, {workers} workers, metrics {','.join(metrics)}"
            f"{'' if labelled else '; no labels: reference metrics skipped'}): {seconds:.1f} s"
            + ("" if scenes == TARGET_SCENES else f", projected to {TARGET_SCENES} sequences: {projected:.0f} s")
            + f" [target {TARGET_SECONDS:.0f} s: {verdict}]; method time per image: "
            + ", ".join(f"{m} {1000 * s:.0f} ms" for m, s in per_method.items()))
    return {"seconds": seconds, "images": len(res.items), "scenes": scenes, "runs": len(res.records),
            "per_method_s": per_method, "labelled": labelled, "failed": failed,
            "projected_s": projected, "within_target": projected <= TARGET_SECONDS, "line": line}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sice.evaluation.bench", description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--methods", default=",".join(BASELINES))
    a = p.parse_args(argv)
    out = bench_eval(a.dataset, methods=a.methods.split(","), workers=a.workers, limit=a.limit)
    print(out["line"])
    return 0 if out["failed"] == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
