"""Issue 16 item 6 and issue 17 item 8 (training's files): run files get the permissions of any
new file, a resumed run clears the temp files of a save that was killed, and the log gives the
error per pixel beside the loss on Caffe's summed scale. (A full disk: test_output_errors.py.)
"""
from __future__ import annotations

import csv
import os

import pytest

from sice.training import load_config, train

from support.helpers import TINY, make_training_dataset


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_run_files_are_0644_under_umask_022_and_resume_clears_killed_saves(tmp_path, umask_022):
    data = make_training_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    cfg = TINY + ["run.steps=6", 'model.name="sice2018"', 'data.aux_cache="run"']
    train(data, run, load_config(None, cfg), progress=False, stop_after=3)
    # what a SIGKILL during a save leaves (sice.files' temp names), and a hidden file of the user's
    for name in (".last.pt.k1ll3d.part", ".config.toml.x9y8z7.part", ".curves.png.q1w2e3.part",
                 ".train_log.csv.zz.part", ".notes.txt"):
        (run / name).write_bytes(b"half a file")
    entry = next((run / "aux_cache").glob("*.npy"))
    (run / "aux_cache" / f".{entry.name}.k1ll3d.part").write_bytes(b"half an array")
    train(data, run, load_config(run / "config.toml"), progress=False, resume=True)
    assert [p.relative_to(run).as_posix() for p in run.rglob(".*")] == [".notes.txt"]
    (run / ".notes.txt").unlink()
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"last.pt", "best.pt", "config.toml", "problems.txt", "train_log.csv", "val_log.csv",
            "curves.png"} <= {p.name for p in files}
    assert any(p.suffix == ".npy" for p in files)  # the aux cache
    # before: mkstemp's 0600 on config.toml, problems.txt, curves.png and the cache
    assert {p.relative_to(run).as_posix(): oct(p.stat().st_mode & 0o777) for p in files
            if p.stat().st_mode & 0o777 != 0o644} == {}


def test_log_gives_the_mean_error_per_pixel_beside_the_summed_loss(tmp_path):
    """With the L1 term alone, Caffe's loss is sum|d| / batch, so it must equal the logged mean
    |d| per pixel and channel times the values in one sample (3 x patch x patch)."""
    data = make_training_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    cfg = load_config(None, TINY + ["run.steps=8", "run.log_every=2", "loss.l2=0", "loss.l1=1"])
    train(data, run, cfg, progress=False)
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    assert [r["step"] for r in rows] == ["2", "4", "6", "8"]
    values_per_sample = 3 * cfg.data.patch_size ** 2
    for r in rows:
        error = float(r["mean_abs_error"])
        assert 0 < error < 1
        assert float(r["loss"]) == pytest.approx(error * values_per_sample, rel=1e-4)


def test_a_log_row_that_cannot_be_written_leaves_the_log_whole(tmp_path, monkeypatch):
    """Logs are rewritten whole through sice.files with each row: a failed write (here fsync,
    as on a full disk) raises naming the log and leaves the previous complete file, no temp."""
    import errno

    import sice.files
    from sice.errors import ImageWriteError
    from sice.training.logs import TRAIN_FIELDS, CsvLog

    log = CsvLog(tmp_path / "train_log.csv", TRAIN_FIELDS)
    log.append({"step": 2, "epoch": 0, "lr": 0.001, "loss": 1.5})
    before = (tmp_path / "train_log.csv").read_bytes()

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sice.files.os, "fsync", full)
    with pytest.raises(ImageWriteError, match=r"train_log\.csv: cannot write: No space left on device"):
        log.append({"step": 4, "epoch": 0, "lr": 0.001, "loss": 1.25})
    assert (tmp_path / "train_log.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["train_log.csv"]
    assert list(csv.reader(before.decode().splitlines())) == [list(TRAIN_FIELDS), ["2", "0", "0.001", "1.5", "", "", ""]]
