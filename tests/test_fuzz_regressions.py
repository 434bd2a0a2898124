"""The fuzzer (tests/support/fuzzing.py): its seeds and mutations, and every crash the fuzzer found, kept as a regression.

Each crash is stored as the recipe that made it (seed name + mutation steps, see
:func:`support.fuzzing.apply_recipe`) with the sha256 of the bytes it made when it was found, so a
change of the seed encoders (a Pillow or libjpeg update) shows up as a clear failure instead of
silently testing other bytes. The inputs go through the fuzzer's own worker, so the time and
address-space limits of the fuzz contract are checked too, not only the exception type.
"""
from __future__ import annotations

import hashlib
import io as _io
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from sice.errors import ImageReadError
from sice.io import read_image

from support import fuzzing

# (seed, ops, sha256 prefix of the input, what went wrong before the fix); each is now rejected
# with a one-line ImageReadError, except where DECODED says that a valid image is the answer.
IMAGE_CRASHES = [
    ("tiff-rgb16", [["field", 505, 34]], "a5e4785f84223fa8",
     "TypeError: Missing dimensions (Pillow counting TIFF frames)"),
    ("png-palette-trns", [["field", 108, 4]], "9bd8780bb7678de3",
     "ValueError: Truncated IHDR chunk (from PIL.Image.open)"),
    ("tiff-float", [["delete", 324144, 47]], "00b684663cbb4be0",
     "zlib.error: invalid distance too far back (tifffile decoding)"),
    ("tiff-rgb16", [["field", 981, 0]], "0425d7810ef9075e",
     "ZeroDivisionError (tifffile decoding a strip of 0 rows)"),
    ("tiff-float", [["field", 137, 20]], "cd5848e8d5f306d9",
     "TypeError: '>' not supported between tuple and int (pixel-limit check of a TIFF)"),
    ("png-rgb-exif", [["splice", "jpeg-grey", 855841, 151250], ["duplicate", 819060, 68, 778259],
                      ["field", 629, 13620880370565960736]], "fd58ea0919aee981",
     "MemoryError: Pillow's file.read(n) pre-allocated a chunk length of GiBs"),
    ("tiff-float", [["field", 903, 65535], ["field", 474, 625445591192954240]], "39c059d5f05879cc",
     "ArrayMemoryError: 129 GiB (tifffile's page shape beyond the pixel limit)"),
    ("tiff-float", [["int", 244499, 1, 1, 1779228108701399666]], "438c62d589e1bbed",
     "MemoryError: tifffile's file.read(n) pre-allocated a strip byte count of 2 GiB"),
]
# Only the strip byte count is wrong there; read from memory, the strip is complete.
DECODED = {"438c62d589e1bbed"}


@pytest.fixture(scope="module")
def image_seeds():
    return fuzzing.image_seeds()


def _started_runner(target, tmp_path_factory):
    """The fuzzer's worker (spawned, address-space limit, time limit), started once per module."""
    runner = fuzzing._Runner(target, tmp_path_factory.mktemp(f"fuzz-{target}-worker"),
                             max_pixels=fuzzing.FUZZ_MAX_PIXELS,
                             memory=fuzzing.BYTES_PER_PIXEL * fuzzing.FUZZ_MAX_PIXELS + fuzzing.MEMORY_SLACK,
                             timeout=60)
    runner.start()
    yield runner
    runner.stop()


@pytest.fixture(scope="module")
def image_runner(tmp_path_factory):
    yield from _started_runner("image", tmp_path_factory)


@pytest.fixture(scope="module")
def caffe_runner(tmp_path_factory):
    yield from _started_runner("caffe", tmp_path_factory)


# --- seeds and mutations ---------------------------------------------------------------------
def test_image_seeds_are_valid_files_of_every_format(image_seeds, tmp_path):
    formats = set()
    for name, data in image_seeds.items():
        path = tmp_path / name
        path.write_bytes(data)
        image = read_image(path)
        formats.add(image.format)
        # 13x9 pixels; EXIF orientations 5-8 turn them upright as 9x13
        rotated = name in ("jpeg-exif", "png-rgb-exif", "tiff-rgb8")  # orientations 6, 8 and 5
        expected = (48, 64) if name == "jpeg-noise" else (13, 9) if rotated else (9, 13)
        assert image.pixels.shape[:2] == expected, name
    assert formats == {"JPEG", "PNG", "TIFF", "BMP", "WEBP"}
    assert read_image(tmp_path / "png-rgb16").bit_depth == 16 and read_image(tmp_path / "tiff-float").bit_depth == 32


def test_caffe_seeds_match_the_protobuf_library_and_port(tmp_path):
    """The fuzzer's hand-written encoder, checked against the real protobuf library (via the
    caffe tests' descriptor) and against the reader."""
    pytest.importorskip("google.protobuf")
    from support.caffe_reference import proto_classes

    from sice.models import caffe

    seeds = fuzzing.caffe_seeds()
    net_cls = proto_classes()["NetParameter"]
    for name, data in seeds.items():
        msg = net_cls.FromString(data)
        layers = msg.layers if name == "tiny-v1" else msg.layer
        path = tmp_path / f"{name}.caffemodel"
        path.write_bytes(data)
        net = caffe.read_caffemodel(path)
        assert [l.name for l in layers] == [l.name for l in net.layers], name
        # the fuzzer writes caffe.proto's field numbers itself: bottoms and tops land where they belong
        assert [(list(l.bottom), list(l.top)) for l in layers] == [(l.bottom, l.top) for l in net.layers], name
        for ref, ours in zip(layers, net.layers):
            assert len(ref.blobs) == len(ours.blobs)
            for rb, ob in zip(ref.blobs, ours.blobs):
                np.testing.assert_array_equal(np.asarray(rb.data, np.float32), ob.data)
        assert fuzzing.check_caffe(path) == ("ported" if name == "residual" else "rejected")
    assert caffe.detect_architecture(caffe.read_caffemodel(tmp_path / "residual.caffemodel")) == "sice2018-residual"


def test_apply_recipe_steps():
    seed = bytes(range(10))
    assert fuzzing.apply_recipe(seed, [["flip", 12, 9]]) == seed[:2] + bytes([2 ^ 2]) + seed[3:]  # 12%10, bit 9%8
    assert fuzzing.apply_recipe(seed, [["truncate", 4]]) == seed[:4]
    assert fuzzing.apply_recipe(seed, [["delete", 8, 5]]) == seed[:8]
    assert fuzzing.apply_recipe(seed, [["duplicate", 1, 2, 0]]) == b"\x01\x02" + seed
    assert fuzzing.apply_recipe(seed, [["int", 3, 0, 1, 0x0102]]) == seed[:3] + b"\x01\x02" + seed[5:]
    assert fuzzing.apply_recipe(seed, [["insert", 10, "ff"]]) == seed + b"\xff"
    assert fuzzing.apply_recipe(seed, [["splice", "x", 2, 1]], {"x": b"abc"}) == seed[:2] + b"bc"
    jpeg = b"\xff\xd8" + seed
    assert fuzzing.apply_recipe(jpeg, [["cutend", 5]]) == jpeg[:5] + b"\xff\xd9"  # cut short behind an EOI
    assert fuzzing.apply_recipe(seed, [["cutend", 5]]) == seed[:5]  # no end marker for unknown formats
    assert fuzzing.apply_recipe(seed, [["float", 2, 1]]) == seed[:2] + struct.pack("<f", float("inf")) + seed[6:]
    assert fuzzing.apply_recipe(seed, [["float", 2, 6]]) == seed[:2] + struct.pack(">f", float("-inf")) + seed[6:]


def test_png_header_field_mutation_keeps_checksums_valid(image_seeds):
    seed = image_seeds["png-la"]
    _, fields = fuzzing.structure(seed)
    width_field = fields.index((16, "u32be"))  # IHDR width: 8 signature + 4 length + 4 type
    data = fuzzing.apply_recipe(seed, [["field", width_field, 70000]])
    assert struct.unpack(">I", data[16:20])[0] == 70000
    assert data[29:33] == struct.pack(">I", zlib.crc32(data[12:29]))  # IHDR CRC recomputed
    assert len(data) == len(seed)


def test_png_chunk_drop_removes_a_whole_chunk(image_seeds):
    seed = image_seeds["png-palette-trns"]
    segments, _ = fuzzing.structure(seed)
    kinds = [seed[a + 4:a + 8] for a, _ in segments]
    i = kinds.index(b"tRNS")
    data = fuzzing.apply_recipe(seed, [["chunk", 1, i, 0]])
    assert b"tRNS" not in data and len(data) == len(seed) - (segments[i][1] - segments[i][0])


# --- contract checks -------------------------------------------------------------------------
def test_contract_check_flags_a_message_without_the_path(tmp_path, monkeypatch):
    import sice.io

    def bad(path, **kw):
        raise ImageReadError("elsewhere.png", "broken")

    monkeypatch.setattr(sice.io, "read_image", bad)
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(fuzzing.Violation, match="does not start with the path"):
        fuzzing.check_image(tmp_path / "a.png")


def misbehaving_check(path, max_pixels):
    """A stand-in reader for the worker: hangs on b"hang", allocates 1 GiB on b"alloc"."""
    import time

    data = open(path, "rb").read()
    if data == b"hang":
        time.sleep(600)
    if data == b"alloc":
        return str(np.ones(2**30, np.uint8).sum())
    return "ok"


def test_worker_reports_hangs_and_over_allocation(tmp_path):
    runner = fuzzing._Runner(f"{__name__}:misbehaving_check", tmp_path, max_pixels=1, memory=256 << 20, timeout=3)
    try:
        assert runner.run(b"fine")[:2] == ("pass", "ok")
        assert runner.run(b"hang")[:2] == ("hang", "hang")
        kind, what, detail = runner.run(b"alloc")  # a fresh worker after the hang
        assert kind == "violation" and "MemoryError" in what, detail
        assert runner.run(b"fine")[:2] == ("pass", "ok")
        assert runner.restarts == 1
    finally:
        runner.stop()


def pillow_decodes(path, max_pixels):
    """A stand-in reader: how sice decoded JPEGs before issue 16 (Pillow, truncation off)."""
    from PIL import Image, ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with Image.open(path) as im:
        im.load()
    return "decoded"


def test_cases_with_a_known_outcome_catch_the_old_decoder_and_pass_now(image_runner, caffe_runner, tmp_path):
    """Issue 16: the fuzzer's fixed cases (cut JPEGs behind an EOI, NaN/Inf float TIFFs, NaN and
    1e30 weights, crafted caffemodels, special files) are what the readers must reject."""
    image_cases, caffe_cases = fuzzing.cases("image"), fuzzing.cases("caffe")
    cut = {n: data for n, (data, _) in image_cases.items() if n.endswith("-then-eoi")}
    assert len(cut) == 12 and sum(n.startswith("special-") for n in image_cases) == len(fuzzing.SPECIAL_FILES)
    old = fuzzing._Runner(f"{__name__}:pillow_decodes", tmp_path, max_pixels=1, memory=0, timeout=60)
    try:
        for name, data in cut.items():  # Pillow hands back the incomplete pictures: a violation now
            assert old.run(data)[:2] == ("pass", "decoded"), name
    finally:
        old.stop()
    for runner, known in ((image_runner, image_cases), (caffe_runner, caffe_cases)):
        for name, (data, expected) in known.items():
            kind, outcome, detail = runner.run(data)
            assert (kind, outcome) == ("pass", expected), (name, detail)


# --- the crashes -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed,ops,sha,was", IMAGE_CRASHES,
                         ids=[c[3].split(":")[0] + "-" + c[2][:6] for c in IMAGE_CRASHES])
def test_image_crash_is_now_a_clean_error(image_seeds, image_runner, seed, ops, sha, was):
    data = fuzzing.apply_recipe(image_seeds[seed], ops, image_seeds)
    assert hashlib.sha256(data).hexdigest().startswith(sha), (
        f"seed {seed} no longer encodes to the bytes the fuzzer found (library update?); re-run "
        f"python tests/support/fuzzing.py and re-derive this recipe (it was: {was})")
    kind, outcome, detail = image_runner.run(data)
    assert (kind, outcome) == ("pass", "decoded" if sha in DECODED else "rejected"), detail


def test_non_numeric_exif_orientation_keeps_the_picture(tmp_path):
    # One IFD entry: Orientation (0x0112) of type ASCII (2), "six", where a SHORT belongs
    # (Pillow refuses to write it, so the EXIF block is built by hand).
    tiff = (b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHI4s", 0x0112, 2, 4, b"six\x00")
            + struct.pack("<I", 0))
    buf = _io.BytesIO()
    Image.fromarray(np.zeros((9, 13, 3), np.uint8)).save(buf, format="JPEG", exif=b"Exif\x00\x00" + tiff)
    assert Image.open(_io.BytesIO(buf.getvalue())).getexif()[0x0112] == "six"
    (tmp_path / "a.jpg").write_bytes(buf.getvalue())
    assert read_image(tmp_path / "a.jpg").pixels.shape == (9, 13, 3)  # orientation 1: as stored


def test_deeply_nested_caffe_parameter_is_described_not_a_recursion_error(tmp_path):
    """Found by hand while writing the caffe target: describe() recursed once per nesting level."""
    inner = fuzzing._pb_uint(1, 1)
    for _ in range(3000):  # 3000 levels in 12 kB
        inner = fuzzing._pb_len(1, inner)
    layer = fuzzing._pb_layer("conv", "Convolution", [], [], extra=fuzzing._pb_len(50, inner))
    path = tmp_path / "deep.caffemodel"
    path.write_bytes(fuzzing._pb_net("deep", [layer]))
    assert fuzzing.check_caffe(path) == "rejected"  # unknown architecture, as a ModelError
    from sice.models import caffe

    assert "bytes>" in caffe.describe(caffe.read_caffemodel(path))


# --- the command -----------------------------------------------------------------------------
def test_fuzz_command_runs_for_the_set_time_and_reports(tmp_path):
    # run as people run it, a script by its path (docs/reliability.md)
    r = subprocess.run([sys.executable, fuzzing.__file__, "--target", "image", "--seconds", "4", "--seed", "0",
                        "--crash-dir", str(tmp_path / "crashes")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"sice fuzz image: (\d+) inputs in (\d+) s .*; (\d+) violating inputs, 0 distinct crashes", r.stdout)
    assert m, r.stdout
    assert int(m.group(1)) > 0 and int(m.group(3)) == 0
    cases = re.search(r"(\d+) of (\d+) cases with a known outcome as required", r.stdout)
    assert cases and cases.group(1) == cases.group(2) and int(cases.group(2)) >= 20, r.stdout
    assert not (tmp_path / "crashes").exists()
