"""sice.io: round trips, orientation, metadata, bit depth, and one-line errors for bad files."""
from __future__ import annotations

import io as _io
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from sice import io as sio
from sice.errors import ImageReadError, ImageWriteError


def _pattern(h=24, w=36, c=3, dtype=np.uint8):
    rng = np.random.default_rng(1)
    hi = 255 if dtype == np.uint8 else 65535
    return rng.integers(0, hi + 1, (h, w, c), dtype=np.int64).astype(dtype)


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_lossless_round_trip_8bit(tmp_path, ext, channels):
    if ext == ".bmp" and channels in (2, 4):
        pytest.skip("BMP has no reliable alpha channel (Pillow reads 32-bit BMP as RGB)")
    px = _pattern(c=channels)
    p = sio.write_image(tmp_path / f"a{ext}", px)
    back = sio.read_image(p)
    assert back.bit_depth == 8
    np.testing.assert_array_equal(back.pixels, px)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_lossless_round_trip_16bit(tmp_path, ext, channels):
    px = _pattern(c=channels, dtype=np.uint16)
    p = sio.write_image(tmp_path / f"a{ext}", px)
    back = sio.read_image(p)
    assert back.bit_depth == 16 and back.pixels.dtype == np.uint16
    np.testing.assert_array_equal(back.pixels, px)


def test_float_tiff_round_trip(tmp_path):
    px = np.random.default_rng(0).random((10, 12, 3)).astype(np.float32) * 4  # HDR values kept
    back = sio.read_image(sio.write_image(tmp_path / "f.tif", px))
    assert back.bit_depth == 32
    np.testing.assert_array_equal(back.pixels, px)


@pytest.mark.parametrize("ext", [".jpg", ".webp"])
def test_lossy_round_trip_close(tmp_path, ext):
    yy, xx = np.mgrid[0:32, 0:48]
    px = np.stack([xx * 5, yy * 7, (xx + yy) * 3], -1).astype(np.uint8)
    back = sio.read_image(sio.write_image(tmp_path / f"a{ext}", px, quality=98))
    assert np.abs(back.pixels.astype(int) - px).mean() < 2.0


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_exif_orientation_applied_like_pillow(tmp_path, orientation, ext):
    # Pillow's exif_transpose is the independent reference for what "upright" means.
    px = np.zeros((20, 30, 3), np.uint8)
    px[:5, :10] = (255, 0, 0)  # a red block in the top-left corner, asymmetric
    px[15:, 25:] = (0, 0, 255)
    im = Image.fromarray(px)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}{ext}"
    im.save(path, exif=exif.tobytes(), **({"quality": 100} if ext == ".jpg" else {}))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = sio.read_image(path)
    assert got.pixels.shape == expected.shape
    assert np.abs(got.pixels.astype(int) - expected).max() <= 2
    # written back upright: the orientation tag must say 1
    out = sio.write_image(tmp_path / f"out{ext}", got.pixels, like=got)
    assert Image.open(out).getexif().get(0x0112, 1) == 1


def test_exif_and_icc_kept_on_write(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = "Model X"
    src = tmp_path / "src.jpg"
    Image.fromarray(_pattern()).save(src, exif=exif.tobytes(), icc_profile=icc, quality=95)
    image = sio.read_image(src)
    assert image.icc == icc
    for ext in (".jpg", ".png", ".webp", ".tif"):
        out = sio.write_image(tmp_path / f"o{ext}", image.pixels, like=image)
        with Image.open(out) as o:
            assert o.info.get("icc_profile") == icc, ext
            assert o.getexif().get(0x010F) == "TestCam", ext


def test_icc_and_exif_kept_in_16bit_png(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    out = sio.write_image(tmp_path / "o.png", _pattern(dtype=np.uint16), icc=icc, exif=exif.tobytes())
    back = sio.read_image(out)
    assert back.bit_depth == 16 and back.icc == icc
    with Image.open(out) as o:
        assert o.getexif().get(0x010F) == "TestCam"


def test_palette_and_cmyk_become_rgb(tmp_path):
    pal = Image.fromarray(_pattern()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    got = sio.read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(got.pixels, np.asarray(pal.convert("RGB")))
    cmyk = Image.fromarray(_pattern()).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=100)
    got = sio.read_image(tmp_path / "c.jpg")
    assert got.pixels.shape == (24, 36, 3)
    ref = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB"))
    np.testing.assert_array_equal(got.pixels, ref)


# ---- bad input: one clear error naming the file ------------------------------------------------
def _err(path, match, **kw):
    with pytest.raises(ImageReadError, match=match) as info:
        sio.read_image(path, **kw)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_errors_name_the_file(tmp_path):
    _err(tmp_path / "missing.jpg", "no such file")
    (tmp_path / "dir.jpg").mkdir()
    _err(tmp_path / "dir.jpg", "folder")
    (tmp_path / "empty.jpg").write_bytes(b"")
    _err(tmp_path / "empty.jpg", "empty")
    (tmp_path / "text.jpg").write_text("hello, not an image")
    _err(tmp_path / "text.jpg", "not an image")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    _err(tmp_path / "dangling.png", "dangling")


# Metadata is read before the pixels, and a file cut in half may have lost its metadata too:
# Pillow warns about the TIFF's cut IFD, and sice about the PNG's unreadable EXIF, before the
# pixel decoding fails with the error this test is about.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.filterwarnings("ignore:.*unreadable EXIF ignored:UserWarning")
@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif"])
def test_truncated_file_is_an_error(tmp_path, ext):
    yy, xx = np.mgrid[0:200, 0:300]
    px = np.stack([xx % 256, yy % 256, (xx * yy) % 256], -1).astype(np.uint8)
    full = sio.write_image(tmp_path / f"full{ext}", px)
    data = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    _err(cut, "truncated|corrupt|cannot decode")


def test_pixel_limit(tmp_path, monkeypatch):
    p = sio.write_image(tmp_path / "a.png", _pattern(h=100, w=100))
    _err(p, "exceeds the limit", max_pixels=9999)
    monkeypatch.setenv("SICE_MAX_PIXELS", "5000")
    _err(p, "exceeds the limit")
    assert sio.read_image(p, max_pixels=10000).pixels.shape == (100, 100, 3)


def test_bomb_header_refused_before_decoding(tmp_path):
    # a PNG header that claims 100000 x 100000 pixels, with no data behind it
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(data)
    _err(tmp_path / "bomb.png", "megapixels exceeds the limit")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(ImageWriteError, match="does not exist"):
        sio.write_image(tmp_path / "nope" / "a.png", _pattern())
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root): cannot make a read-only folder")
        with pytest.raises(ImageWriteError, match="cannot write"):
            sio.write_image(ro / "a.png", _pattern())
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_write_replaces_atomically_and_refuses_overwrite_when_asked(tmp_path):
    p = sio.write_image(tmp_path / "a.png", _pattern())
    with pytest.raises(ImageWriteError, match="exists"):
        sio.write_image(p, _pattern(), overwrite=False)
    sio.write_image(p, np.zeros((5, 5, 3), np.uint8))
    assert sio.read_image(p).pixels.shape == (5, 5, 3)
    assert [f.name for f in tmp_path.iterdir()] == ["a.png"]  # no temp files left


def test_list_images_natural_order(tmp_path):
    for n in ("10.jpg", "2.JPG", "1.png", "notes.txt", ".hidden.jpg"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in sio.list_images(tmp_path)] == ["1.png", "2.JPG", "10.jpg"]


def test_outputs_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = sio.write_image(tmp_path / "a.png", _pattern())
    finally:
        os.umask(old)
    assert (p.stat().st_mode & 0o777) == 0o644


# ---- JPEG quality of an input, standard input/output --------------------------------------------
def test_estimated_jpeg_quality_is_what_pillow_wrote(tmp_path):
    """Every quality 1-100 that Pillow (libjpeg) writes is recovered (within 1 at the bottom of
    the scale, where tables clipped at 255 coincide)."""
    import io as _io

    px = _pattern(h=32, w=32)
    for quality in range(1, 101):
        buf = _io.BytesIO()
        Image.fromarray(px).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        assert abs(sio.estimate_jpeg_quality(buf) - quality) <= (1 if quality < 10 else 0), quality


def test_estimated_quality_of_other_files_is_none(tmp_path):
    sio.write_image(tmp_path / "a.png", _pattern())
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    assert sio.estimate_jpeg_quality(tmp_path / "a.png") is None
    assert sio.estimate_jpeg_quality(tmp_path / "junk.jpg") is None
    assert sio.estimate_jpeg_quality(tmp_path / "missing.jpg") is None


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_subsampling_is_read_and_can_be_written(tmp_path, subsampling):
    Image.fromarray(_pattern()).save(tmp_path / "a.jpg", quality=90, subsampling=subsampling)
    assert sio.jpeg_subsampling(tmp_path / "a.jpg") == subsampling
    sio.write_image(tmp_path / "b.jpg", _pattern(), quality=90, subsampling=subsampling)
    assert sio.jpeg_subsampling(tmp_path / "b.jpg") == subsampling
    assert sio.jpeg_subsampling(tmp_path / "b.jpg") is not None
    sio.write_image(tmp_path / "c.png", _pattern())
    assert sio.jpeg_subsampling(tmp_path / "c.png") is None


def test_encode_image_gives_the_bytes_write_image_writes(tmp_path):
    px = _pattern()
    for fmt, ext in (("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif")):
        path = sio.write_image(tmp_path / f"a{ext}", px, quality=80)
        assert sio.encode_image(px, fmt, quality=80) == path.read_bytes(), fmt
    with pytest.raises(ValueError, match="format must be one of"):
        sio.encode_image(px, "GIF")


def test_spool_stream_copies_a_stream_larger_than_its_chunk(tmp_path):
    import io as _io

    data = np.random.default_rng(0).integers(0, 256, 3 * 2**20 + 17, dtype=np.uint8).tobytes()
    path = sio.spool_stream(_io.BytesIO(data), tmp_path)
    assert path.parent == tmp_path and path.read_bytes() == data


def test_jpeg_writer_writes_what_pillow_writes():
    """The JPEG writer (OpenCV's libjpeg-turbo, metadata segments added by sice) gives the file
    Pillow gives for the same quality, subsampling, EXIF and ICC profile: same segments in the
    same order, same quantisation tables and sampling, the same pixels when decoded."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    px = _pattern(h=45, w=70)
    cases = [(q, ss, meta) for q in (1, 50, 75, 90, 95, 100) for ss in (None, 0, 1, 2)
             for meta in ({}, {"exif": exif.tobytes()}, {"icc": icc},
                          {"exif": exif.tobytes(), "icc": icc * 150})]  # 150 copies: two APP2 chunks
    for quality, subsampling, meta in cases:
        got = sio._encode_jpeg(px, quality=quality, subsampling=subsampling, exif=meta.get("exif"),
                               icc=meta.get("icc"))
        buf = _io.BytesIO()
        Image.fromarray(px).save(buf, format="JPEG", quality=quality, optimize=False,
                                     subsampling=(0 if quality >= 90 else 2) if subsampling is None else subsampling,
                                     exif=meta.get("exif", b""), icc_profile=meta.get("icc"))
        want = buf.getvalue()
        case = (quality, subsampling, sorted(meta))
        assert _jpeg_segments(got) == _jpeg_segments(want), case
        with Image.open(_io.BytesIO(got)) as a, Image.open(_io.BytesIO(want)) as b:
            assert a.quantization == b.quantization, case
            assert a.info.get("icc_profile") == b.info.get("icc_profile"), case
            assert a.getexif().get(0x010F) == b.getexif().get(0x010F), case
            assert sio.jpeg_subsampling(_io.BytesIO(got)) == sio.jpeg_subsampling(_io.BytesIO(want)), case
            assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1, case


def test_jpeg_writer_refuses_exif_too_long_for_a_segment():
    with pytest.raises(ValueError, match="EXIF data is too long"):
        sio.encode_image(_pattern(), "JPEG", quality=90, like=sio.ImageFile(_pattern(), "JPEG", 8,
                                                                             b"Exif\0\0" + bytes(65530), None, None))


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, body) of each segment before the scan data: APPn, DQT, SOF, DHT, SOS."""
    out, pos = [], 2
    while pos + 4 <= len(data):
        marker, size = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        out.append((marker, data[pos + 4:pos + 2 + size]))
        if marker == 0xDA:
            break
        pos += 2 + size
    return out


@pytest.mark.parametrize("quality,subsampling", [(30, 2), (75, 1), (95, 0)])
def test_jpeg_encoding_reads_quality_and_subsampling_in_one_go(tmp_path, quality, subsampling):
    Image.fromarray(_pattern()).save(tmp_path / "a.jpg", quality=quality, subsampling=subsampling)
    assert sio.jpeg_encoding(tmp_path / "a.jpg") == (quality, subsampling)
    sio.write_image(tmp_path / "b.png", _pattern())
    assert sio.jpeg_encoding(tmp_path / "b.png") is None
    assert sio.jpeg_encoding(tmp_path / "missing.jpg") is None
