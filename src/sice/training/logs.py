"""What a run writes in its folder (rank 0 only): config, problems, CSV logs and their curves.

``train_log.csv``: ``step, epoch, lr, loss, mean_abs_error, samples_per_s, elapsed_s`` (one row
per ``run.log_every`` steps, means over them). ``loss`` is the training objective on Caffe's
scale (summed over each image's pixels, divided by the batch); ``mean_abs_error`` is the mean
``|prediction - label|`` per pixel and channel, in [0, 1] units, comparable across patch sizes.
``val_log.csv``: ``step, epoch, psnr, ssim, images``. ``curves.png`` is redrawn from both during
the run (matplotlib's Agg backend: no display needed).

Every file, a log after each new row included, is written whole through :mod:`sice.files`, so
a reader never sees half a file; a run killed while writing leaves only a hidden
``.<name>.<random>.part``, which :meth:`RunFiles.clear_stale_parts` removes on the next start.
"""
from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

from ..files import atomic_write_bytes, remove_stale_parts

TRAIN_FIELDS = ("step", "epoch", "lr", "loss", "mean_abs_error", "samples_per_s", "elapsed_s")
VAL_FIELDS = ("step", "epoch", "psnr", "ssim", "images")

#: The files a run writes in its folder.
RUN_FILES = ("last.pt", "best.pt", "config.toml", "problems.txt", "train_log.csv", "val_log.csv", "curves.png")
#: The run's own cache of aux decompositions (``data.aux_cache = "run"``), a subfolder.
AUX_CACHE = "aux_cache"


class CsvLog:
    """A CSV file with a header that grows by whole rows; :meth:`truncate_after` drops rows
    past a resumed step. The file is rewritten atomically with each row (logs are small)."""

    def __init__(self, path: os.PathLike | str, fields: tuple[str, ...]):
        self.path = Path(path)
        self.fields = fields
        if self.path.exists():
            self._data = self.path.read_bytes()
        else:
            self._data = b""
            self._add([fields])

    def append(self, row: dict) -> None:
        self._add([[_fmt(row.get(k, "")) for k in self.fields]])

    def rows(self) -> list[dict]:
        return read_log(self.path)

    def truncate_after(self, step: int) -> None:
        """Keep rows with ``step <= step``: a run that crashed after its last checkpoint logged
        steps that the resumed run repeats."""
        kept = [r for r in self.rows() if int(float(r["step"])) <= step]
        self._data = b""
        self._add([self.fields, *([r.get(k, "") for k in self.fields] for r in kept)])

    def _add(self, rows) -> None:
        text = io.StringIO(newline="")
        csv.writer(text).writerows(rows)
        self._data += text.getvalue().encode("utf-8")
        atomic_write_bytes(self.path, self._data)


def read_log(path: os.PathLike | str) -> list[dict]:
    """The rows of a run's CSV log as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


class RunFiles:
    """The run folder as rank 0 writes it.

    Parameters
    ----------
    run_dir : Path
    plot_every_s : float
        Least time between two drawings of ``curves.png`` (drawing costs about a second on a
        CPU); :meth:`plot` with ``force`` draws anyway.
    """

    def __init__(self, run_dir: os.PathLike | str, *, plot_every_s: float = 30.0):
        self.run_dir = Path(run_dir)
        self.plot_every_s = plot_every_s
        self.train_log: CsvLog | None = None
        self.val_log: CsvLog | None = None
        self._last_plot = 0.0

    def clear_stale_parts(self) -> None:
        """Create the folder and delete the temp files of a run killed while writing (never
        outputs: they are renamed into place only when complete), in it and in its own aux cache."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(self.run_dir, RUN_FILES)
        remove_stale_parts(self.run_dir / AUX_CACHE)  # every file there is this run's

    def write_config(self, text: str) -> None:
        atomic_write_bytes(self.run_dir / "config.toml", text.encode("utf-8"))

    def write_problems(self, problems: list[tuple[str, str]]) -> None:
        atomic_write_bytes(self.run_dir / "problems.txt", "".join(f"{k}\t{w}\n" for k, w in problems).encode("utf-8"))

    def open_logs(self, resume_step: int | None = None) -> None:
        """Open (create) both logs; when resuming at ``resume_step``, drop their rows past it."""
        self.train_log = CsvLog(self.run_dir / "train_log.csv", TRAIN_FIELDS)
        self.val_log = CsvLog(self.run_dir / "val_log.csv", VAL_FIELDS)
        if resume_step is not None:
            self.train_log.truncate_after(resume_step)
            self.val_log.truncate_after(resume_step)
        self._last_plot = time.monotonic() - self.plot_every_s / 2  # first drawing soon, not at once

    def plot(self, title: str, *, force: bool = False) -> None:
        """Redraw ``curves.png`` if ``plot_every_s`` has passed since the last drawing (or ``force``)."""
        if force or time.monotonic() - self._last_plot > self.plot_every_s:
            plot_curves(self.run_dir / "train_log.csv", self.run_dir / "val_log.csv", self.run_dir / "curves.png",
                        title=title)
            self._last_plot = time.monotonic()


def _column(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def plot_curves(train_csv: os.PathLike | str, val_csv: os.PathLike | str, out_png: os.PathLike | str,
                *, title: str = "") -> Path:
    """Draw training loss (log scale) and validation PSNR/SSIM against the step into ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = read_log(train_csv) if Path(train_csv).exists() else []
    val = read_log(val_csv) if Path(val_csv).exists() else []
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot(_column(train, "step"), _column(train, "loss"), lw=1)
        if all(v > 0 for v in _column(train, "loss")):
            ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    ax_loss.grid(alpha=0.3)
    if val:
        steps = _column(val, "step")
        ax_psnr.plot(steps, _column(val, "psnr"), "o-", color="tab:blue", label="PSNR")
        ax_ssim = ax_psnr.twinx()
        ax_ssim.plot(steps, _column(val, "ssim"), "s--", color="tab:orange", label="SSIM")
        ax_ssim.set_ylabel("validation SSIM", color="tab:orange")
    ax_psnr.set(xlabel="step", ylabel="validation PSNR (dB)", title="validation")
    ax_psnr.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    data = io.BytesIO()
    try:
        fig.savefig(data, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(out_png, data.getvalue())
    return out_png
