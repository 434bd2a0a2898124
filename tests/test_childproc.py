"""Issue 16 item 6: killing ``sice build-dataset`` (SIGTERM, Ctrl-C or SIGKILL) used to leave
``/tmp/sice-*`` folders and external tools running. Here the external tool is a stand-in
``enfuse`` on PATH that records its pid and sleeps; TMPDIR points at a folder of the test, so
"nothing left" is checked exactly.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sice import childproc

from support.helpers import write_bracket


def _alive(pid: int) -> bool:
    """Running (not a zombie waiting for a reaper that may not exist in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_until(condition, timeout=20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


# ---- run_tool ------------------------------------------------------------------------------------
def test_timeout_kills_the_whole_pipeline(tmp_path):
    pids = tmp_path / "pids"
    script = f"sh -c 'echo $$ >> {pids}; exec sleep 60' | sh -c 'echo $$ >> {pids}; exec sleep 60'"
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        childproc.run_tool(script, shell=True, timeout=1)
    assert time.monotonic() - t0 < 15
    assert len(_pids(pids)) == 2
    assert _wait_until(lambda: not any(_alive(p) for p in _pids(pids)), 5)


def test_run_tool_returns_like_subprocess_run(tmp_path):
    r = childproc.run_tool("cat; echo done >&2; exit 3", shell=True, stdin=b"abc", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"abc", b"done\n")


# ---- a killed process: its tools and scratch folder go with it ---------------------------------
_KILLED = textwrap.dedent("""
    import sys, tempfile
    from sice import childproc
    with childproc.scratch_tempdir() as root:
        open(tempfile.mkdtemp(prefix="sice-enfuse-") + "/frame000.tif", "wb").write(b"x" * 100000)
        print(root, flush=True)
        childproc.run_tool("echo $$ >> " + sys.argv[1] + "; exec sleep 120", shell=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_process_leaves_no_tool_and_no_folder(tmp_path, sig):
    tmp, pids = tmp_path / "tmp", tmp_path / "pids"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(pids)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, TMPDIR=str(tmp)))
    root = Path(proc.stdout.readline().strip())
    assert root.parent == tmp and root.name.startswith("sice-")
    assert _wait_until(lambda: len(_pids(pids)) == 1)
    tool = _pids(pids)[0]
    assert _alive(tool)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert _wait_until(lambda: not _alive(tool)), f"the tool {tool} outlived its parent"
    assert _wait_until(lambda: not list(tmp.iterdir())), list(tmp.rglob("*"))


# ---- the real command --------------------------------------------------------------------------
FAKE_ENFUSE = """#!/bin/sh
echo $$ >> "$SICE_TEST_PIDS"
exec sleep 120
"""


@pytest.mark.parametrize("sig,workers", [(signal.SIGKILL, 1), (signal.SIGKILL, 2), (signal.SIGTERM, 1),
                                         (signal.SIGTERM, 2)])
def test_build_dataset_killed_leaves_no_enfuse_and_no_temp_folder(tmp_path, sig, workers):
    bin_dir, tmp, pids = tmp_path / "bin", tmp_path / "tmp", tmp_path / "pids"
    bin_dir.mkdir()
    tmp.mkdir()
    (bin_dir / "enfuse").write_text(FAKE_ENFUSE)
    (bin_dir / "enfuse").chmod(0o755)
    for k in range(3):
        write_bracket(tmp_path / "seq" / f"{k:03d}", seed=k)
    env = dict(os.environ, TMPDIR=str(tmp), SICE_TEST_PIDS=str(pids), PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "sice", "build-dataset", str(tmp_path / "seq"), "-o",
                             str(tmp_path / "out"), "--generators", "enfuse", "--no-align", "-q",
                             "--workers", str(workers)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_until(lambda: len(_pids(pids)) >= workers, 120), proc.stderr.read() if proc.poll() else ""
        frames = list(tmp.rglob("frame*.tif"))
        assert frames, "the frames for enfuse are not in the watched temp folder"
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    tools = _pids(pids)
    assert _wait_until(lambda: not any(_alive(p) for p in tools)), "enfuse outlived sice build-dataset"
    assert _wait_until(lambda: not list(tmp.iterdir())), sorted(map(str, tmp.rglob("*")))
