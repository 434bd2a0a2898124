"""sice.parallel and --cluster: build-dataset and eval on a local Dask cluster give what one
process gives, a SIGKILLed worker loses and doubles nothing, workers load a model once, and the
single-machine path never imports Dask."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sice.cli.main import cli
from sice.dataset.build import BuildOptions, build_dataset, resolve_generators
from sice.dataset.manifest import read_scene_entries
from sice.evaluation import evaluate, write_report
from sice.io import read_image
from sice.parallel import check_parallel, run_each, worker_state

from support.helpers import labelled_dataset, synthetic_scene, write_bracket

distributed = pytest.importorskip("distributed", reason="the cluster extra (dask[distributed]) is not installed")

SCENES = ("1", "2", "3", "10")


def options(*extra) -> BuildOptions:
    """Three real generators, one of them HDR (and ``extra`` ``(name, fn)`` pairs first), MEF-SSIM,
    photo finish. debevec-reinhard: its camera response is solved with one BLAS thread
    everywhere, so workers (which run BLAS on one thread) give the same candidates."""
    generators, _ = resolve_generators(["mertens", "gff", "debevec-reinhard"])
    return BuildOptions(generators=(*extra, *generators), finish="photo")


@pytest.fixture(scope="module")
def scheduler():
    """A running two-worker Dask cluster, reached by its address like a remote one."""
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def _sequences(root: Path) -> Path:
    for seed, name in enumerate(SCENES):
        write_bracket(root / name, seed=seed)
    return root


def _comparable(value):
    """A manifest without the wall times (they differ between any two runs) and with floats to
    6 significant digits: a candidate's statistics are computed from its float pixels before
    they are saved, and those differ in the last bits between processes with other thread
    settings (the saved PNGs, the MEF-SSIM scores and the labels do not)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in ("seconds", "score_seconds")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and p.parent.name != ".manifest"}


def _assert_same_dataset(one: Path, other: Path) -> None:
    assert _files(one) == _files(other)  # frames, candidates and labels, byte for byte
    manifests = [_comparable(json.loads((d / "manifest.json").read_text())) for d in (one, other)]
    assert manifests[0] == manifests[1]
    assert list(manifests[0]["scenes"]) == list(SCENES)


# ---------------------------------------------------------------------------------- build-dataset

def test_build_on_a_cluster_writes_what_one_process_writes(tmp_path, scheduler):
    src = _sequences(tmp_path / "seq")
    opts = options()
    here = build_dataset(src, tmp_path / "here", opts)
    there = build_dataset(src, tmp_path / "there", opts, cluster=scheduler)

    assert sorted(there.built) == sorted(here.built) == sorted(SCENES) and not there.failed
    _assert_same_dataset(tmp_path / "here", tmp_path / "there")
    # resumed on the cluster like anywhere else: nothing is built again
    again = build_dataset(src, tmp_path / "there", opts, cluster=scheduler)
    assert again.built == [] and sorted(again.resumed) == sorted(SCENES)


def stalls_once(frames, times, *, claim: str):
    """The mean of the frames, except that the first call of the run claims ``claim`` (writes
    its process id there) and waits to be killed."""
    mine = f"{claim}.{os.getpid()}"
    Path(mine).write_text(str(os.getpid()))
    try:
        os.link(mine, claim)  # atomic: exactly one call wins
    except FileExistsError:
        return np.mean(frames, axis=0)
    time.sleep(120)
    raise AssertionError("this worker should have been killed")


def test_a_worker_killed_mid_scene_loses_and_doubles_nothing(tmp_path, scheduler):
    import functools

    src = _sequences(tmp_path / "seq")
    claim = tmp_path / "claim"
    opts = options(("stalls_once", functools.partial(stalls_once, claim=str(claim))))
    killed = []

    def kill_the_claimant():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if claim.exists():
                pid = int(claim.read_text())
                assert pid != os.getpid()  # a worker, not this process
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_claimant)
    killer.start()
    try:
        result = build_dataset(src, tmp_path / "there", opts, cluster=scheduler)
    finally:
        killer.join()

    assert killed, "no worker claimed a scene"
    assert sorted(result.built) == sorted(SCENES) and not result.failed  # each scene exactly once
    entries = read_scene_entries(tmp_path / "there")
    assert sorted(entries) == sorted(SCENES)
    for path in (tmp_path / "there").rglob("*"):
        assert not path.name.endswith(".part")
        if path.suffix in (".png", ".jpg"):
            read_image(path)  # complete: decodes
    # and the same as one process would have built
    build_dataset(src, tmp_path / "here", opts)
    _assert_same_dataset(tmp_path / "here", tmp_path / "there")


# ------------------------------------------------------------------------------------------- eval

def _rows(path: Path, drop=("seconds",)) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(path.open())]


def test_eval_on_a_cluster_gives_the_same_tables(tmp_path, scheduler):
    """Through the CLI, with a model that each worker loads."""
    data = labelled_dataset(tmp_path / "data", scenes=("001", "002", "003"), n=3, h=24, w=32)
    methods = ["identity", "gamma", "he", "default"]
    here = evaluate(data, methods, out_dir=tmp_path / "here", progress=False)
    write_report(here, grids=False)
    result = CliRunner().invoke(cli, ["eval", str(data), "-o", str(tmp_path / "there"), "--no-grids",
                                      "--no-progress", "-m", ",".join(methods), "--cluster", scheduler])
    assert result.exit_code == 0, result.output

    here_dir, there_dir = tmp_path / "here", tmp_path / "there"
    assert (here_dir / "results.csv").read_bytes() == (there_dir / "results.csv").read_bytes()
    assert _rows(here_dir / "per_image.csv") == _rows(there_dir / "per_image.csv")
    outputs = sorted(p.relative_to(here_dir) for p in (here_dir / "cache").rglob("*.png"))
    assert len(outputs) == len(methods) * 3 * 2
    assert all((here_dir / p).read_bytes() == (there_dir / p).read_bytes() for p in outputs)


# ----------------------------------------------------------------------------------- the executor

def loaded_once(item):
    """A task that 'loads a model' through the worker's state; returns (worker pid, model id)."""
    model = worker_state().get("model", lambda: object())
    return os.getpid(), id(model)


def fails_on_two(item):
    if item == 2:
        raise ValueError("two is bad")
    return item * 10


def test_each_worker_loads_a_model_once(scheduler):
    outcomes = list(run_each(loaded_once, range(12), cluster=scheduler))
    assert sorted(o.item for o in outcomes) == list(range(12)) and not any(o.error for o in outcomes)
    models_by_worker: dict = {}
    for o in outcomes:
        models_by_worker.setdefault(o.value[0], set()).add(o.value[1])
    assert os.getpid() not in models_by_worker
    assert all(len(models) == 1 for models in models_by_worker.values())


@pytest.mark.parametrize("how", ["here", "cluster"])
def test_an_item_that_raises_is_one_error_line(how, scheduler):
    kwargs = {"cluster": scheduler} if how == "cluster" else {}
    outcomes = {o.item: o for o in run_each(fails_on_two, [1, 2, 3], **kwargs)}
    assert {k: o.value for k, o in outcomes.items()} == {1: 10, 2: None, 3: 30}
    assert outcomes[2].error == "ValueError: two is bad"


def test_bad_cluster_arguments(tmp_path):
    assert check_parallel(1, " local:3 ") == "local:3"
    for bad in ("local:0", "local:x", "two words", ""):
        with pytest.raises(ValueError, match="cluster"):
            check_parallel(1, bad)
    with pytest.raises(ValueError, match="not both"):
        check_parallel(2, "local:2")
    src = _sequences(tmp_path / "seq")
    runner = CliRunner()
    both = runner.invoke(cli, ["build-dataset", str(src), "-o", str(tmp_path / "ds"), "--workers", "2",
                               "--cluster", "local:2"])
    assert both.exit_code == 2 and "--workers and --cluster exclude each other" in both.output
    zero = runner.invoke(cli, ["eval", str(src), "-o", str(tmp_path / "r"), "--cluster", "local:0"])
    assert zero.exit_code == 2 and "local:N with N >= 1" in zero.output


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_without_dask_a_cluster_is_one_line_naming_the_install(tmp_path):
    src = _sequences(tmp_path / "seq")
    run = _python("import sys; sys.modules['distributed'] = None\n"  # as if not installed
                  "from sice.cli.main import main\n"
                  f"main(['build-dataset', {str(src)!r}, '-o', {str(tmp_path / 'ds')!r}, '--cluster', 'local:2'])",
                  tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == ("sice: error: --cluster needs Dask, which is not installed: "
                                                   "pip install 'sice[cluster]' (or: pip install 'dask[distributed]')")


def test_the_single_machine_path_does_not_import_dask(tmp_path):
    src = _sequences(tmp_path / "seq")
    data = labelled_dataset(tmp_path / "data", scenes=("001",), n=3, h=24, w=32)
    _photos(tmp_path / "photos", 2)
    run = _python(
        "import sys\n"
        "from sice.cli.main import main\n"
        "def run(*args):\n"
        "    try:\n"
        "        main(list(args))\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), (args, exc.code)\n"
        f"run('build-dataset', {str(src)!r}, '-o', {str(tmp_path / 'ds')!r}, '--generators', 'mertens', "
        "'--workers', '2', '-q')\n"
        f"run('eval', {str(data)!r}, '-m', 'gamma', '-o', {str(tmp_path / 'r')!r}, '--no-progress', '--no-grids')\n"
        f"run('enhance', {str(tmp_path / 'photos')!r}, '-o', {str(tmp_path / 'out')!r}, '-q')\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m == 'sice.parallel.dask_cluster' or m.split('.')[0] in ('dask', 'distributed')))",
        tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
    assert len(list((tmp_path / "out").iterdir())) == 2 and (tmp_path / "ds" / "manifest.json").is_file()


# ---------------------------------------------------------------------------------------- enhance

def _photos(folder: Path, count: int, size=(48, 64)) -> list[Path]:
    from sice.io import write_image

    folder.mkdir(parents=True)
    paths = []
    for k in range(count):
        image = synthetic_scene(*size, seed=k) * (0.3 if k % 2 else 0.9)  # under- and over-exposed
        paths.append(write_image(folder / f"{k:02d}.{'png' if k % 3 == 0 else 'jpg'}", image))
    return paths


def _enhance(*args) -> tuple[int, dict, str]:
    result = CliRunner().invoke(cli, ["enhance", *map(str, args), "--json"])
    return result.exit_code, json.loads(result.stdout), result.stderr


def _written(doc: dict) -> dict[str, str]:
    return {Path(f["input"]).name: f["status"] for f in doc["files"]}


def test_enhance_on_a_local_cluster_writes_the_same_bytes(tmp_path):
    src = tmp_path / "in"
    _photos(src, 6)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code_here, here, _ = _enhance(src, "-o", tmp_path / "here", "--compare")
    code, there, stderr = _enhance(src, "-o", tmp_path / "there", "--compare", "--cluster", "local:2")

    assert code == code_here == 1 and "broken.jpg" in stderr
    assert (there["model"], there["backend"], there["written"], there["failed"]) == \
        (here["model"], here["backend"], 6, 1)
    assert _written(there) == _written(here)
    assert [f["error"] for f in there["files"] if f["error"]] == [f["error"] for f in here["files"] if f["error"]]
    assert _files(tmp_path / "here") == _files(tmp_path / "there")  # outputs and compare images, byte for byte
    assert len(_files(tmp_path / "there")) == 12


def test_enhance_loses_nothing_when_a_worker_is_killed(tmp_path, scheduler):
    src = tmp_path / "in"
    photos = _photos(src, 12, size=(240, 320))
    out = tmp_path / "there"
    with distributed.Client(scheduler) as client:
        pids = list(client.run(os.getpid).values())
    at_kill = []

    def kill_one_worker_after_the_first_output():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = [p for p in out.glob("*") if not p.name.startswith(".")] if out.is_dir() else []
            if done:
                os.kill(pids[0], signal.SIGKILL)
                at_kill.append(len(done))
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_after_the_first_output)
    killer.start()
    try:
        code, doc, stderr = _enhance(src, "-o", out, "--cluster", scheduler)
    finally:
        killer.join()

    assert at_kill and at_kill[0] < len(photos), "the worker was not killed mid-run"
    assert code == 0, stderr
    assert doc["written"] == len(photos) and doc["failed"] == 0
    assert sorted(Path(f["input"]).name for f in doc["files"]) == sorted(p.name for p in photos)  # once each
    _enhance(src, "-o", tmp_path / "here")
    assert _files(tmp_path / "here") == _files(out)  # every output complete and the same as one process's
