"""The run's CSV logs and the PNG of its loss and validation curves.

``train_log.csv``: ``step, epoch, lr, loss, samples_per_s, elapsed_s`` (one row per
``run.log_every`` steps, the mean loss over them). ``val_log.csv``: ``step, epoch, psnr, ssim,
images``. ``curves.png`` is redrawn from both during the run (matplotlib's Agg backend: no display
needed) and written atomically, so a viewer never sees half a file.
"""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

TRAIN_FIELDS = ("step", "epoch", "lr", "loss", "samples_per_s", "elapsed_s")
VAL_FIELDS = ("step", "epoch", "psnr", "ssim", "images")


class CsvLog:
    """Append-only CSV with a header; :meth:`truncate_after` drops rows past a resumed step."""

    def __init__(self, path: os.PathLike | str, fields: tuple[str, ...]):
        self.path = Path(path)
        self.fields = fields
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(fields)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in self.fields])

    def rows(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """Keep rows with ``step <= step``: a run that crashed after its last checkpoint logged
        steps that the resumed run repeats."""
        rows = [r for r in self.rows() if int(float(r["step"])) <= step]
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.fields)
            for r in rows:
                w.writerow([r.get(k, "") for k in self.fields])
        os.replace(tmp, self.path)


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
    fd, tmp = tempfile.mkstemp(prefix=f".{out_png.stem}.", suffix=".png", dir=out_png.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_png
