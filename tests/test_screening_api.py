"""The screening web app over HTTP: blind candidates, votes, resume, and the security edges."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
import warnings
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from sice.errors import DatasetError
from sice.io import write_image
from sice.screening.store import VoteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's notice that TestClient will move to httpx2
    from fastapi.testclient import TestClient

from sice.cli.screen import command as screen_command
from sice.cli.screen import is_loopback
from sice.screening.app import create_app

from support.helpers import (SCREENING_GENERATORS, SCREENING_SCENES, XSS_SCENE, make_screening_dataset,
                             screening_server, synthetic_scene)


@pytest.fixture
def dataset(tmp_path):
    return make_screening_dataset(tmp_path / "ds")


@pytest.fixture
def client(dataset):
    return TestClient(create_app(dataset), base_url="http://127.0.0.1")


def scene_url(scene: str) -> str:
    return "/api/scenes/" + quote(scene, safe="")


def detail(client, scene, rater="Ann"):
    r = client.get(scene_url(scene), params={"rater": rater})
    assert r.status_code == 200, r.text
    return r.json()


def test_page_and_scene_list(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Keyboard shortcuts" in page.text and "<kbd>Enter</kbd>" in page.text  # shortcuts documented
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for static in ["/static/app.js", "/static/style.css"]:
        assert client.get(static).status_code == 200
    r = client.get("/api/scenes", params={"rater": "  Ann "}).json()
    assert r["rater"] == "Ann" and r["total"] == 3 and r["done"] == 0 and r["resume"] == 0
    assert [s["name"] for s in r["scenes"]] == SCREENING_SCENES


def test_candidates_are_blind_and_shuffled_per_rater(client, dataset):
    d = detail(client, "1")
    assert [c["label"] for c in d["candidates"]] == ["A", "B", "C", "D"]
    assert d["index"] == 0 and d["total"] == 3 and d["vote"] == {"voted": False, "candidate": None}
    assert [f["label"] for f in d["frames"]] == ["1.JPG", "2.JPG", "3.JPG"]
    assert detail(client, "1") == d  # the same order every time
    # The ids are the store's keyed hashes of the real names: map back to check the images.
    store = VoteStore(dataset / "screening.sqlite")
    name_of = {store.opaque_id("1", g): g for g in SCREENING_GENERATORS}
    assert sorted(name_of[c["id"]] for c in d["candidates"]) == sorted(SCREENING_GENERATORS)
    for c in d["candidates"]:
        r = client.get(f"/api/scenes/1/candidates/{c['id']}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (dataset / "candidates" / "1" / f"{name_of[c['id']]}.png").read_bytes()
        assert "content-disposition" not in r.headers
    orders = {tuple(c["id"] for c in detail(client, "1", rater)["candidates"]) for rater in "BCDEFG"}
    assert len(orders) > 1  # 4! = 24 orders: seven raters all alike would not be a shuffle
    # Nothing the browser receives names a generator: page, JSON, URLs, headers.
    texts = [client.get("/").text, client.get("/static/app.js").text]
    for scene in SCREENING_SCENES:
        r = client.get(scene_url(scene), params={"rater": "Ann"})
        texts += [r.text, str(r.headers)]
        for c in r.json()["candidates"]:
            texts.append(str(client.get(f"{scene_url(scene)}/candidates/{c['id']}").headers))
    texts.append(client.post("/api/votes", json={"rater": "Ann", "scene": "1", "candidate": d["candidates"][0]["id"]}).text)
    for gen in SCREENING_GENERATORS:
        assert all(gen.split("_")[0] not in t for t in texts), gen


def test_frames_are_served_by_index(client, dataset):
    r = client.get("/api/scenes/2/frames/1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == (dataset / "2" / "2.JPG").read_bytes()
    assert client.get("/api/scenes/2/frames/3").status_code == 404
    assert client.get("/api/scenes/2/frames/-1").status_code == 404


def test_tiff_frames_are_converted_for_the_browser(tmp_path):
    ds = make_screening_dataset(tmp_path / "ds", scenes=["1"], frames=0)
    pixels = (synthetic_scene(20, 30) * 65535).astype(np.uint16)
    write_image(ds / "1" / "1.tif", pixels)
    r = TestClient(create_app(ds), base_url="http://127.0.0.1").get("/api/scenes/1/frames/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG")


def test_vote_change_vote_resume(client, dataset):
    ids = [c["id"] for c in detail(client, "1")["candidates"]]
    r = client.post("/api/votes", json={"rater": "Ann", "scene": "1", "candidate": ids[2]})
    assert r.status_code == 200 and r.json()["done"] == 1 and r.json()["total"] == 3
    assert detail(client, "1")["vote"] == {"voted": True, "candidate": ids[2]}
    assert client.get("/api/scenes", params={"rater": "Ann"}).json()["resume"] == 1
    # change the vote, then "none acceptable" on scene 2
    assert client.post("/api/votes", json={"rater": "Ann", "scene": "1", "candidate": ids[0]}).status_code == 200
    assert client.post("/api/votes", json={"rater": "Ann", "scene": "2", "candidate": None}).status_code == 200
    assert detail(client, "1")["vote"]["candidate"] == ids[0]
    assert detail(client, "2")["vote"] == {"voted": True, "candidate": None}
    listing = client.get("/api/scenes", params={"rater": "Ann"}).json()
    assert listing["resume"] == 2 and listing["done"] == 2
    assert [s["voted"] for s in listing["scenes"]] == [True, True, False]
    # another rater sees nothing of Ann's
    assert client.get("/api/scenes", params={"rater": "Ben"}).json()["done"] == 0
    store = VoteStore(dataset / "screening.sqlite")
    first = next(g for g in SCREENING_GENERATORS if store.opaque_id("1", g) == ids[0])
    assert store.latest_votes() == {("Ann", "1"): first, ("Ann", "2"): None}
    assert len(store.history()) == 3


def test_a_vote_the_database_refuses_is_an_error_not_an_ack(dataset, monkeypatch):
    app = create_app(dataset)
    client = TestClient(app, base_url="http://127.0.0.1")

    def refuse(*args):
        raise DatasetError(f"{app.state.store.path}: cannot record the vote: disk I/O error")

    monkeypatch.setattr(app.state.store, "record", refuse)
    r = client.post("/api/votes", json={"rater": "Ann", "scene": "1", "candidate": None})
    assert r.status_code == 503 and "disk I/O error" in r.json()["detail"]
    assert client.get("/api/scenes", params={"rater": "Ann"}).json()["done"] == 0


@pytest.mark.parametrize("body, status", [
    ({"rater": "Ann", "scene": "nope", "candidate": None}, 404),
    ({"rater": "Ann", "scene": "1", "candidate": "0123456789abcdef"}, 404),
    ({"rater": "", "scene": "1", "candidate": None}, 422),
    ({"rater": "   ", "scene": "1", "candidate": None}, 400),
    ({"rater": "a\x07", "scene": "1", "candidate": None}, 400),
    ({"rater": "Ann", "scene": "1", "candidate": "mertens_zqx"}, 404),  # a name is not an id
    ({"rater": "Ann", "scene": "1"}, 422),
])
def test_bad_votes_are_refused_and_not_stored(client, dataset, body, status):
    assert client.post("/api/votes", json=body).status_code == status
    assert VoteStore(dataset / "screening.sqlite").history() == []


def test_request_size_and_content_type_limits(client, dataset):
    big = '{"rater": "Ann", "scene": "1", "candidate": null, "pad": "' + "x" * 10_000 + '"}'
    assert client.post("/api/votes", content=big, headers={"content-type": "application/json"}).status_code == 413
    # A cross-site form can send text/plain without a CORS preflight: it must not vote.
    ok = '{"rater": "Ann", "scene": "1", "candidate": null}'
    r = client.post("/api/votes", content=ok, headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json() == {"detail": "a vote must be sent as application/json"}
    assert client.get("/api/scenes", params={"rater": "x" * 300}).status_code == 422
    assert VoteStore(dataset / "screening.sqlite").history() == []


@pytest.mark.parametrize("body, message", [
    ('{"rater": NaN, "scene": "1", "candidate": null}', "NaN is not a JSON value"),
    ('{"rater": "Ann", "scene": "1", "candidate": Infinity}', "Infinity is not a JSON value"),
    ('{"rater": "Ann", "scene": "1", "candidate": null, "x": -Infinity}', "-Infinity is not a JSON value"),
    ('{"rater": "Ann", "scene": "1", "candidate": null, "x": 1e999}', "too large for a float"),
    ('{"rater": "Ann\\ud800", "scene": "1", "candidate": null}', "lone UTF-16 surrogate"),
    ('{"rater": "Ann", "scene": "\\udfff", "candidate": null}', "lone UTF-16 surrogate"),
    ('{"rater": "Ann", "scene": "1", "candidate": "\\udc00abc"}', "lone UTF-16 surrogate"),
    ('{"\\ud800": 1, "rater": "Ann", "scene": "1", "candidate": null}', "lone UTF-16 surrogate"),
    (b'{"rater": "Ann\xff", "scene": "1", "candidate": null}', "body is not UTF-8 (invalid byte at offset 14)"),
    ("[" * 2000 + "]" * 2000, "nested too deeply"),
    ('{"rater": "Ann", "scene": "1", "candidate": null', "body is not valid JSON"),
])
def test_votes_must_be_strict_json(client, dataset, body, message):
    # Each of these was a 500 with a traceback (FastAPI echoed NaN in its 422, SQLite could not
    # encode the surrogate): now a 400 whose one-line detail names the problem.
    r = client.post("/api/votes", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"] and "\n" not in r.json()["detail"]
    assert VoteStore(dataset / "screening.sqlite").history() == []
    # A surrogate *pair* is a real character and is fine; so is the rest of JSON.
    ok = '{"rater": "Ann \\ud83d\\ude00", "scene": "1", "candidate": null, "x": [1.5e3, true]}'
    assert client.post("/api/votes", content=ok, headers={"content-type": "application/json"}).status_code == 200
    assert VoteStore(dataset / "screening.sqlite").latest_votes() == {("Ann \U0001F600", "1"): None}


def test_validation_errors_are_one_line_json(client):
    r = client.post("/api/votes", json={"rater": "Ann", "scene": "1", "candidate": 7})
    assert r.status_code == 422 and r.json() == {"detail": "candidate: Input should be a valid string"}
    r = client.post("/api/votes", json=[1, 2])
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = client.get("/api/scenes")  # rater missing
    assert r.status_code == 422 and r.json() == {"detail": "rater: Field required"}


@pytest.mark.parametrize("path", [
    "/api/scenes/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/scenes/..%2F1/frames/0",
    "/api/scenes/%2Fetc%2Fpasswd/frames/0",
    "/api/scenes/..%2Fcandidates%2F1/frames/0",
    "/api/scenes/1/frames/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/scenes/1/candidates/..%2Fmertens_zqx.png",
    "/api/scenes/1/candidates/%2Fetc%2Fpasswd",
    "/api/scenes/Label/frames/0",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2Fetc%2Fpasswd",
    "/static/../store.py",
    "/static/..%2Fstore.py",
    "//etc/passwd",
    "/etc/passwd",
    "/screening.sqlite",
    "/candidates/1/mertens_zqx.png",
])
def test_traversal_and_absolute_paths_get_4xx(client, path):
    r = client.get(path, params={"rater": "Ann"})
    assert 400 <= r.status_code < 500, (path, r.status_code)
    assert b"root:" not in r.content and b"sqlite" not in r.content.lower() and b"import" not in r.content


def test_symlinks_out_of_the_dataset_are_never_served(tmp_path):
    ds = make_screening_dataset(tmp_path / "ds", scenes=["1"])
    outside = tmp_path / "secret"
    outside.mkdir()
    write_image(outside / "leak.png", synthetic_scene(8, 8))
    (outside / "scene").mkdir()
    write_image(outside / "scene" / "x.png", synthetic_scene(8, 8))
    os.symlink(outside / "leak.png", ds / "candidates" / "1" / "leak_zqx.png")    # candidate out
    os.symlink(outside / "leak.png", ds / "1" / "9.JPG")                          # frame out
    os.symlink(outside / "scene", ds / "candidates" / "evil")                      # scene folder out
    os.symlink(ds / "candidates" / "1" / "mertens_zqx.png", ds / "candidates" / "1" / "inside_zqx.png")
    with pytest.warns(UserWarning, match="not served"):
        app = create_app(ds)
    client = TestClient(app, base_url="http://127.0.0.1")
    assert [s["name"] for s in client.get("/api/scenes", params={"rater": "A"}).json()["scenes"]] == ["1"]
    d = detail(client, "1")
    assert len(d["candidates"]) == len(SCREENING_GENERATORS) + 1  # the symlink that stays inside is fine
    assert len(d["frames"]) == 3
    store = VoteStore(ds / "screening.sqlite")
    assert client.get(f"/api/scenes/1/candidates/{store.opaque_id('1', 'leak_zqx')}").status_code == 404
    # A served file swapped for a symlink out after startup is refused when served.
    victim = ds / "candidates" / "1" / "drago_zqx.png"
    victim.unlink()
    os.symlink(outside / "leak.png", victim)
    r = client.get(f"/api/scenes/1/candidates/{store.opaque_id('1', 'drago_zqx')}")
    assert r.status_code == 403 and r.content != (outside / "leak.png").read_bytes()


def test_host_header_must_be_loopback_unless_exposed(dataset):
    app = create_app(dataset)
    assert TestClient(app, base_url="http://127.0.0.1:8765").get("/api/health").status_code == 200
    assert TestClient(app, base_url="http://localhost").get("/api/health").status_code == 200
    # DNS rebinding: evil.example resolves to 127.0.0.1, but its Host header gives it away.
    assert TestClient(app, base_url="http://evil.example").get("/api/health").status_code == 400
    exposed = create_app(dataset, allowed_hosts=None)
    assert TestClient(exposed, base_url="http://192.0.2.7").get("/api/health").status_code == 200


def test_names_reach_the_page_only_as_json(client):
    # The page itself is static: scene names never appear in HTML, only as JSON strings that the
    # script puts into the DOM as text (the browser test checks that it is shown, not run).
    assert "onerror" not in client.get("/").text
    r = client.get("/api/scenes", params={"rater": "Ann"})
    assert r.headers["content-type"] == "application/json"
    assert XSS_SCENE in [s["name"] for s in r.json()["scenes"]]
    assert detail(client, XSS_SCENE)["name"] == XSS_SCENE


def test_cli_warns_when_not_on_loopback(dataset, monkeypatch):
    from sice import webserver

    served = {}
    monkeypatch.setattr(webserver, "run_server", lambda app, **kw: served.update(app=app, **kw))
    out = CliRunner().invoke(screen_command, [str(dataset), "--host", "0.0.0.0", "--port", "9999"])
    assert out.exit_code == 0, out.output
    assert "warning: listening on 0.0.0.0, not on loopback" in out.stderr
    assert served["host"] == "0.0.0.0" and served["port"] == 9999
    assert TestClient(served["app"], base_url="http://192.0.2.7").get("/api/health").status_code == 200
    out = CliRunner().invoke(screen_command, [str(dataset)])
    assert "warning" not in out.stderr and served["host"] == "127.0.0.1"
    assert TestClient(served["app"], base_url="http://192.0.2.7").get("/api/health").status_code == 400
    assert [is_loopback(h) for h in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "0.0.0.0",
                                     "192.168.1.2", "example.org"]] == [True] * 5 + [False] * 3


def test_cli_on_a_folder_without_candidates_is_one_line_error(tmp_path):
    out = CliRunner().invoke(screen_command, [str(tmp_path)])
    assert out.exit_code == 1 and out.stderr.startswith(f"sice: error: {tmp_path}: no candidates/ folder")


# ------------------------------------------------------------------- a real server process
def test_acknowledged_vote_survives_kill_9(dataset):
    with screening_server(dataset) as (proc, url):
        scene = httpx.get(url + "/api/scenes/1", params={"rater": "Ann"}).json()
        acked = []
        for i, c in enumerate(scene["candidates"][:3]):
            r = httpx.post(url + "/api/votes", json={"rater": "Ann", "scene": "1", "candidate": c["id"]})
            assert r.status_code == 200
            acked.append(c["id"])
        r = httpx.post(url + "/api/votes", json={"rater": "Ben", "scene": "2", "candidate": None})
        assert r.status_code == 200
        # Limits of the real server: oversized headers, and a chunked body with no Content-Length.
        assert httpx.get(url + "/api/health", headers={"X-Pad": "x" * 20_000}).status_code == 431
        assert httpx.get(url + "/api/scenes", params={"rater": "A", "pad": "x" * 9000}).status_code == 431
        chunks = (b'{"rater": "Cy", "scene": "1", "candidate": null, "pad": "' if i == 0 else b"x" * 1000
                  for i in range(20))
        r = httpx.post(url + "/api/votes", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no checkpoint: only what was committed
        assert proc.wait() == -signal.SIGKILL
    db = dataset / "screening.sqlite"
    rows = sqlite3.connect(db).execute("SELECT rater, scene, candidate FROM votes ORDER BY id").fetchall()
    store = VoteStore(db)
    name_of = {store.opaque_id("1", g): g for g in SCREENING_GENERATORS}
    assert rows == [("Ann", "1", name_of[i]) for i in acked] + [("Ben", "2", None)]


# ------------------------------------------------------------------- the vote database's file
@pytest.mark.parametrize("planted", ["screening.sqlite", "screening.sqlite-wal", "screening.sqlite-shm",
                                     "screening.sqlite-journal"])
def test_a_database_symlink_planted_in_the_dataset_is_refused(tmp_path, planted):
    ds = make_screening_dataset(tmp_path / "ds", scenes=["1"])
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim"
    os.symlink(target, ds / planted)  # dangling: SQLite would create the file out there
    with pytest.raises(DatasetError, match=f"^{ds / planted}: is a symbolic link; refusing to open"):
        create_app(ds)
    out = CliRunner().invoke(screen_command, [str(ds)])
    assert out.exit_code == 1 and out.stderr.startswith(f"sice: error: {ds / planted}: is a symbolic link")
    assert out.stderr.count("\n") == 1
    with pytest.raises(DatasetError, match="is a symbolic link"):  # --results reads through the same store
        VoteStore(ds / "screening.sqlite")
    assert list(outside.iterdir()) == []
    # A link to an existing database outside is refused too, and that database is not touched.
    (ds / planted).unlink()
    if planted == "screening.sqlite":
        VoteStore(target).record("Old", "1", None)
        before = target.read_bytes()
        os.symlink(target, ds / planted)
        with pytest.raises(DatasetError, match="is a symbolic link"):
            create_app(ds)
        assert target.read_bytes() == before


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_database_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    ds = make_screening_dataset(tmp_path / "ds", scenes=["1"])
    db = ds / "screening.sqlite"
    db.mkdir() if kind == "folder" else os.mkfifo(db)  # a FIFO would hang SQLite's open
    with pytest.raises(DatasetError, match=f"^{db}: is not a regular file"):
        create_app(ds)


def test_a_database_swapped_for_a_symlink_while_serving_stores_nothing_outside(tmp_path):
    ds = make_screening_dataset(tmp_path / "ds", scenes=["1"])
    client = TestClient(create_app(ds), base_url="http://127.0.0.1")
    vote = {"rater": "Ann", "scene": "1", "candidate": None}
    assert client.post("/api/votes", json=vote).status_code == 200
    outside = tmp_path / "elsewhere.sqlite"
    os.replace(ds / "screening.sqlite", outside)
    os.symlink(outside, ds / "screening.sqlite")
    size = outside.stat().st_size
    r = client.post("/api/votes", json=vote)
    assert r.status_code == 503 and "is a symbolic link" in r.json()["detail"]
    assert outside.stat().st_size == size and not (tmp_path / "elsewhere.sqlite-wal").exists()


# ------------------------------------------------------------------- a real server's connections
def test_idle_and_slow_sockets_do_not_block_voting_and_are_closed(dataset):
    """200 idle TCP connections (the old cap was 64, and uvicorn never closed a silent one)
    and 20 that stall half-way through their request head: votes still go through at once, and
    the server drops the stalled connections after its header timeout."""
    from support.live_server import live_server

    from sice.webserver import ServerLimits

    limits = ServerLimits(header_timeout=1.5)
    with live_server(create_app(dataset), limits) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for s in slow:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                t0 = time.monotonic()
                ids = [c["id"] for c in http.get("/api/scenes/1", params={"rater": "Ann"}).json()["candidates"]]
                for cid in ids:
                    r = http.post("/api/votes", json={"rater": "Ann", "scene": "1", "candidate": cid})
                    assert r.status_code == 200, r.text
                assert time.monotonic() - t0 < 5  # was: every vote blocked (503) while the sockets stayed
            # Every idle and stalled socket is closed by the server (EOF) soon after the timeout.
            deadline = time.monotonic() + 15
            for s in idle + slow:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                assert s.recv(1024) == b""
            assert time.monotonic() < deadline
        finally:
            for s in idle + slow:
                s.close()
    assert len(VoteStore(dataset / "screening.sqlite").history()) == len(ids)


def test_head_timeout_runs_per_request_and_keep_alive_idles_longer(dataset):
    """After a response, an idle connection is kept for the keep-alive timeout; one that starts
    its next request head and stalls is dropped after the (shorter) header timeout."""
    from support.live_server import live_server

    from sice.webserver import ServerLimits

    def first_response(port):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while not data.endswith(b"}"):
            data += s.recv(4096)
        assert data.startswith(b"HTTP/1.1 200")
        return s

    with live_server(create_app(dataset), ServerLimits(header_timeout=1.0, keep_alive_timeout=4.0)) as url:
        port = int(url.rsplit(":", 1)[1])
        stalled, idle = first_response(port), first_response(port)
        t0 = time.monotonic()
        stalled.sendall(b"GET /api/health HTTP/1.1\r\nHo")
        stalled.settimeout(10)
        assert stalled.recv(1024) == b""
        assert 0.8 < time.monotonic() - t0 < 3.0  # the header timeout, not keep-alive
        idle.setblocking(False)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
        with pytest.raises(BlockingIOError):  # still open (no EOF) after twice the header timeout
            idle.recv(1024)
        idle.settimeout(10)
        assert idle.recv(1024) == b""  # closed by the keep-alive timeout
        assert 3.5 < time.monotonic() - t0 < 8
        stalled.close()
        idle.close()
