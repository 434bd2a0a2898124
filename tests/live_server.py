"""A real uvicorn server on an ephemeral loopback port, in a thread, with sice's server config."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

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
