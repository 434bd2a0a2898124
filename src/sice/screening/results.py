"""Results of a screening: per-scene winners, vote counts and inter-rater agreement.

Each rater makes one nominal choice per scene (a candidate, or "none acceptable"), which is
exactly the setting of Fleiss' kappa [1]_: subjects = scenes, categories = candidate names
(generators, the same across scenes) plus "none acceptable". Kendall's W would need full
rankings, which the page does not ask for.

References
----------
.. [1] J. L. Fleiss, "Measuring nominal scale agreement among many raters", Psychological
   Bulletin 76(5):378-382, 1971.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..files import atomic_write_bytes
from .scenes import list_scenes
from .store import DB_NAME, VoteStore, count_votes

NONE_LABEL = "(none acceptable)"


@dataclass(frozen=True)
class Agreement:
    """Fleiss' kappa and its parts. ``kappa`` is None when undefined (fewer than one scene with
    two or more raters, or every vote in one category so that chance agreement is 1)."""

    kappa: float | None
    observed: float | None  # mean pairwise agreement P-bar
    expected: float | None  # chance agreement P_e
    scenes: int             # scenes that entered (two or more raters)


def fleiss_kappa(table: np.ndarray) -> Agreement:
    """Fleiss' kappa of a subjects x categories count table.

    Parameters
    ----------
    table : (N, k) array_like of int >= 0
        ``table[i, j]`` = number of raters who put subject i in category j. Rows may have
        different sums (not every rater rated every scene); rows with fewer than 2 ratings
        carry no agreement information and are dropped.

    Returns
    -------
    Agreement
        ``kappa = (P_bar - P_e) / (1 - P_e)`` with, per subject, ``P_i = (sum_j n_ij^2 - n_i) /
        (n_i (n_i - 1))``, ``P_bar`` their mean, ``p_j = sum_i n_ij / sum_i n_i`` and
        ``P_e = sum_j p_j^2``. With equal row sums this is exactly Fleiss (1971) [1]_; with
        unequal ones it is the usual generalisation that computes each P_i with its own n_i.

    Notes
    -----
    Written by hand: SciPy has no Fleiss' kappa, and statsmodels (which has one, for equal row
    sums only) is not a dependency.
    """
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or (t < 0).any():
        raise ValueError(f"table must be a 2-D array of non-negative counts, got shape {t.shape}")
    n = t.sum(axis=1)
    t, n = t[n >= 2], n[n >= 2]
    if len(t) == 0:
        return Agreement(None, None, None, 0)
    p_i = ((t * t).sum(axis=1) - n) / (n * (n - 1))
    p_bar = float(p_i.mean())
    p_j = t.sum(axis=0) / n.sum()
    p_e = float((p_j * p_j).sum())
    kappa = None if np.isclose(p_e, 1.0) else (p_bar - p_e) / (1.0 - p_e)
    return Agreement(kappa, p_bar, p_e, len(t))


def pairwise_agreement(counts: list[int]) -> float | None:
    """Share of rater pairs that agree in one scene (Fleiss' P_i); None with fewer than 2 raters."""
    n = sum(counts)
    if n < 2:
        return None
    return (sum(c * c for c in counts) - n) / (n * (n - 1))


def screening_results(dataset_dir: os.PathLike | str, *, db_path: os.PathLike | str | None = None) -> dict:
    """Everything ``sice screen --results`` reports, as a JSON-ready dict.

    ::

        {"dataset": str, "raters": [names], "votes_cast": int (history length),
         "agreement": {"measure": "fleiss_kappa", "kappa", "observed", "expected", "scenes"},
         "scenes": [{"scene", "winners": [names], "raters", "none_acceptable",
                     "votes": {name: count}, "agreement": P_i | None}]}

    Scenes are those with candidates in the folder, plus any scene the database has votes for
    (a scene removed after voting still shows up). ``winners`` follows
    :func:`sice.screening.store.winners`.
    """
    dataset_dir = Path(dataset_dir)
    db_path = Path(db_path) if db_path is not None else dataset_dir / DB_NAME
    if not db_path.is_file():
        raise DatasetError(f"{db_path}: no screening database; nobody has voted yet (run `sice screen` first)")
    store = VoteStore(db_path)
    latest = store.latest_votes()
    counts = count_votes(latest)
    names = [s.name for s in list_scenes(dataset_dir)]
    names += sorted(set(counts) - set(names))
    categories = sorted({c for sc in counts.values() for c in sc.votes})
    rows, table = [], []
    for name in names:
        sc = counts.get(name)
        votes = dict(sorted(sc.votes.items())) if sc else {}
        none = sc.none if sc else 0
        rows.append({"scene": name, "winners": sc.winners if sc else [], "raters": sc.raters if sc else 0,
                     "none_acceptable": none, "votes": votes,
                     "agreement": pairwise_agreement([*votes.values(), none])})
        table.append([votes.get(c, 0) for c in categories] + [none])
    agreement = fleiss_kappa(np.array(table).reshape(len(table), len(categories) + 1))
    return {"dataset": str(dataset_dir), "raters": sorted({r for r, _ in latest}),
            "votes_cast": len(store.history()),
            "agreement": {"measure": "fleiss_kappa", **asdict(agreement)}, "scenes": rows}


def to_json(results: dict) -> str:
    return json.dumps(results, indent=2, ensure_ascii=False) + "\n"


def to_csv(results: dict) -> str:
    """One row per scene: scene, winners (``;``-joined), raters, none_acceptable, agreement
    (pairwise share P_i), then one ``votes:<candidate>`` column per candidate name seen."""
    names = sorted({c for row in results["scenes"] for c in row["votes"]})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scene", "winners", "raters", "none_acceptable", "agreement", *(f"votes:{c}" for c in names)])
    for row in results["scenes"]:
        agreement = "" if row["agreement"] is None else f"{row['agreement']:.4f}"
        writer.writerow([row["scene"], ";".join(row["winners"]), row["raters"], row["none_acceptable"], agreement,
                         *(row["votes"].get(c, 0) for c in names)])
    return buf.getvalue()


def summary(results: dict) -> str:
    """A short human-readable table for the terminal."""
    a = results["agreement"]
    kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.3f}"
    n = len(results["raters"])
    lines = [f"{n} rater{'s' * (n != 1)}, {results['votes_cast']} votes cast, "
             f"Fleiss' kappa {kappa} over {a['scenes']} scenes with 2+ raters"]
    width = max([5, *(len(r["scene"]) for r in results["scenes"])])
    lines.append(f"{'scene':<{width}}  raters  winners")
    for r in results["scenes"]:
        if r["raters"] == 0:
            winner = "(no votes)"
        else:
            winner = ", ".join(f"{w} ({r['votes'][w]})" for w in r["winners"]) or NONE_LABEL
        lines.append(f"{r['scene']:<{width}}  {r['raters']:>6}  {winner}")
    return "\n".join(lines) + "\n"


def write_results(results: dict, path: os.PathLike | str, fmt: str) -> None:
    """Write ``results`` as ``fmt`` ("csv" or "json") to ``path`` atomically."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"fmt must be 'csv' or 'json', got {fmt!r}")
    text = to_csv(results) if fmt == "csv" else to_json(results)
    atomic_write_bytes(path, text.encode("utf-8"))
