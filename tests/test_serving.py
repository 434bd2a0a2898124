"""`sice serve`: the enhancement HTTP API, through a real HTTP client against a real uvicorn
server (and FastAPI's TestClient for the error cases)."""
from __future__ import annotations

import io
import struct
import threading
import time
import warnings
import zlib

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from support.helpers import synthetic_scene
from support.live_server import live_server
from PIL import Image

import sice
from sice import io as sio
from sice.enhancement import Enhancer
from sice.errors import ModelError
from sice.serving.app import WorkQueue, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's notice that TestClient will move to httpx2
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def enhancer():
    return Enhancer()  # the shipped default model, loaded once for the module as the server does


@pytest.fixture
def client(enhancer):
    with TestClient(create_app(enhancer=enhancer), base_url="http://127.0.0.1") as c:
        yield c


def dark(h=48, w=64, seed=0) -> np.ndarray:
    """An under-exposed photo-like uint8 RGB image."""
    return (synthetic_scene(h, w, seed) ** 2.2 * 90).astype(np.uint8)


def encoded(pixels, fmt, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **save)
    return buf.getvalue()


def post(http, body, params=None, content_type="application/octet-stream"):
    return http.post("/enhance", content=body, params=params or {}, headers={"content-type": content_type})


def decode(data: bytes, tmp_path, name="reply") -> sio.ImageFile:
    path = tmp_path / name
    path.write_bytes(data)
    return sio.read_image(path)


def assert_one_line_error(r, status, text):
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    assert "sice-serve-" not in detail  # the temp file's path never reaches the client
    assert text in detail, detail


# ------------------------------------------------------------------ through a real server
def test_real_server_round_trip_equals_the_library(enhancer, tmp_path):
    """PNG 8-bit, 16-bit RGBA, grey, WebP and a JPEG with EXIF, posted to a real uvicorn server:
    each reply has the input's format and is byte for byte what sice.enhance_file writes for
    the file; the PNGs decode to exactly what sice.enhance gives for the same decoded pixels."""
    px = dark()
    rgba16 = np.concatenate([px.astype(np.uint16) * 257, np.full(px.shape[:2] + (1,), 40000, np.uint16)], axis=2)
    sio.write_image(tmp_path / "rgba16.png", rgba16)
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    cases = {
        "rgb.png": (encoded(px, "PNG"), "image/png", "PNG"),
        "rgba16.png": ((tmp_path / "rgba16.png").read_bytes(), "image/png", "PNG"),
        "grey.png": (encoded(px[..., 1], "PNG"), "image/png", "PNG"),
        "lossless.webp": (encoded(px, "WEBP", lossless=True), "image/webp", "WEBP"),
        "photo.jpg": (encoded(px, "JPEG", quality=80, exif=exif.tobytes()), "image/jpeg", "JPEG"),
    }
    with live_server(create_app(enhancer=enhancer)) as url, httpx.Client(base_url=url, timeout=60) as http:
        for name, (body, media_type, fmt) in cases.items():
            r = post(http, body, content_type=media_type)
            assert r.status_code == 200, (name, r.text)
            assert r.headers["content-type"] == media_type and r.headers["x-sice-model"] == enhancer.name
            src = tmp_path / name
            src.write_bytes(body)
            image = sio.read_image(src)
            got = decode(r.content, tmp_path, "reply-" + name)
            assert got.format == fmt and got.pixels.dtype == image.pixels.dtype
            assert got.pixels.shape == image.pixels.shape
            # the same bytes as `sice enhance` writes for the file
            sice.enhance_file(src, tmp_path / ("library-" + name), enhancer=enhancer)
            assert r.content == (tmp_path / ("library-" + name)).read_bytes()
            if fmt == "JPEG":
                with Image.open(io.BytesIO(r.content)) as reply, Image.open(src) as original:
                    assert reply.getexif().get(0x010F) == "TestCam"  # metadata kept
                    assert reply.quantization == original.quantization  # quality 80 kept, not 95
            elif fmt == "PNG":  # lossless: exactly the enhanced pixels
                np.testing.assert_array_equal(got.pixels, sice.enhance(image.pixels, enhancer=enhancer))
        rgba = decode(post(http, cases["rgba16.png"][0]).content, tmp_path, "again.png").pixels
        np.testing.assert_array_equal(rgba[..., 3], rgba16[..., 3])  # alpha passed through
        assert rgba[..., :3].mean() > rgba16[..., :3].mean()  # and the photo got brighter
        health = http.get("/health").json()
        assert health["ok"] and health["model"] == enhancer.name and health["running"] == 0


def test_strength_scales_the_correction(client, enhancer, tmp_path):
    px = dark()
    body = encoded(px, "PNG")
    replies = {}
    for s in (0, 0.5, 1):
        r = post(client, body, {"strength": s})
        assert r.status_code == 200 and r.headers["x-sice-strength"] == f"{s:g}"
        replies[s] = decode(r.content, tmp_path, f"s{s}.png").pixels
    np.testing.assert_array_equal(replies[0], px)  # strength 0: the photo unchanged
    np.testing.assert_array_equal(replies[0.5], enhancer.enhance_pixels(px, strength=0.5))
    assert px.mean() < replies[0.5].mean() < replies[1].mean()
    np.testing.assert_array_equal(decode(post(client, body).content, tmp_path, "d.png").pixels, replies[1])


def test_idle_sockets_do_not_block_the_api(enhancer):
    import socket

    with live_server(create_app(enhancer=enhancer)) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        try:
            r = httpx.post(url + "/enhance", content=encoded(dark(), "PNG"), timeout=30)
            assert r.status_code == 200
        finally:
            for s in idle:
                s.close()


# ------------------------------------------------------------------ errors: one-line JSON, never a 500
def _png_claiming(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda k, b: struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore:.*unreadable EXIF ignored")  # the truncated PNG's, from sice.io
def test_bad_images_get_clean_4xx(client):
    png = encoded(dark(), "PNG")
    assert_one_line_error(post(client, b""), 400, "empty body")
    assert_one_line_error(post(client, b"hello, this is not an image at all"), 415, "not a JPEG, PNG, TIFF, BMP or WebP")
    assert_one_line_error(post(client, b"GIF89a" + b"\0" * 64), 415, "not a JPEG")
    assert_one_line_error(post(client, png[: len(png) // 2]), 400, "image: ")  # truncated
    assert_one_line_error(post(client, b"\x89PNG\r\n\x1a\n"), 400, "image: ")  # signature only
    assert_one_line_error(post(client, _png_claiming(100_000, 100_000)), 413, "exceeds the limit")
    r = client.post("/enhance", files={"file": ("a.png", png, "image/png")})  # curl -F: a form
    assert_one_line_error(r, 415, "not as a multipart form")
    # curl --data-binary sends this content type: accepted; curl -d strips line breaks: a hint
    assert post(client, png, content_type="application/x-www-form-urlencoded").status_code == 200
    mangled = png[:8] + png[8:].replace(b"\n", b"").replace(b"\r", b"")
    assert_one_line_error(post(client, mangled, content_type="application/x-www-form-urlencoded"), 400,
                          "(curl -d alters binary data: use --data-binary)")


def test_float_tiff_outside_0_1_is_a_400(client, tmp_path):
    sio.write_image(tmp_path / "f.tif", synthetic_scene(16, 16) * 255.0)  # a float image scaled 0..255
    assert_one_line_error(post(client, (tmp_path / "f.tif").read_bytes()), 400, "[0, 1]")


@pytest.mark.parametrize("params, text", [
    ({"strength": 2}, "strength: Input should be less than or equal to 1"),
    ({"strength": -0.1}, "strength: Input should be greater than or equal to 0"),
    ({"strength": "nan"}, "strength: "),
    ({"strength": "inf"}, "strength: "),
    ({"strength": "lots"}, "strength: Input should be a valid number"),
    ({"quality": 0}, "quality: Input should be greater than or equal to 1"),
])
def test_bad_parameters_are_422_one_line(client, params, text):
    assert_one_line_error(post(client, encoded(dark(), "PNG"), params), 422, text)


def test_body_and_pixel_limits(enhancer):
    png = encoded(dark(), "PNG")
    with TestClient(create_app(enhancer=enhancer, max_body_size=len(png) - 1, max_pixels=1000),
                    base_url="http://127.0.0.1") as c:
        assert_one_line_error(post(c, png), 413, f"larger than the limit of {len(png) - 1}")
        chunked = (png[i:i + 100] for i in range(0, len(png), 100))  # no Content-Length
        assert_one_line_error(c.post("/enhance", content=chunked), 413, "larger than the limit")
    with TestClient(create_app(enhancer=enhancer, max_pixels=1000), base_url="http://127.0.0.1") as c:
        assert_one_line_error(post(c, png), 413, "exceeds the limit of")  # 48 x 64 > 1000 pixels


def test_model_failure_is_a_500_without_traceback(enhancer, monkeypatch, caplog):
    app = create_app(enhancer=enhancer)

    def broken(*args, **kwargs):
        raise ModelError("model returned non-finite values")

    monkeypatch.setattr(enhancer, "enhance_pixels", broken)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        r = post(c, encoded(dark(), "PNG"))
    assert_one_line_error(r, 500, "enhancement failed: model returned non-finite values")
    assert "Traceback" not in caplog.text


def test_loopback_host_header_unless_exposed(enhancer):
    png = encoded(dark(), "PNG")
    with TestClient(create_app(enhancer=enhancer), base_url="http://evil.example") as c:
        assert c.post("/enhance", content=png).status_code == 400  # DNS rebinding
    with TestClient(create_app(enhancer=enhancer, allowed_hosts=None), base_url="http://192.0.2.7") as c:
        assert c.post("/enhance", content=png).status_code == 200


def test_openapi_page_and_schema(client):
    assert client.get("/docs").status_code == 200 and "swagger" in client.get("/docs").text.lower()
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/enhance"]["post"]
    assert op["requestBody"]["content"]["image/jpeg"]["schema"] == {"type": "string", "format": "binary"}
    strength = next(p for p in op["parameters"] if p["name"] == "strength")
    assert strength["schema"]["minimum"] == 0 and strength["schema"]["maximum"] == 1
    assert {"400", "413", "415", "422", "503"} <= set(op["responses"])
    assert client.get("/", follow_redirects=False).headers["location"] == "/docs"


def test_the_model_is_loaded_once(monkeypatch):
    from sice.serving import app as serving_app

    loads = []

    class Counting(Enhancer):
        def __init__(self, *args, **kwargs):
            loads.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(serving_app, "Enhancer", Counting)
    with TestClient(serving_app.create_app("default"), base_url="http://127.0.0.1") as c:
        for _ in range(3):
            assert post(c, encoded(dark(), "PNG")).status_code == 200
    assert loads == [("default",)]


# ------------------------------------------------------------------ the queue
def _slow(enhancer, seconds, monkeypatch):
    real = enhancer.enhance_pixels

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(enhancer, "enhance_pixels", slow)


def _concurrent_posts(url, n, body):
    results = [None] * n

    def one(i):
        results[i] = httpx.post(url + "/enhance", content=body, timeout=60)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_requests_queue_for_workers_instead_of_503(enhancer, monkeypatch):
    """One worker, one queue place, 1 s per photo, 5 requests at once: everyone waits in line
    and gets 200; meanwhile /health shows 1 running, 2 admitted (1 queued), 3 waiting."""
    _slow(enhancer, 1.0, monkeypatch)
    body = encoded(dark(), "PNG")
    with live_server(create_app(enhancer=enhancer, workers=1, queue=1, queue_timeout=30)) as url:
        threads, results = _concurrent_posts(url, 5, body)
        seen = set()
        while any(t.is_alive() for t in threads):
            h = httpx.get(url + "/health").json()
            seen.add((h["running"], h["admitted"], h["waiting"]))
            time.sleep(0.05)
        for t in threads:
            t.join()
    assert [r.status_code for r in results] == [200] * 5
    assert len({r.content for r in results}) == 1
    assert (1, 2, 3) in seen, seen  # never more than 1 running or 2 admitted
    assert max(s[0] for s in seen) == 1 and max(s[1] for s in seen) == 2


def test_a_request_that_waits_past_the_queue_timeout_gets_503_retry_after(enhancer, monkeypatch):
    _slow(enhancer, 1.0, monkeypatch)
    body = encoded(dark(), "PNG")
    with live_server(create_app(enhancer=enhancer, workers=1, queue=0, queue_timeout=0.3)) as url:
        threads, results = _concurrent_posts(url, 3, body)
        for t in threads:
            t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 503, 503], codes
    busy = next(r for r in results if r.status_code == 503)
    assert busy.headers["retry-after"] == "5" and "no place in the queue within 0.3 s" in busy.json()["detail"]


def test_a_trickled_upload_cannot_hold_the_queue(enhancer):
    """A client that sends its head and a few body bytes, then stalls, holds the only place
    (1 worker, no queue) for the upload timeout only: it gets 408, the next client its photo."""
    import socket

    body = encoded(dark(), "PNG")
    with live_server(create_app(enhancer=enhancer, workers=1, queue=0, upload_timeout=1.0)) as url:
        port = int(url.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /enhance HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n" + body[:16])
        time.sleep(0.2)
        t0 = time.monotonic()
        r = httpx.post(url + "/enhance", content=body, timeout=30)
        assert r.status_code == 200 and time.monotonic() - t0 < 10
        slow.settimeout(10)
        reply = slow.recv(4096)
        slow.close()
    assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in reply


def test_work_queue_refuses_nonsense():
    with pytest.raises(ValueError, match="workers >= 1"):
        WorkQueue(0, 1, 1)


# ------------------------------------------------------------------ the command
def test_cli_serve(monkeypatch):
    from sice import webserver
    from sice.cli.main import cli

    served = {}
    monkeypatch.setattr(webserver, "run_server", lambda app, **kw: served.update(app=app, **kw))
    out = CliRunner().invoke(cli, ["serve", "--port", "9123", "--workers", "3", "--max-body-mb", "2"])
    assert out.exit_code == 0, out.output
    assert served["host"] == "127.0.0.1" and served["port"] == 9123 and "warning" not in out.stderr
    assert "http://127.0.0.1:9123/docs" in out.stderr
    app = served["app"]
    assert app.state.work.workers == 3
    with TestClient(app, base_url="http://192.0.2.7") as c:
        assert c.get("/health").status_code == 400  # loopback only
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/health").json()["max_body_size"] == 2 * 1024 * 1024
    out = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert out.exit_code == 0 and "warning: listening on 0.0.0.0, not on loopback" in out.stderr
    with TestClient(served["app"], base_url="http://192.0.2.7") as c:
        assert c.get("/health").status_code == 200
    out = CliRunner().invoke(cli, ["serve", "-m", "no-such-model"])
    assert out.exit_code == 1 and out.stderr.startswith("sice: error: ") and out.stderr.count("\n") == 1
    help_text = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "--data-binary" in help_text and "--queue-timeout" in help_text and "--upload-timeout" in help_text
