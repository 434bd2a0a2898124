"""The run's CSV logs and the PNG of its loss and validation curves.

``train_log.csv``: ``step, epoch, lr, loss, mean_abs_error, samples_per_s, elapsed_s`` (one row
per ``run.log_every`` steps, means over them). ``loss`` is the training objective on Caffe's
scale (summed over each image's pixels, divided by the batch); ``mean_abs_error`` is the mean
``|prediction - label|`` per pixel and channel, in [0, 1] units, comparable across patch sizes. ``val_log.csv``: ``step, epoch, psnr, ssim,
images``. ``curves.png`` is redrawn from both during the run (matplotlib's Agg backend: no display
needed) and written atomically, so a viewer never sees half a file.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..errors import SiceError
from ..files import atomic_write_bytes

TRAIN_FIELDS = ("step", "epoch", "lr", "loss", "mean_abs_error", "samples_per_s", "elapsed_s")
VAL_FIELDS = ("step", "epoch", "psnr", "ssim", "images")


class CsvLog:
    """Append-only CSV with a header; :meth:`truncate_after` drops rows past a resumed step."""

    def __init__(self, path: os.PathLike | str, fields: tuple[str, ...]):
        self.path = Path(path)
        self.fields = fields
        if not self.path.exists():
            self._write(fields, "w")

    def append(self, row: dict) -> None:
        self._write([_fmt(row.get(k, "")) for k in self.fields], "a")

    def _write(self, values: list, mode: str) -> None:
        try:
            with open(self.path, mode, newline="") as f:
                csv.writer(f).writerow(values)
        except OSError as exc:  # a full disk fails in write() or close(), where no file name is attached
            raise SiceError(f"{self.path}: cannot write: {exc.strerror or exc}") from None

    def rows(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """Keep rows with ``step <= step``: a run that crashed after its last checkpoint logged
        steps that the resumed run repeats."""
        rows = [r for r in self.rows() if int(float(r["step"])) <= step]
        text = io.StringIO(newline="")
        w = csv.writer(text)
        w.writerow(self.fields)
        for r in rows:
            w.writerow([r.get(k, "") for k in self.fields])
        atomic_write_bytes(self.path, text.getvalue().encode("utf-8"))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _column(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def plot_curves(train_csv: os.PathLike | str, val_csv: os.PathLike | str, out_png: os.PathLike | str,
                *, title: str = "") -> Path:
    """Draw training loss (log scale) and validation PSNR/SSIM against the step into ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = CsvLog(train_csv, TRAIN_FIELDS).rows() if Path(train_csv).exists() else []
    val = CsvLog(val_csv, VAL_FIELDS).rows() if Path(val_csv).exists() else []
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
