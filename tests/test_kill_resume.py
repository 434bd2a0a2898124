"""Issue 9: SIGKILL ``sice build-dataset`` and ``sice train`` in the middle, then run them again.

While each command runs, every visible file it has written is checked again whenever it changes
(images decode at full size, JSON and TOML parse, checkpoints load): no half-written output at
any moment. After the kill, a re-run must finish the job without redoing finished work.
(``sice enhance`` has the same test in test_hostile_inputs.py.)
"""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from sice.io import read_image

from support.helpers import TINY, make_training_dataset, write_bracket

SIZE = (64, 96)


def _visible_files(root: Path) -> list[Path]:
    # Temp files are hidden (".<name>.<random>.part/.tmp"); everything else counts as output.
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


class _Watcher:
    """Checks every visible file under ``root`` each time it changes (size or mtime)."""

    def __init__(self, root: Path, check):
        self.root, self.check, self.seen, self.checked = root, check, {}, 0

    def poll(self) -> None:
        if not self.root.exists():
            return
        for p in _visible_files(self.root):
            try:
                st = p.stat()
            except FileNotFoundError:  # replaced between listing and stat: seen next time
                continue
            key = (st.st_size, st.st_mtime_ns)
            if self.seen.get(p) != key:
                self.check(p)
                self.seen[p] = key
                self.checked += 1


def _run_watched(cmd, watcher: _Watcher, ready=None, timeout=300) -> tuple[int, str, str]:
    """Run ``cmd`` checking its outputs continuously; SIGKILL it once ``ready()`` holds (it must
    not finish before). Returns (exit status, stdout, stderr)."""
    out, err = Path(watcher.root.parent / "stdout.txt"), Path(watcher.root.parent / "stderr.txt")
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                watcher.poll()
                if ready is not None and ready():
                    proc.send_signal(signal.SIGKILL)
                    break
                if proc.poll() is not None:
                    assert ready is None, f"finished before it could be killed: {err.read_text()}"
                    break
                time.sleep(0.02)
            else:
                pytest.fail(f"{cmd[3]} did not finish or reach the kill point within {timeout} s")
        finally:
            proc.kill()
            proc.wait()
    watcher.poll()  # what the process left is complete too
    if ready is not None:
        assert proc.returncode == -signal.SIGKILL
    return proc.returncode, out.read_text(), err.read_text()


def _mtimes(paths) -> dict:
    return {p: p.stat().st_mtime_ns for p in paths}


# --------------------------------------------------------------------------------------------
# sice build-dataset
# --------------------------------------------------------------------------------------------
def _check_dataset_file(p: Path) -> None:
    if p.suffix in (".png", ".jpg"):
        assert read_image(p).pixels.shape[:2] == SIZE, p
    elif p.suffix == ".json":
        json.loads(p.read_text())
    else:
        raise AssertionError(f"unexpected output {p}")


def test_build_dataset_killed_then_rerun(tmp_path):
    src, out = tmp_path / "seq", tmp_path / "ds"
    scenes = [f"s{i}" for i in range(6)]
    for i, name in enumerate(scenes):
        write_bracket(src / name, size=SIZE, seed=i)
    cmd = [sys.executable, "-m", "sice", "build-dataset", str(src), "-o", str(out), "--generators", "mertens",
           "--no-ecc", "-q"]
    entries = out / ".manifest"
    watcher = _Watcher(out, _check_dataset_file)

    _run_watched(cmd, watcher, lambda: entries.is_dir() and len(list(entries.glob("*.json"))) >= 2)

    finished = sorted(p.stem for p in entries.glob("*.json"))
    assert 2 <= len(finished) < len(scenes)
    assert watcher.checked >= 2 * (3 + 2)  # frames, candidate, label and entry were each checked
    # a finished scene is whole: frames, every candidate, label, entry
    for name in finished:
        entry = json.loads((entries / f"{name}.json").read_text())
        for f in entry["frames"]:
            assert (out / f["file"]).is_file()
        assert (out / "Label" / f"{name}.png").is_file() and (out / "candidates" / name / "mertens.png").is_file()
    done_files = [p for p in _visible_files(out) if any(part in finished for part in
                                                        (p.stem, p.parent.name))]
    before = _mtimes(done_files)

    code, _, stderr = _run_watched(cmd, watcher)

    assert code == 0, stderr
    assert f"{len(scenes) - len(finished)} scenes built," in stderr and f"{len(finished)} already done" in stderr
    assert _mtimes(done_files) == before  # finished scenes were not rebuilt
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["scenes"]) == scenes and not manifest["failed"]
    assert sorted(p.stem for p in (out / "Label").glob("*.png")) == scenes
    assert not list(out.rglob(".*.part"))  # the killed run's temp files were cleared


# --------------------------------------------------------------------------------------------
# sice train
# --------------------------------------------------------------------------------------------
TOTAL = 80
TRAIN_SET = ['model.name="sice2018-residual"', "model.kwargs.width=8", "data.patch_size=16", "data.batch_size=2",
             "run.log_every=5", "run.checkpoint_every=5", "run.val_every=1000", "run.plot_every_s=1000",
             "run.threads=1", 'optim.name="adam"', "optim.lr=1e-3"]


def _check_run_file(p: Path) -> None:
    from sice.training import read_training_checkpoint

    if p.suffix == ".pt":
        payload = read_training_checkpoint(p)  # raises ModelError on a corrupt file
        assert payload["step"] % 5 == 0 or payload["step"] == TOTAL, (p, payload["step"])
    elif p.suffix == ".toml":
        tomllib.loads(p.read_text())
    elif p.suffix == ".csv":
        rows = list(csv.reader(p.open()))
        assert all(len(r) == len(rows[0]) for r in rows), p
    elif p.suffix == ".png":
        assert read_image(p).pixels.size
    elif p.suffix != ".txt":
        raise AssertionError(f"unexpected output {p}")


def _step_of(path: Path) -> int:
    from sice.training import read_training_checkpoint

    return int(read_training_checkpoint(path)["step"])


def test_train_killed_after_a_checkpoint_then_resumed(tmp_path):
    data = make_training_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    sets = [a for s in TRAIN_SET for a in ("--set", s)]
    cmd = [sys.executable, "-m", "sice", "train", str(data), "-o", str(run), "--steps", str(TOTAL), "--no-progress",
           *sets]
    watcher = _Watcher(run, _check_run_file)

    _run_watched(cmd, watcher, lambda: (run / "last.pt").exists())

    step = _step_of(run / "last.pt")
    assert 5 <= step < TOTAL
    assert watcher.checked >= 3  # config.toml, last.pt, train_log.csv at least
    log_before = (run / "train_log.csv").read_text().splitlines()
    kept = [line for line in log_before[1:] if int(line.split(",")[0]) <= step]

    code, stdout, stderr = _run_watched([sys.executable, "-m", "sice", "train", str(data), "-o", str(run),
                                         "--resume", "--no-progress"], watcher)

    assert code == 0, stderr
    assert f"done: step {TOTAL}" in stdout
    assert _step_of(run / "last.pt") == TOTAL
    log_after = (run / "train_log.csv").read_text().splitlines()
    # Rows up to the checkpoint are the killed run's own (not recomputed: their timings would
    # differ); after it, every log step appears once, up to the end.
    assert log_after[1:1 + len(kept)] == kept
    assert [int(line.split(",")[0]) for line in log_after[1:]] == list(range(5, TOTAL + 1, 5))


@pytest.mark.slow
def test_resume_clears_temp_files_of_a_killed_save(tmp_path):
    from sice.training import load_config, train


    data = make_training_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    train(data, run, load_config(None, TINY + ["run.steps=4"]), progress=False, stop_after=2)
    # what a SIGKILL during a save leaves: sice.files' temp name, in the run and in its aux cache
    (run / ".last.pt.k1ll3d.part").write_bytes(b"half a checkpoint")
    (run / "aux_cache").mkdir()
    (run / "aux_cache" / ".0123abcd.npy.k1ll3d.part").write_bytes(b"half an array")
    train(data, run, load_config(run / "config.toml"), progress=False, resume=True)
    assert not list(run.rglob(".*"))
