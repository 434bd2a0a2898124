"""Reports of an evaluation: Markdown/CSV/JSON tables, per-image scores, grids and a plot.

Layout of ``REPORT/``::

    results.md          one table per metric: methods x exposure level (mean, n), + failures
    results.csv         long form: method, level, metric, mean, std, n
    results.json        the same, plus settings, per-image records and problems
    per_image.csv       one row per (image, method): every score, status, error, seconds
    grids/<scene>.png   input | method ... | reference, one row per evaluated frame, labelled
    psnr_vs_level.png   mean PSNR of each method against the input's exposure level
    cache/              per (method, image) outputs and scores (see runner)

Means are over the images where the score is a number; images where it is not (failed method,
missing label, size mismatch) are counted in the ``failed`` column and listed, never dropped
silently.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from .metrics import METRICS
from .protocols import PROTOCOLS
from .runner import EvalResult, Record

__all__ = ["summarise", "write_report", "caption", "join_grid", "tile", "tone_summary", "COLOUR_NOTE"]

#: What every table states about the numbers.
COLOUR_NOTE = ("Scores are computed on sRGB-encoded RGB values in [0, 1] (data range 1.0), after "
               "rounding each method's output to 8 bit; FSIM/FSIMc and LOE scale to 0-255 internally "
               "as their reference code does; LOE compares with the input, all other scores with the "
               "reference (label).")


def _level_name(level: int | str) -> str:
    return level if isinstance(level, str) else (f"{level:+d}" if level else "0")


def _level_key(level: str):
    """Sort key of level names: exposure levels numerically, then group names, then "all"."""
    if level == "all":
        return (2, 0, "")
    try:
        return (0, int(level), "")
    except ValueError:
        return (1, 0, level)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarise(records: Iterable[Record], metrics: list[str]) -> dict:
    """Aggregate per method x level (and ``"all"``) x metric: mean, std, n, failed, na.

    A NaN score is "not applicable" (a tone figure whose region the input lacks, e.g. no
    clipped pixel): counted in ``na``, neither averaged nor a failure.

    Returns
    -------
    dict
        ``{method: {level_name: {metric: {"mean", "std", "n", "failed", "na"}}}}`` with level
        names ``"-2"``, ``"-1"``, ``"+1"``, ... (or ``photos`` group names) and ``"all"``.
    """
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    failed: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    na: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for r in records:
        for lv in (_level_name(r.level), "all"):
            for m in metrics:
                v = r.metrics.get(m) if r.status == "ok" else None
                if _is_number(v) and math.isnan(v):
                    na[r.method][lv][m] += 1
                elif _is_number(v):
                    values[r.method][lv][m].append(float(v))
                else:
                    failed[r.method][lv][m] += 1
    out: dict = {}
    methods = list(dict.fromkeys(r.method for r in records))
    for method in methods:
        seen = set(values[method]) | set(failed[method]) | set(na[method])
        out[method] = {}
        for lv in sorted(seen, key=_level_key):
            row = {}
            for m in metrics:
                vs = np.array(values[method][lv][m], dtype=np.float64)
                finite = vs[np.isfinite(vs)]
                row[m] = {
                    # inf (PSNR of identical images) makes the mean inf: report it as such.
                    "mean": float(vs.mean()) if vs.size and finite.size == vs.size else
                    (math.inf if vs.size else math.nan),
                    "std": float(finite.std()) if finite.size else math.nan,
                    "n": int(vs.size),
                    "failed": int(failed[method][lv][m]),
                    "na": int(na[method][lv][m]),
                }
            out[method][lv] = row
    return out


#: The photographic-tone targets (docs/evaluation.md): (metric, exposure, ">=" or "<=", value).
#: Shadow noise has no absolute target (it is compared between methods).
TONE_TARGETS = (
    ("clipped-luma", "over", ">=", 240.0),
    ("white-point", "over", ">=", 245.0),
    ("colourfulness", "over", ">=", 0.95),
    ("black-luma", "under", "<=", 12.0),
    ("shadow-noise", "under", None, None),
    ("black-point", "under", None, None),
)


def tone_summary(records: Iterable[Record], metrics: list[str]) -> dict:
    """Mean tone figures per method over under- and over-exposed inputs (``Record.exposure``).

    Returns
    -------
    dict
        ``{method: {(metric, exposure): {"mean", "n", "na"}}}`` for the (metric, exposure)
        pairs of :data:`TONE_TARGETS` whose metric was computed.
    """
    records = list(records)
    out: dict = {}
    for method in dict.fromkeys(r.method for r in records):
        row = {}
        for metric, exposure, _, _ in TONE_TARGETS:
            if metric not in metrics:
                continue
            vals = [r.metrics.get(metric) for r in records
                    if r.method == method and r.status == "ok" and r.exposure == exposure]
            nums = [float(v) for v in vals if _is_number(v) and not math.isnan(v)]
            row[(metric, exposure)] = {"mean": float(np.mean(nums)) if nums else math.nan,
                                       "n": len(nums), "na": sum(1 for v in vals if _is_number(v) and math.isnan(v))}
        out[method] = row
    return out


def _tone_markdown(result: EvalResult) -> list[str]:
    tone = tone_summary(result.records, result.metrics)
    cols = [t for t in TONE_TARGETS if t[0] in result.metrics]
    if not cols or not tone:
        return []
    head = [f"{m} ({e}, {op} {v:g})" if op else f"{m} ({e})" for m, e, op, v in cols]
    lines = ["## Photographic tone (no reference needed)", "",
             "Mean over the under-exposed (level < 0) and over-exposed (level > 0) inputs; "
             "luma figures on the 0-255 scale; ✗ marks a missed target (docs/evaluation.md). "
             "n = images with the region (clipped or black pixels) in the input.", "",
             "| method | " + " | ".join(head) + " |", "|---|" + "---:|" * len(cols)]
    for method, row in tone.items():
        cells = []
        for metric, exposure, op, target in cols:
            s = row[(metric, exposure)]
            if not s["n"]:
                cells.append("–")
                continue
            miss = op == ">=" and s["mean"] < target or op == "<=" and s["mean"] > target
            cells.append(f"{_fmt(s['mean'], metric)} (n {s['n']}){' ✗' if miss else ''}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def _fmt(v: float, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "inf"
    if metric in ("psnr", "shadow-noise"):
        return f"{v:.2f}"
    if metric in ("loe", "white-point", "black-point", "clipped-luma", "black-luma"):
        return f"{v:.1f}"
    return f"{v:.4f}"


def _markdown(result: EvalResult, summary: dict) -> str:
    proto = PROTOCOLS[result.protocol]
    levels = []
    for per in summary.values():
        for lv in per:
            if lv not in levels:
                levels.append(lv)
    levels = sorted(levels, key=_level_key)
    n_items = len(result.items)
    lines = [
        f"# Evaluation: protocol `{result.protocol}`",
        "",
        f"- dataset: `{result.dataset}`",
        f"- protocol: {proto.summary}",
        f"- images: {n_items} from {len({i.scene for i in result.items})} scenes; "
        f"methods: {', '.join(f'`{m}`' for m in result.methods)}",
        f"- colour space and data range: {COLOUR_NOTE}",
        "- level = frame index minus the middle frame index (negative = under-exposed input); "
        "for the `photos` protocol, the sub-folder (group) of the photo.",
        f"- time: {result.seconds:.1f} s ({result.computed} method runs computed, the rest from the cache)",
        "",
    ]
    tone_at = len(lines)
    for metric in result.metrics:
        meta = METRICS[metric]
        arrow = "higher is better" if meta.higher_is_better else "lower is better"
        title = {"fsimc": "FSIMc", "mef-ssim": "MEF-SSIM"}.get(metric, metric.upper())
        lines += [f"## {title} ({meta.description}; {arrow})", ""]
        lines.append("| method | " + " | ".join(_column(lv) for lv in levels) + " | n | n/a | failed |")
        lines.append("|---|" + "---:|" * (len(levels) + 3))
        for method, per in summary.items():
            cells = [_fmt(per[lv][metric]["mean"], metric) if lv in per else "–" for lv in levels]
            alls = per["all"][metric]
            lines.append(f"| {method} | " + " | ".join(cells)
                         + f" | {alls['n']} | {alls.get('na', 0)} | {alls['failed']} |")
        lines.append("")
    lines[tone_at:tone_at] = _tone_markdown(result)
    failures = [r for r in result.records if r.status != "ok"]
    lines += ["## Problems", ""]
    if not result.problems and not failures:
        lines.append("None: every method ran on every image and every score was computed.")
    else:
        lines.append("| image / scene | reason |")
        lines.append("|---|---|")
        for what, why in result.problems:
            lines.append(f"| {what} | {str(why).replace('|', '/')} |")
    lines += ["", "Per-image scores: `per_image.csv`; comparison grids: `grids/`; "
              "PSNR against exposure level: `psnr_vs_level.png`.", ""]
    return "\n".join(lines)


def _column(level: str) -> str:
    if level == "all":
        return "all"
    return f"level {level}" if _level_key(level)[0] == 0 else level


def _json_safe(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else ("inf" if o > 0 else "-inf" if math.isinf(o) else None)
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, (np.floating, np.integer)):
        return _json_safe(o.item())
    if isinstance(o, Path):
        return str(o)
    return o


def _write_text(path: Path, text: str) -> None:
    from ..files import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def write_report(result: EvalResult, *, grids: bool = True, plot: bool = True,
                 grid_height: int = 160) -> dict[str, Path]:
    """Write every report file of :mod:`sice.evaluation.report` into ``result.out_dir``.

    Returns
    -------
    dict
        name -> path of what was written.
    """
    out = Path(result.out_dir)
    summary = summarise(result.records, result.metrics)
    paths = {}

    paths["markdown"] = out / "results.md"
    _write_text(paths["markdown"], _markdown(result, summary))

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "level", "metric", "mean", "std", "n", "failed"])
    for method, per in summary.items():
        for lv, row in per.items():
            for metric, s in row.items():
                w.writerow([method, lv, metric, s["mean"], s["std"], s["n"], s["failed"]])
    paths["csv"] = out / "results.csv"
    _write_text(paths["csv"], buf.getvalue())

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["scene", "index", "count", "level", "frame", "method", "status", "error", "seconds",
                *result.metrics, "output"])
    for r in result.records:
        w.writerow([r.scene, r.index, r.count, r.level, r.frame, r.method, r.status, r.error,
                    r.seconds, *[r.metrics.get(m, "") for m in result.metrics], r.output])
    paths["per_image"] = out / "per_image.csv"
    _write_text(paths["per_image"], buf.getvalue())

    payload = {
        "dataset": result.dataset,
        "protocol": result.protocol,
        "protocol_summary": PROTOCOLS[result.protocol].summary,
        "colour_space": COLOUR_NOTE,
        "methods": result.methods,
        "metrics": {m: METRICS[m].description for m in result.metrics},
        "summary": summary,
        "records": [r.__dict__ for r in result.records],
        "problems": [list(p) for p in result.problems],
        "seconds": result.seconds,
        "computed": result.computed,
    }
    paths["json"] = out / "results.json"
    _write_text(paths["json"], json.dumps(_json_safe(payload), indent=1))

    if plot and "psnr" in result.metrics and any(i.reference for i in result.items):
        paths["plot"] = _plot_psnr(summary, out / "psnr_vs_level.png")
    if grids:
        paths["grids"] = _write_grids(result, out / "grids", grid_height)
    return paths


def _plot_psnr(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (method, per) in enumerate(summary.items()):
        pts = sorted((int(lv), row["psnr"]["mean"]) for lv, row in per.items()
                     if _level_key(lv)[0] == 0 and np.isfinite(row["psnr"]["mean"]))
        # under- and over-exposed levels are separate curves: a line from -1 to +1 would cross
        # a level 0 that protocols other than "all" never score
        label = method
        for side in ([p for p in pts if p[0] < 0], [p for p in pts if p[0] >= 0]):
            if side:
                ax.plot([p[0] for p in side], [p[1] for p in side], marker="o", label=label,
                        color=colours[k % len(colours)])
                label = None  # one legend entry per method
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("input exposure level (frame index - middle index)")
    ax.set_ylabel("mean PSNR (dB) against the reference")
    ax.grid(True, alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from ..files import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())
    return path


def caption(tile: np.ndarray, text: str) -> np.ndarray:
    """A white caption band above ``tile`` (uint8 RGB)."""
    import cv2

    band = np.full((18, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text[: max(4, tile.shape[1] // 7)], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def tile(rgb: np.ndarray, height: int) -> np.ndarray:
    """Float RGB in [0, 1] -> a uint8 tile ``height`` rows high, aspect kept (INTER_AREA)."""
    import cv2

    width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
    small = cv2.resize(np.clip(np.asarray(rgb, np.float32), 0, 1), (width, height), interpolation=cv2.INTER_AREA)
    return (small * 255 + 0.5).astype(np.uint8)


def join_grid(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Tiles (uint8 RGB; equal heights within a row, equal row widths) joined with white gaps."""
    joined = []
    for tiles in rows:
        white = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
        joined.append(np.concatenate([x for t in tiles for x in (t, white)][:-1], axis=1))
    white = np.full((gap, joined[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([x for r in joined for x in (r, white)][:-1], axis=0)


def _thumb(path: Path | None, height: int, width: int | None = None) -> np.ndarray | None:
    import cv2

    from ..io import read_rgb

    if path is None:
        return None
    try:
        img = read_rgb(path)
    except Exception:  # noqa: BLE001 - a missing picture leaves a grey tile, the table says why
        return None
    w = width or max(1, round(img.shape[1] * height / img.shape[0]))
    small = cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)
    return (np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)


def _write_grids(result: EvalResult, folder: Path, height: int) -> Path:
    """One PNG per scene: rows = evaluated frames; columns = input | methods | reference."""
    from ..io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    by_item: dict[str, dict[str, Record]] = defaultdict(dict)
    for r in result.records:
        by_item[r.item_id][r.method] = r
    scenes: dict[str, list] = defaultdict(list)
    if PROTOCOLS[result.protocol].plain_folder:
        # photos: one grid per group and every PHOTO_ROWS photos, not one file per photo
        groups: dict[str, list] = defaultdict(list)
        for item in result.items:
            groups[str(item.level)].append(item)
        for group, items in groups.items():
            for k in range(0, len(items), PHOTO_ROWS):
                scenes[f"{group}_{k // PHOTO_ROWS + 1:02d}"] = items[k:k + PHOTO_ROWS]
    else:
        for item in result.items:
            scenes[item.scene].append(item)
    for scene, items in scenes.items():
        rows = []
        width = None
        for item in items:
            first = _thumb(item.frame, height)
            width = width or (first.shape[1] if first is not None else height * 4 // 3)
            name = (Path(item.scene).name if PROTOCOLS[result.protocol].plain_folder
                    else f"{item.index}/{item.count} ({_level_name(item.level)})")
            tiles = [(f"input {name}", first if first is not None else None)]
            for m in result.methods:
                r = by_item[item.id].get(m)
                ok = r is not None and r.status == "ok" and r.output
                tile = _thumb(result.out_dir / r.output, height, width) if ok else None
                psnr = r.metrics.get("psnr") if ok else None
                cap = m + (f" {psnr:.1f}dB" if isinstance(psnr, float) and math.isfinite(psnr) else "")
                tiles.append((cap if ok else f"{m} FAILED", tile))
            if any(i.reference for i in items):
                tiles.append(("reference", _thumb(item.reference, height, width)))
            row = []
            for cap, tile in tiles:
                if tile is None or tile.shape[:2] != (height, width):
                    tile = np.full((height, width, 3), 128, np.uint8) if tile is None else \
                        _fit(tile, height, width)
                row.append(caption(tile, cap))
            rows.append(row)
        write_image(folder / f"{scene.replace('/', '_')}.png", join_grid(rows))
    return folder


#: Photos per grid file of the ``photos`` protocol.
PHOTO_ROWS = 8


def _fit(tile: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    return cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
