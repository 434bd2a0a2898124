"""Issue 16 items 2, 4 and 6 (decoding): garbage never decodes as a picture, memory follows the
declared image size and not the file size, special files and swapped files cannot get past the
checks, and a corrupt TIFF costs one line, not a page of library log.

Every file is made here (sparse files via truncate); the real-photo variant of the truncated
JPEG uses ``../shared/data``.
"""
from __future__ import annotations

import io as _io
import os
import struct
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from sice import io as sio
from sice.errors import ImageReadError

from support.memory_probe import run_measured

GiB = 1 << 30


def _noise(h, w, c=3, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([(xx * 3 + yy) % 256, (yy * 2) % 256, (xx * yy) % 256], -1)[..., :c]
    return np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)


def _jpeg(px, **kw) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(px).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _err(path, match, **kw):
    with pytest.raises(ImageReadError, match=match) as info:
        sio.read_image(path, **kw)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    return message


def _cut_with_eoi(data: bytes, fraction: float) -> bytes:
    """The issue's reproduction: the first ``fraction`` of a JPEG, then an end-of-image marker."""
    return data[: int(len(data) * fraction)] + b"\xff\xd9"


# ---- item 2: truncated data behind an intact end marker ----------------------------------------
@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"subsampling": 0}])
def test_jpeg_cut_short_with_an_end_marker_is_an_error(tmp_path, options):
    data = _jpeg(_noise(240, 320), quality=92, **options)
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    assert sio.read_image(whole).pixels.shape == (240, 320, 3)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(_cut_with_eoi(data, 0.6))
    # Pillow (the decoder before the fix) hands the cut file back complete, missing rows grey
    assert Image.open(cut).convert("RGB").size == (320, 240)
    _err(cut, "truncated or corrupt JPEG data .*premature end")


@pytest.mark.realdata
def test_real_photo_cut_at_60_percent_is_an_error(shared_data, tmp_path):
    cut = tmp_path / "79-cut.jpg"
    cut.write_bytes(_cut_with_eoi((shared_data / "sice-fullres" / "79.JPG").read_bytes(), 0.6))
    _err(cut, "truncated or corrupt JPEG data")


def test_jpeg_pixels_equal_pillows(tmp_path):
    """simplejpeg decodes JPEGs now; its pixels must be Pillow's (the decoder it replaces)."""
    cases = {
        "420.jpg": _jpeg(_noise(61, 83), quality=90),
        "444.jpg": _jpeg(_noise(61, 83), quality=95, subsampling=0),
        "progressive.jpg": _jpeg(_noise(61, 83), quality=80, progressive=True),
        "grey.jpg": _jpeg(_noise(61, 83, c=1)[..., 0]),
    }
    buf = _io.BytesIO()
    Image.fromarray(_noise(61, 83)).convert("CMYK").save(buf, format="JPEG")
    cases["cmyk.jpg"] = buf.getvalue()
    buf = _io.BytesIO()
    frames = [Image.fromarray(_noise(40, 50, seed=s)) for s in range(2)]
    frames[0].save(buf, format="MPO", save_all=True, append_images=frames[1:])
    cases["multi-picture.jpg"] = buf.getvalue()
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        reference = np.asarray(Image.open(p).convert("RGB" if "grey" not in name else "L"))
        got = sio.read_image(p).pixels
        np.testing.assert_array_equal(got.reshape(reference.shape), reference, err_msg=name)


def test_jpeg_with_harmless_junk_before_the_end_marker_still_decodes(tmp_path):
    data = _jpeg(_noise(32, 48))
    assert data.endswith(b"\xff\xd9")
    p = tmp_path / "junk.jpg"
    p.write_bytes(data[:-2] + b"\x00\x00\x00" + data[-2:])  # libjpeg: "3 extraneous bytes before marker"
    np.testing.assert_array_equal(sio.read_image(p).pixels, np.asarray(Image.open(_io.BytesIO(data))))


def _declare_size(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    sof = out.find(b"\xff\xc0")
    struct.pack_into(">HH", out, sof + 5, h, w)
    return bytes(out)


def test_tiny_jpeg_declaring_14000x14000_is_refused_before_decoding(tmp_path):
    p = tmp_path / "claims-196MP.jpg"
    p.write_bytes(_declare_size(_jpeg(np.full((16, 16, 3), 100, np.uint8)), 14000, 14000))
    assert p.stat().st_size < 4096
    _err(p, r"cannot hold the 14000x14000 pixels")
    # and without allocating the 588 MB it declares
    peak = _peak_rss_reading(p)
    assert peak["after"] - peak["before"] < 64, peak


def test_float_tiff_with_nan_or_inf_is_refused(tmp_path):
    for bad in (np.nan, np.inf, -np.inf):
        px = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
        px[5, 7, 1] = bad
        p = tmp_path / f"bad-{bad}.tif"
        tifffile.imwrite(p, px, photometric="rgb")
        _err(p, r"1 of 1800 float samples are NaN or infinite")
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.full((4, 5), 0.25, np.float32))
    assert sio.read_image(good).pixels.dtype == np.float32


def test_enhance_batch_with_garbage_files_fails_them_and_does_the_rest(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_noise(40, 60)).save(src / "good.png")
    (src / "cut.jpg").write_bytes(_cut_with_eoi(_jpeg(_noise(240, 320)), 0.6))
    (src / "huge.jpg").write_bytes(_declare_size(_jpeg(np.full((16, 16, 3), 90, np.uint8)), 14000, 14000))
    nan = np.full((12, 16, 3), 0.2, np.float32)
    nan[3, 3, 0] = np.nan
    tifffile.imwrite(src / "nan.tif", nan, photometric="rgb")
    os.symlink("/dev/zero", src / "zero.png")
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "sice", "enhance", str(src), str(fifo), "-o", str(out),
                        "--model", "gaingrid:untrained"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    failed = [line for line in r.stderr.splitlines() if line.startswith("sice: failed: ")]
    assert len(failed) == 5, r.stderr
    for name, why in (("cut.jpg", "premature end"), ("huge.jpg", "cannot hold"), ("nan.tif", "NaN"),
                      ("zero.png", "not a regular file (a device)"), ("fifo.jpg", "not a regular file (a FIFO)")):
        assert any(name in line and why in line for line in failed), (name, r.stderr)
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


# ---- item 4: memory follows the declared size, not the file size --------------------------------
def _peak_rss_reading(path) -> dict:
    """Read ``path`` in a fresh interpreter; its peak RSS (MiB) after the imports and after reading."""
    return run_measured(
        """
        import cv2, numpy as np, simplejpeg, tifffile  # the decoders' own size is not the point
        from sice import io as sio
        from sice.errors import ImageReadError
        """,
        """
        try:
            im = sio.read_image(sys.argv[1])
            result = {"shape": list(im.pixels.shape), "sum": int(im.pixels.astype(np.int64).sum())}
        except ImageReadError as exc:
            result = {"error": str(exc)}
        """, path)


def _small_file(kind: str, path) -> np.ndarray:
    px = _noise(120, 160)
    if kind == "jpg":
        path.write_bytes(_jpeg(px, quality=95))
        return np.asarray(Image.open(path))
    if kind == "png16":
        sio.write_image(path, px.astype(np.uint16) * 257)
        return px.astype(np.uint16) * 257
    if kind == "webp":
        Image.fromarray(px).save(path, format="WEBP", lossless=True)
        return px
    if kind == "tif":  # 8-bit, deflate: Pillow hands the descriptor to libtiff
        Image.fromarray(px).save(path, format="TIFF", compression="tiff_deflate")
        return px
    if kind == "tif16":
        tifffile.imwrite(path, px.astype(np.uint16) * 257, photometric="rgb")
        return px.astype(np.uint16) * 257
    Image.fromarray(px).save(path, format=kind.upper())
    return px


@pytest.mark.parametrize("kind,padded_to", [("jpg", 6 * GiB), ("jpg", 12 * GiB), ("png", 6 * GiB),
                                            ("png16", 6 * GiB), ("webp", 6 * GiB), ("tif", 6 * GiB), ("tif16", 6 * GiB),
                                            ("bmp", 6 * GiB)])
def test_small_image_padded_to_gigabytes_reads_in_bounded_memory(tmp_path, kind, padded_to):
    ext = {"png16": "png", "tif16": "tif"}.get(kind, kind)
    p = tmp_path / f"padded.{ext}"
    expected = _small_file(kind, p)
    with open(p, "r+b") as f:
        f.truncate(padded_to)  # sparse: zeros after the image's own end
    got = _peak_rss_reading(p)
    # 160x120 pixels may cost 160 * 120 * 16 bytes plus 64 MiB of metadata allowance; the file's
    # 6-12 GB are never read (before the fix: 6.4 GB RSS, and MemoryError at 12 GB)
    assert got["after"] - got["before"] < 100, got
    if "error" in got:  # a padded file may be refused, but never decoded wrong
        assert got["error"].startswith(str(p)), got
    else:
        assert got["shape"][:2] == [120, 160] and got["sum"] == int(expected.astype(np.int64).sum()), got


def test_chunk_claiming_gigabytes_in_a_sparse_file_is_refused_not_read(tmp_path):
    """A PNG whose only IDAT chunk says 5 GB long, in a file that really is 5 GB (sparse)."""
    import zlib

    def chunk(kind, body, length=None):
        size = len(body) if length is None else length
        return struct.pack(">I", size) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 160, 120, 8, 2, 0, 0, 0))
    p = tmp_path / "liar.png"
    p.write_bytes(head + struct.pack(">I", 0x7FFFFFF0) + b"tEXt")
    with open(p, "r+b") as f:
        f.truncate(5 * GiB)
    got = _peak_rss_reading(p)
    assert "error" in got and got["error"].startswith(str(p)), got
    assert got["after"] - got["before"] < 100, got


def test_special_files_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    _err(fifo, r"not a regular file \(a FIFO\)")  # opening it for reading used to wait for a writer
    zero = tmp_path / "zero.jpg"
    os.symlink("/dev/zero", zero)
    _err(zero, r"not a regular file \(a device\)")
    loop = tmp_path / "loop.jpg"
    os.symlink(loop.name, loop)
    _err(loop, "symbolic link loop")


def test_file_swapped_after_opening_is_not_decoded(tmp_path, monkeypatch):
    """Size, header and pixels come from the one handle opened first: a big file renamed over the
    path meanwhile is not what gets decoded (before the fix 16-bit PNGs and TIFFs were re-read by
    path, and a 225 MP file came back under a 1 MP limit)."""
    small = sio.write_image(tmp_path / "photo.png", np.full((10, 12, 3), 1000, np.uint16))
    big = sio.write_image(tmp_path / "big.png", np.full((1200, 1000, 3), 2000, np.uint16))
    real_open = sio.PILImage.open

    def open_then_swap(fp, *args, **kwargs):
        os.replace(big, small)  # the swap happens after read_image opened the file
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(sio.PILImage, "open", open_then_swap)
    got = sio.read_image(small, max_pixels=1_000_000)
    assert got.pixels.shape == (10, 12, 3) and int(got.pixels.max()) == 1000


def test_renames_racing_the_reader_never_pass_the_pixel_limit(tmp_path):
    """The issue's race, 60 reads while another thread swaps a 1.2 MP file in and out."""
    small = sio.write_image(tmp_path / "small.png", np.full((8, 8, 3), 7, np.uint16))
    big = sio.write_image(tmp_path / "big.png", np.full((1200, 1000, 3), 9, np.uint16))
    target = tmp_path / "x.png"
    stop = threading.Event()

    def swapper():
        k = 0
        while not stop.is_set():
            os.link(small if k % 2 else big, tmp_path / "next.png")
            os.replace(tmp_path / "next.png", target)
            k += 1

    os.link(small, target)
    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        outcomes = []
        for _ in range(60):
            try:
                outcomes.append(sio.read_image(target, max_pixels=1_000_000).pixels.shape)
            except ImageReadError as exc:
                assert "exceeds the limit" in str(exc), exc
                outcomes.append("refused")
    finally:
        stop.set()
        thread.join()
    assert all(o == "refused" or o == (8, 8, 3) for o in outcomes), outcomes


# ---- item 6: multi-page TIFFs, tifffile's log -------------------------------------------------
def test_multi_page_tiff_reads_page_one_and_says_so(tmp_path):
    pages = [_noise(20, 30, seed=s) for s in range(3)]
    p8, p16 = tmp_path / "pages8.tif", tmp_path / "pages16.tif"
    with tifffile.TiffWriter(p8) as w8, tifffile.TiffWriter(p16) as w16:
        for px in pages:
            w8.write(px, photometric="rgb")
            w16.write(px.astype(np.uint16) * 257, photometric="rgb")
    for p, scale in ((p8, 1), (p16, 257)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = sio.read_image(p).pixels
        np.testing.assert_array_equal(got, pages[0].astype(got.dtype) * scale)
        messages = [str(w.message) for w in caught]
        assert messages == [f"{p}: TIFF holds 3 pages; only the first is read (the others are ignored)"], messages


def test_corrupt_tiff_costs_one_line_not_tifffile_log(tmp_path):
    px = _noise(40, 30).astype(np.uint16) * 257
    buf = _io.BytesIO()
    tifffile.imwrite(buf, px, photometric="rgb", compression="zlib")
    data = bytearray(buf.getvalue())
    # wreck the data type of every tag after the first two (tifffile logs one line per tag)
    count = struct.unpack_from("<H", data, struct.unpack_from("<I", data, 4)[0])[0]
    first = struct.unpack_from("<I", data, 4)[0] + 2
    for k in range(2, count):
        struct.pack_into("<H", data, first + 12 * k + 2, 0x7777)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    r = subprocess.run([sys.executable, "-m", "sice", "enhance", str(bad), "-o", str(tmp_path / "out"),
                        "--model", "gaingrid:untrained"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("sice: failed: ")], r.stderr
    assert not [line for line in lines if "Tiff" in line and not line.startswith("sice: failed: ")], r.stderr
    assert len(lines) <= 2, r.stderr  # the failure and the summary

