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

import pytest
from click.testing import CliRunner

from sice.cli.main import cli
from sice.dataset.build import build_dataset, read_scene_entries
from sice.evaluation import evaluate, write_report
from sice.io import read_image
from sice.parallel import check_parallel, run_each, worker_state

from test_dataset_build import mean_fusion, middle_frame, options, write_bracket
from test_evaluation import _built_dataset

distributed = pytest.importorskip("distributed", reason="the cluster extra (dask[distributed]) is not installed")

SCENES = ("1", "2", "3", "10")


@pytest.fixture(scope="module")
def scheduler():
    """A running two-worker Dask cluster, reached by its address like a remote one."""
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def _sequences(root: Path) -> Path:
    for seed, name in enumerate(SCENES):
        write_bracket(root / name, seed=seed, size=(32, 40))
    return root


def _without_timings(value):
    """A manifest with the wall times left out (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in ("seconds", "score_seconds")}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and p.parent.name != ".manifest"}


def _assert_same_dataset(one: Path, other: Path) -> None:
    assert _files(one) == _files(other)  # frames, candidates and labels, byte for byte
    manifests = [_without_timings(json.loads((d / "manifest.json").read_text())) for d in (one, other)]
    assert manifests[0] == manifests[1]
    assert list(manifests[0]["scenes"]) == list(SCENES)


# ---------------------------------------------------------------------------------- build-dataset

def test_build_on_a_cluster_writes_what_one_process_writes(tmp_path, scheduler):
    src = _sequences(tmp_path / "seq")
    opts = options(mean_fusion, middle_frame, finish="photo")
    here = build_dataset(src, tmp_path / "here", opts)
    there = build_dataset(src, tmp_path / "there", opts, cluster=scheduler)

    assert sorted(there.built) == sorted(here.built) == sorted(SCENES) and not there.failed
    _assert_same_dataset(tmp_path / "here", tmp_path / "there")
    # resumed on the cluster like anywhere else: nothing is built again
    again = build_dataset(src, tmp_path / "there", opts, cluster=scheduler)
    assert again.built == [] and sorted(again.resumed) == sorted(SCENES)


def stalls_once(frames, times, *, claim: str):
    """mean_fusion, except that the first call of the run claims ``claim`` (writes its process
    id there) and waits to be killed."""
    mine = f"{claim}.{os.getpid()}"
    Path(mine).write_text(str(os.getpid()))
    try:
        os.link(mine, claim)  # atomic: exactly one call wins
    except FileExistsError:
        return mean_fusion(frames, times)
    time.sleep(120)
    raise AssertionError("this worker should have been killed")


def test_a_worker_killed_mid_scene_loses_and_doubles_nothing(tmp_path, scheduler):
    import functools

    src = _sequences(tmp_path / "seq")
    claim = tmp_path / "claim"
    opts = options(middle_frame)
    opts.generators = (("stalls_once", functools.partial(stalls_once, claim=str(claim))), *opts.generators)
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
    data = _built_dataset(tmp_path / "data", scenes=("001", "002", "003"), n=3, h=24, w=32)
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
    data = _built_dataset(tmp_path / "data", scenes=("001",), n=3, h=24, w=32)
    run = _python(
        "import sys\n"
        "from sice.dataset.build import build_dataset\n"
        "from sice.evaluation import evaluate\n"
        "from test_dataset_build import options\n"
        f"assert build_dataset({str(src)!r}, {str(tmp_path / 'ds')!r}, options(), workers=2).built\n"
        f"assert evaluate({str(data)!r}, ['gamma'], out_dir={str(tmp_path / 'r')!r}, progress=False).records\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m == 'sice.parallel.dask_cluster' or m.split('.')[0] in ('dask', 'distributed')))",
        tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
