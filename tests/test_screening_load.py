"""Load test of the screening room (slow): 30 raters with 6 browser connections each.

Run: ``python -m pytest -q -m slow tests/test_screening_load.py -s`` (prints the figures that
docs/screening.md and docs/reliability.md quote). Loopback only; bounded: 30 x 50 scenes.
"""
from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
import statistics
import time
from collections import Counter

import httpx
import pytest
from support.helpers import make_screening_dataset, screening_server

from sice.screening.store import VoteStore

RATERS = 30
CONNECTIONS_PER_RATER = 6  # what a browser opens per host
SCENES = [str(i) for i in range(1, 51)]
GENERATORS = [f"gen{i}" for i in range(6)]
IDLE_SOCKETS = 100  # held open, silent, for the whole run


async def rate_all(url: str, rater: str, seed: int, stats: dict) -> list[tuple[str, str, str | None]]:
    """One rater's session as the page runs it: the scene list, then per scene its detail, every
    candidate and frame image (6 at a time), and a vote; at the end, one changed vote.
    Returns the votes the server acknowledged, as (rater, scene, opaque id or None)."""
    rng = random.Random(seed)
    acked = []
    limits = httpx.Limits(max_connections=CONNECTIONS_PER_RATER, max_keepalive_connections=CONNECTIONS_PER_RATER)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        async def get(path, kind, **kw):
            t0 = time.perf_counter()
            r = await http.get(path, **kw)
            stats["status"][r.status_code] += 1
            stats[kind].append(time.perf_counter() - t0)
            return r

        async def vote(scene, cid):
            t0 = time.perf_counter()
            r = await http.post("/api/votes", json={"rater": rater, "scene": scene, "candidate": cid})
            stats["status"][r.status_code] += 1
            stats["vote"].append(time.perf_counter() - t0)
            if r.status_code == 200:
                acked.append((rater, scene, cid))

        await get("/api/scenes", "json", params={"rater": rater})
        for scene in SCENES:
            r = await get(f"/api/scenes/{scene}", "json", params={"rater": rater})
            if r.status_code != 200:
                continue  # counted; the page would show an error and the rater would retry
            detail = r.json()
            paths = [f"/api/scenes/{scene}/candidates/{c['id']}" for c in detail["candidates"]]
            paths += [f"/api/scenes/{scene}/frames/{f['index']}" for f in detail["frames"]]
            await asyncio.gather(*(get(p, "image") for p in paths))
            choice = rng.choice([c["id"] for c in detail["candidates"]] + [None])
            await vote(scene, choice)
        # change one earlier vote: a new row, not an overwrite
        scene = rng.choice(SCENES)
        r = await get(f"/api/scenes/{scene}", "json", params={"rater": rater})
        if r.status_code == 200:
            await vote(scene, r.json()["candidates"][0]["id"])
    return acked


async def run_room(url: str, raters: int = RATERS) -> tuple[list, dict, float]:
    stats = {"status": Counter(), "image": [], "json": [], "vote": []}
    t0 = time.perf_counter()
    results = await asyncio.gather(*(rate_all(url, f"rater {i:02d}", i, stats) for i in range(raters)))
    return [v for acked in results for v in acked], stats, time.perf_counter() - t0


def figures(stats: dict, seconds: float) -> str:
    def q(xs, p):
        return statistics.quantiles(xs, n=100)[p - 1] if len(xs) > 1 else float("nan")

    total = sum(stats["status"].values())
    lines = [f"{total} requests in {seconds:.1f} s ({total / seconds:.0f}/s); statuses {dict(stats['status'])}"]
    for kind in ("vote", "image", "json"):
        xs = stats[kind]
        lines.append(f"{kind}: n={len(xs)} median {statistics.median(xs) * 1000:.0f} ms, "
                     f"p95 {q(xs, 95) * 1000:.0f} ms, max {max(xs) * 1000:.0f} ms")
    return "\n".join(lines)


@pytest.mark.slow
def test_thirty_raters_six_connections_each(tmp_path):
    ds = make_screening_dataset(tmp_path / "ds", scenes=SCENES, generators=GENERATORS, frames=2, size=(96, 128))
    with screening_server(ds) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE_SOCKETS)]
        try:
            acked, stats, seconds = asyncio.run(run_room(url))
        finally:
            for s in idle:
                s.close()
    print("\n" + figures(stats, seconds))
    statuses = stats["status"]
    assert set(statuses) == {200}, statuses  # no 503, no 5xx, no 4xx
    assert len(acked) == RATERS * (len(SCENES) + 1)
    # Every acknowledged vote is stored exactly once (and nothing else is).
    db = ds / "screening.sqlite"
    store = VoteStore(db)
    name_of = {(s, store.opaque_id(s, g)): g for s in SCENES for g in GENERATORS}
    expected = Counter((r, s, None if c is None else name_of[s, c]) for r, s, c in acked)
    rows = Counter(sqlite3.connect(db).execute("SELECT rater, scene, candidate FROM votes").fetchall())
    assert rows == expected
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


if __name__ == "__main__":  # pragma: no cover - for measuring a server started by hand
    import sys

    acked, stats, seconds = asyncio.run(run_room(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else RATERS))
    print(figures(stats, seconds))
    print(f"acknowledged votes: {len(acked)}")
