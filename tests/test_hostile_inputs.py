"""Issue 9: a corpus of hostile inputs, generated here (no committed binaries).

For each file, ``sice enhance`` must either produce a correct output (right size, orientation,
bit depth) or a one-line error naming the file: never a traceback, never a partial file, exit
status 1 if anything failed and 0 otherwise. One batch run covers the whole corpus.
"""
from __future__ import annotations

import io as _io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from sice import io as sio

MODEL = "gaingrid:untrained"


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path, px, **kw):
    Image.fromarray(px).save(path, **kw)


def build_corpus(d):
    """Write the corpus into folder d; return {name: expected} with expected = ("ok", shape,
    dtype) or ("error", substring)."""
    exp = {}
    full_jpg = _io.BytesIO()
    Image.fromarray(_rgb(64, 80)).save(full_jpg, format="JPEG")
    (d / "truncated.jpg").write_bytes(full_jpg.getvalue()[: len(full_jpg.getvalue()) // 2])
    exp["truncated.jpg"] = ("error", "truncated")
    full_png = _io.BytesIO()
    Image.fromarray(_rgb(64, 80)).save(full_png, format="PNG")
    (d / "truncated.png").write_bytes(full_png.getvalue()[:-200])
    exp["truncated.png"] = ("error", "")
    buf = _io.BytesIO()
    Image.fromarray(_rgb(64, 80)).save(buf, format="TIFF")
    (d / "truncated.tif").write_bytes(buf.getvalue()[:3000])
    exp["truncated.tif"] = ("error", "")
    (d / "zero.jpg").write_bytes(b"")
    exp["zero.jpg"] = ("error", "empty")
    _save(d / "really-a-png.jpg", _rgb(10, 12))  # wrong extension: content decides
    exp["really-a-png.jpg"] = ("ok", (10, 12, 3), np.uint8)
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    (d / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 99))
                                 + chunk(b"IEND", b""))
    exp["bomb.png"] = ("error", "exceeds the limit")
    _save(d / "one.png", _rgb(1, 1))
    exp["one.png"] = ("ok", (1, 1, 3), np.uint8)
    _save(d / "row.png", _rgb(1, 37))
    exp["row.png"] = ("ok", (1, 37, 3), np.uint8)
    _save(d / "col.jpg", _rgb(29, 1))
    exp["col.jpg"] = ("ok", (29, 1, 3), np.uint8)
    Image.fromarray(_rgb(20, 30)[..., 0]).save(d / "grey.png")
    exp["grey.png"] = ("ok", (20, 30), np.uint8)
    Image.fromarray(np.dstack([_rgb(20, 30)[..., 0], _rgb(20, 30, 1)[..., 0]]), "LA").save(d / "greyalpha.png")
    exp["greyalpha.png"] = ("ok", (20, 30, 2), np.uint8)
    Image.fromarray(np.dstack([_rgb(20, 30), _rgb(20, 30, 2)[..., :1]]), "RGBA").save(d / "rgba.png")
    exp["rgba.png"] = ("ok", (20, 30, 4), np.uint8)
    Image.fromarray(_rgb(20, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(d / "palette.png")
    exp["palette.png"] = ("ok", (20, 30, 3), np.uint8)
    Image.fromarray(_rgb(20, 30)).convert("CMYK").save(d / "cmyk.jpg")
    exp["cmyk.jpg"] = ("ok", (20, 30, 3), np.uint8)
    sio.write_image(d / "deep.png", _rgb(20, 30).astype(np.uint16) * 257)
    exp["deep.png"] = ("ok", (20, 30, 3), np.uint16)
    sio.write_image(d / "deep.tif", _rgb(20, 30).astype(np.uint16) * 257)
    exp["deep.tif"] = ("ok", (20, 30, 3), np.uint16)
    sio.write_image(d / "float.tif", _rgb(20, 30).astype(np.float32) / 255)
    exp["float.tif"] = ("ok", (20, 30, 3), np.float32)
    frames = [Image.fromarray(_rgb(16, 16, k)) for k in range(3)]
    frames[0].save(d / "anim.webp", save_all=True, append_images=frames[1:], duration=100)
    exp["anim.webp"] = ("error", "animated")
    frames[0].convert("P").save(d / "anim.gif", save_all=True, append_images=[f.convert("P") for f in frames[1:]])
    exp["anim.gif"] = ("error", "unsupported format")  # by content; the .gif name is not even collected
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        _save(d / f"orient{o}.jpg", _rgb(10, 16), exif=exif.tobytes())
        exp[f"orient{o}.jpg"] = ("ok", (16, 10, 3) if o >= 5 else (10, 16, 3), np.uint8)
    data = bytearray(_jpeg_with_exif())
    i = data.find(b"Exif\x00\x00")
    data[i + 6:i + 40] = b"\xff" * 34  # wreck the TIFF header inside the EXIF block
    (d / "badexif.jpg").write_bytes(bytes(data))
    exp["badexif.jpg"] = ("ok", (10, 16, 3), np.uint8)
    (d / "folder.jpg").mkdir()
    exp["folder.jpg"] = ("skip-dir", "")  # a folder named like an image: descended into, not decoded
    _save(d / "unreadable.png", _rgb(5, 5))
    os.chmod(d / "unreadable.png", 0)
    exp["unreadable.png"] = ("ok-or-error", "permission denied")  # root can read anything
    os.symlink(d / "gone.png", d / "dangling.png")
    exp["dangling.png"] = ("error", "dangling")
    _save(d / "name with spaces ü.png", _rgb(7, 9))
    exp["name with spaces ü.png"] = ("ok", (7, 9, 3), np.uint8)
    return exp


def _jpeg_with_exif():
    exif = Image.Exif()
    exif[0x010F] = "Cam"
    exif[0x0112] = 1
    b = _io.BytesIO()
    Image.fromarray(_rgb(10, 16)).save(b, format="JPEG", exif=exif.tobytes())
    return b.getvalue()


def test_hostile_corpus_through_enhance(tmp_path):
    src = tmp_path / "corpus"
    src.mkdir()
    exp = build_corpus(src)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "sice", "enhance", str(src), "-o", str(out), "--model", MODEL],
                       capture_output=True, text=True, timeout=600)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, r.stderr  # some inputs are bad
    failed = {line.split(": ", 3)[2][len(str(src)) + 1:]: line for line in r.stderr.splitlines()
              if line.startswith("sice: failed: ")}
    for name, (kind, *rest) in exp.items():
        dst = out / name
        if kind == "ok":
            shape, dtype = rest
            assert name not in failed, failed.get(name)
            got = sio.read_image(dst).pixels
            assert got.dtype == dtype, name
            assert got.shape[:2] == shape[:2], (name, got.shape, shape)
            # as many channels as the input: a grey (H, W) input may come back as (H, W, 1)
            channels = got.shape[2] if got.ndim == 3 else 1
            assert channels == (shape[2] if len(shape) == 3 else 1), (name, got.shape, shape)
        elif kind == "error":
            if name.endswith(".gif"):
                assert not dst.exists()
                continue
            assert name in failed, (name, r.stderr)
            assert rest[0] in failed[name], failed[name]
            assert not dst.exists(), name
        elif kind == "ok-or-error":
            assert dst.exists() or rest[0] in failed.get(name, ""), name
    # never a partial file: nothing hidden or temporary in the output tree
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]
    # every error is one line naming its file
    for line in failed.values():
        assert str(src) in line


def test_all_good_batch_exits_zero(tmp_path):
    for k in range(3):
        _save(tmp_path / f"{k}.png", _rgb(8, 8, k))
    r = subprocess.run([sys.executable, "-m", "sice", "enhance", str(tmp_path), "-o", str(tmp_path / "o"),
                        "--model", MODEL], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "3 files done, 0 failed" in r.stderr


def test_sigkill_mid_batch_then_rerun_finishes(tmp_path):
    """Kill a batch at random points: every output present at any moment is complete, and a
    re-run does only what is left."""
    import signal
    import time

    src = tmp_path / "in"
    src.mkdir()
    for k in range(12):
        sio.write_image(src / f"{k:02d}.jpg", np.random.default_rng(k).integers(0, 256, (600, 800, 3), dtype=np.uint8))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sice", "enhance", str(src), "-o", str(out), "--model", MODEL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not (out.exists() and len(list(out.glob("*.jpg"))) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in out.glob("*.jpg"))
    assert 1 <= len(done_before) < 12
    for p in out.glob("*.jpg"):  # whatever exists is a complete, decodable image
        assert sio.read_image(p).pixels.shape == (600, 800, 3)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"skipped {len(done_before)} existing" in r.stderr
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"{k:02d}.jpg" for k in range(12)]
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in mtimes.items())  # not redone
    assert not list(out.glob(".*"))  # stale temp files cleared
