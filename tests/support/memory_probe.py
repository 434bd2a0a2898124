"""Peak memory of a piece of code run in a fresh interpreter (for tests where memory is the point)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_PRELUDE = textwrap.dedent("""
    import json, sys

    def peak_mib():
        # VmHWM: this process image's own peak RSS. getrusage's ru_maxrss would start at the
        # parent's size (Linux carries it across fork and exec), hiding any growth below it.
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
""")


def run_measured(setup: str, body: str, *args: str, timeout: float = 300) -> dict:
    """Run ``setup`` (imports), then ``body`` (which sets a dict ``result``) in a new Python.

    Returns ``result`` plus ``before`` and ``after``: the peak RSS in MiB after ``setup`` and
    after ``body``. ``sys.argv[1:]`` holds ``args``.
    """
    code = "\n".join([_PRELUDE, textwrap.dedent(setup), "before = peak_mib()", textwrap.dedent(body),
                      "result.update(before=before, after=peak_mib())", "print(json.dumps(result))"])
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])
