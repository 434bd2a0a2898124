"""Real servers for tests: sice's uvicorn config in a thread on an ephemeral loopback port, or a
``sice screen``/``sice serve`` command in a subprocess."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time

import httpx
import uvicorn

from sice.webserver import ServerLimits, server_config


@contextlib.contextmanager
def live_server(app, limits: ServerLimits = ServerLimits()):
    """Serve ``app`` as ``sice screen``/``sice serve`` would (same protocol class, limits and
    timeouts); yields the base URL. The port is bound before the thread starts, so there is
    no race for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, limits=limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def command_server(*args: str, health: str, startup: float = 120):
    """``sice ARGS --port P`` in a subprocess; yields (process, base URL) once ``health`` answers
    200. The process is killed (SIGKILL) on exit if it still runs."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sice", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stdout.read().decode()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + health, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not start in {startup:g} s")
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
