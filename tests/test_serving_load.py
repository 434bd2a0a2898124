"""Load test of ``sice serve`` (slow): many clients at once against the real command.

Run: ``python -m pytest -q -m slow tests/test_serving_load.py -s`` (prints the figures that
docs/serving.md quotes). Loopback only; bounded: 32 clients x 2 photos.
"""
from __future__ import annotations

import asyncio
import socket
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from support.helpers import synthetic_scene
from support.live_server import command_server
from PIL import Image

from sice.enhancement import Enhancer, enhance_to_bytes

CLIENTS = 32
PHOTOS_PER_CLIENT = 2
WORKERS = 2
QUEUE = 16
IDLE_SOCKETS = 200
SIZE = (768, 1024)  # h, w: a 0.8 MP photo


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def client(url: str, photos: list[bytes], latencies: list, statuses: list, replies: list) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        for body in photos:
            t0 = time.perf_counter()
            r = await http.post("/enhance", content=body, headers={"content-type": "image/jpeg"})
            latencies.append(time.perf_counter() - t0)
            statuses.append(r.status_code)
            replies.append((body, r.content))


def q(xs, p):
    return statistics.quantiles(xs, n=100)[p - 1]


@pytest.mark.slow
def test_many_clients_queue_and_all_get_their_photo(tmp_path):
    rng = np.random.default_rng(0)
    bodies = []
    for i in range(8):  # 8 different dark photos
        px = (synthetic_scene(*SIZE, seed=i) ** 2.2 * rng.uniform(40, 120)).astype(np.uint8)
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(px).save(path, quality=int(rng.integers(70, 96)))
        bodies.append(path.read_bytes())
    # What `sice enhance` produces for each, computed here with the library: the replies must match.
    enhancer = Enhancer()
    expected = {}
    for i, body in enumerate(bodies):
        expected[body] = enhance_to_bytes(tmp_path / f"{i}.jpg", enhancer=enhancer)[0]

    with command_server("serve", "--workers", str(WORKERS), "--queue", str(QUEUE), health="/health") as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        # baseline from the same run: one client, one photo at a time
        sequential = []
        with httpx.Client(base_url=url, timeout=300) as http:
            for body in bodies:
                t0 = time.perf_counter()
                r = http.post("/enhance", content=body)
                sequential.append(time.perf_counter() - t0)
                assert r.status_code == 200 and r.content == expected[body]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE_SOCKETS)]
        latencies, statuses, replies = [], [], []
        t0 = time.perf_counter()
        try:
            async def room():
                await asyncio.gather(*(client(url, [bodies[(c + k) % len(bodies)] for k in range(PHOTOS_PER_CLIENT)],
                                              latencies, statuses, replies) for c in range(CLIENTS)))
            asyncio.run(room())
        finally:
            for s in idle:
                s.close()
        seconds = time.perf_counter() - t0
        rss = peak_rss_mib(proc.pid)
    n = CLIENTS * PHOTOS_PER_CLIENT
    seq_rate = len(sequential) / sum(sequential)
    print(f"\nsequential: {len(sequential)} photos, {statistics.mean(sequential) * 1000:.0f} ms each "
          f"({seq_rate:.2f} photos/s)")
    print(f"{CLIENTS} clients x {PHOTOS_PER_CLIENT} photos ({WORKERS} workers, queue {QUEUE}, {IDLE_SOCKETS} idle "
          f"sockets): {n} photos in {seconds:.1f} s ({n / seconds:.2f} photos/s, {n / seconds / seq_rate:.2f}x "
          f"sequential); latency median {statistics.median(latencies):.2f} s, p95 {q(latencies, 95):.2f} s, "
          f"max {max(latencies):.2f} s; statuses {sorted(set(statuses))}; server peak RSS {rss:.0f} MiB")
    assert statuses == [200] * n  # no 503: the 14 clients beyond workers + queue waited their turn
    assert all(reply == expected[body] for body, reply in replies)  # each got its own photo, enhanced
