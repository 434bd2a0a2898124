"""Fuzzing the two parsers that read untrusted files: the image loader and the caffemodel reader.

Test tooling, not part of the ``sice`` package (it needs Hypothesis, a test dependency). Run it
from the repository root for a set time and get a report::

    nice -n 10 python tests/support/fuzzing.py --target image --seconds 300 --crash-dir fuzz-crashes
    nice -n 10 python tests/support/fuzzing.py --target caffe --seconds 300 --crash-dir fuzz-crashes

``tests/test_fuzz_regressions.py`` imports it as ``support.fuzzing`` (pytest puts ``tests/`` on
``sys.path``).

The contract that is checked, for ANY bytes:

* ``image``: :func:`sice.io.read_image` returns a valid :class:`sice.io.ImageFile` (C in 1..4,
  uint8/uint16/float32 matching ``bit_depth``, at least 1x1, within the pixel limit) or raises
  :class:`sice.errors.ImageReadError` whose message is one line starting with the path.
* ``caffe``: :func:`sice.models.caffe.read_caffemodel`, :func:`~sice.models.caffe.describe`,
  :func:`~sice.models.caffe.detect_architecture` and :func:`~sice.models.caffe.port_state_dict` succeed or raise
  :class:`sice.errors.ModelError` whose message is one line starting with the path.
* Neither hangs (each input has a time limit) nor uses more memory than the pixel limit allows
  (the worker runs under an address-space limit).
* Decoded float pixels are finite; ported weights are finite and below
  :data:`sice.models.checkpoint.MAX_ABS_WEIGHT`.

Before the random inputs, each campaign runs a fixed list of *cases* whose right outcome is known
(:func:`cases`): JPEGs cut inside their scan data with an end-of-image marker appended (must be
rejected: their pixels are incomplete), float TIFFs holding NaN or infinities, caffemodels with a
NaN or 1e30 weight or crafted to expand in memory, and special files in place of the input (a
FIFO, a symbolic link to /dev/zero or /dev/urandom, a link loop, a folder, a socket), which must
be rejected without hanging.

How: valid seeds are generated in code (:func:`image_seeds`, :func:`caffe_seeds`); Hypothesis
draws a *mutation recipe* per input (bit flips, interesting integers, truncation, deletion,
duplication and splicing of byte ranges, duplicating/dropping/swapping whole PNG chunks, JPEG
segments, RIFF chunks or protobuf fields, and header-field changes found by walking each format's
structure: PNG IHDR, JPEG SOF, BMP header, TIFF/EXIF IFD entries, protobuf varints). The recipes
are driven through ``fuzz_one_input`` with seeded random bytes, so a run is reproducible from
``--seed``. Each input runs in a worker process; a violation (wrong exception type, bad message,
invalid result, hang, worker death, MemoryError) is minimised by dropping recipe steps that are
not needed, de-duplicated by where it happened, and saved as ``<crash-dir>/<id>.bin`` plus
``<id>.json`` (seed name, recipe, traceback): ``apply_recipe(seeds[seed], ops, seeds)`` rebuilds it.

Hypothesis instead of atheris: atheris is not installed here and needs a compiler to build; the
structure-aware recipes matter more for these formats than coverage feedback, and Hypothesis is
already a test dependency.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io as _io
import json
import os
import random
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

import sice

#: Frames in this folder are the reader's own (a crash's signature names the deepest of them).
_SICE_DIR = os.path.dirname(os.path.abspath(sice.__file__)) + os.sep

#: Pixel limit the fuzzed reader runs with: small enough that a header claiming a huge size must
#: be refused, large enough for every legitimate seed.
FUZZ_MAX_PIXELS = 4_000_000
#: Address space the worker may grow by over its size after importing everything, in bytes per
#: allowed pixel (a (H, W, 4) float32 decode plus one converted copy is 32 B/px) with 256 MiB of
#: slack for decoder tables and Python objects.
BYTES_PER_PIXEL = 48
MEMORY_SLACK = 256 << 20

TARGETS = ("image", "caffe")


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------
def _pixels(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _exif(orientation: int = 6) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "FuzzCam"  # Make
    exif[0x0112] = orientation
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x829A] = 1 / 60  # ExposureTime, read by sice.stack.exposure
    exif_ifd[0x8827] = 100  # ISO
    return exif.tobytes()


def image_seeds() -> dict[str, bytes]:
    """Small valid files of every format and mode :func:`sice.io.read_image` handles.

    Returns
    -------
    dict
        name -> file bytes (13x9 px each, most with EXIF; ``jpeg-noise`` 64x48), built
        deterministically.
    """
    from PIL import Image

    from sice.io import write_image

    def pil(img, fmt, **kw) -> bytes:
        buf = _io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    def ours(name, px) -> bytes:
        with tempfile.TemporaryDirectory() as d:
            return write_image(Path(d) / name, px).read_bytes()

    rgb = Image.fromarray(_pixels(9, 13))
    seeds = {
        "jpeg-exif": pil(rgb, "JPEG", quality=80, exif=_exif(6)),
        "jpeg-progressive": pil(rgb, "JPEG", quality=70, progressive=True, exif=_exif(3)),
        "jpeg-cmyk": pil(rgb.convert("CMYK"), "JPEG", quality=80),
        "jpeg-grey": pil(rgb.convert("L"), "JPEG", quality=80),
        # big enough that cuts land in the scan data, not only in the headers
        "jpeg-noise": pil(Image.fromarray(_pixels(48, 64, seed=7)), "JPEG", quality=90),
        "png-rgb-exif": pil(rgb, "PNG", exif=_exif(8)),
        "png-palette-trns": pil(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "PNG",
                                transparency=0),
        "png-la": pil(Image.fromarray(_pixels(9, 13, 2, 1), "LA"), "PNG"),
        "png-rgb16": ours("a.png", _pixels(9, 13, 3, 2).astype(np.uint16) * 257),
        "png-la16": ours("a.png", _pixels(9, 13, 2, 3).astype(np.uint16) * 257),
        "tiff-rgb8": pil(rgb, "TIFF", exif=_exif(5)),
        "tiff-rgb16": ours("a.tif", _pixels(9, 13, 3, 4).astype(np.uint16) * 257),
        "tiff-float": ours("a.tif", _pixels(9, 13, 3, 5).astype(np.float32) / 255),
        "tiff-float-raw": _float_tiff(_pixels(9, 13, 3, 5).astype(np.float32) / 255),  # uncompressed
        "bmp-rgb": pil(rgb, "BMP"),
        "bmp-palette": pil(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "BMP"),
        "webp-lossy-exif": pil(rgb, "WEBP", quality=70, exif=_exif(2)),
        "webp-lossless-rgba": pil(Image.fromarray(_pixels(9, 13, 4, 6), "RGBA"), "WEBP", lossless=True),
    }
    return seeds


def _float_tiff(pixels: np.ndarray) -> bytes:
    """An uncompressed float TIFF: mutations of its bytes reach the pixel values directly."""
    import tifffile

    buf = _io.BytesIO()
    tifffile.imwrite(buf, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack")
    return buf.getvalue()


# A protobuf *encoder*, written by hand because the seeds must be built without the test-only
# protobuf descriptors; the reader under test (sice.models.caffe) is independent of it (the field
# numbers below are caffe.proto's, written out here, not taken from the reader), and
# tests/test_fuzz_regressions.py checks these seeds against the real protobuf library.
#: LayerParameter (NetParameter.layer, field 100) and V1LayerParameter (NetParameter.layers, 2).
_LAYER_FIELDS = {"name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7}
_V1_LAYER_FIELDS = {"name": 4, "type": 5, "bottom": 2, "top": 3, "blobs": 6}
def _pb_varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb_len(number: int, body: bytes) -> bytes:
    return _pb_varint(number << 3 | 2) + _pb_varint(len(body)) + body


def _pb_uint(number: int, value: int) -> bytes:
    return _pb_varint(number << 3) + _pb_varint(value)


def _pb_blob(array: np.ndarray, *, legacy: bool = False) -> bytes:
    """BlobProto: shape (field 7, packed int64 dims) or legacy num/channels/height/width, then
    packed float data (field 5)."""
    a = np.asarray(array, dtype="<f4")
    if legacy:
        dims = (list(a.shape) + [1, 1, 1, 1])[:4] if a.ndim < 4 else list(a.shape)
        head = b"".join(_pb_uint(n, d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        head = _pb_len(7, _pb_len(1, b"".join(_pb_varint(d) for d in a.shape)))
    return head + _pb_len(5, a.tobytes())


def _pb_layer(name: str, type_: str, bottom: list[str], top: list[str], blobs: list[np.ndarray] = (),
              *, v1: bool = False, extra: bytes = b"") -> bytes:
    keys = _V1_LAYER_FIELDS if v1 else _LAYER_FIELDS
    body = _pb_len(keys["name"], name.encode())
    if v1:
        v1_types = {"Convolution": 4, "ReLU": 18, "HDF5Data": 9, "Eltwise": 25}
        body += _pb_uint(keys["type"], v1_types[type_])
    else:
        body += _pb_len(keys["type"], type_.encode())
    body += b"".join(_pb_len(keys["bottom"], b.encode()) for b in bottom)
    body += b"".join(_pb_len(keys["top"], t.encode()) for t in top)
    body += b"".join(_pb_len(keys["blobs"], _pb_blob(b, legacy=v1)) for b in blobs)
    return body + extra


def _pb_net(name: str, layers: list[bytes], *, v1: bool = False) -> bytes:
    return _pb_len(1, name.encode()) + b"".join(_pb_len(2 if v1 else 100, layer) for layer in layers)


def caffe_seeds() -> dict[str, bytes]:
    """Valid ``.caffemodel`` files: two tiny nets (V2 and V1 with legacy blob dims, parameter
    messages, a custom-layer field 998) and the full Model 1 graph (``sice2018-residual``, the
    only one that reaches architecture detection and porting; zero weights)."""
    rng = np.random.default_rng(0)
    conv_param = _pb_len(106, _pb_uint(1, 2) + _pb_uint(4, 3) + _pb_len(7, _pb_len(1, b"msra")))
    dtow_param = _pb_len(998, _pb_uint(1, 0) + _pb_uint(2, 4))
    w = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    b = rng.normal(size=2).astype(np.float32)
    tiny = [_pb_layer("data", "HDF5Data", [], ["data", "label"]),
            _pb_layer("down", "Dtow", ["data"], ["down"], extra=dtow_param),
            _pb_layer("conv_gA1", "Convolution", ["down"], ["conv_gA1"], [w, b], extra=conv_param),
            _pb_layer("relu_gA1", "ReLU", ["conv_gA1"], ["conv_gA1"]),
            _pb_layer("sum", "Eltwise", ["data", "conv_gA1"], ["sum"], extra=_pb_len(110, _pb_uint(1, 1)))]
    tiny_v1 = [_pb_layer("data", "HDF5Data", [], ["data"], v1=True),
               _pb_layer("conv_g1", "Convolution", ["data"], ["conv_g1"], [w, b], v1=True),
               _pb_layer("relu_g1", "ReLU", ["conv_g1"], ["conv_g1"], v1=True)]
    return {"tiny-v2": _pb_net("tiny", tiny), "tiny-v1": _pb_net("tiny1", tiny_v1, v1=True),
            "residual": _residual_net()}


def _residual_net(poison: float | None = None) -> bytes:
    """The Model 1 graph with zero weights; ``poison`` replaces one weight (NaN, 1e30, ...)."""
    from sice.models import create_model

    # the conv layers of Model 1 in order, with their shapes, read off the PyTorch module
    state = create_model("sice2018-residual").state_dict()
    convs = dict.fromkeys(key.rsplit(".", 1)[0] for key in state)
    full = [_pb_layer("data", "HDF5Data", [], ["data", "label"])]
    prev = "data"
    for k, name in enumerate(convs):
        wshape, bshape = state[f"{name}.weight"].shape, state[f"{name}.bias"].shape
        weight = np.zeros(wshape, np.float32)
        if poison is not None and k == 3:
            weight.flat[5] = poison
        full.append(_pb_layer(name, "Convolution", [prev], [name], [weight, np.zeros(bshape, np.float32)]))
        prev = name
    return _pb_net("sice-residual", full)


SEEDS = {"image": image_seeds, "caffe": caffe_seeds}


# --------------------------------------------------------------------------------------------
# Format structure: segments (whole chunks) and header fields (offset, kind)
# --------------------------------------------------------------------------------------------
_WIDTHS = {"u8": 1, "u16be": 2, "u16le": 2, "u24le": 3, "u32be": 4, "u32le": 4}


def _u(data, off, n, big):
    if off < 0 or off + n > len(data):
        return None
    return int.from_bytes(data[off:off + n], "big" if big else "little")


def _tiff_fields(data: bytes, base: int, fields: list) -> None:
    """Fields of a TIFF structure at ``base`` (a TIFF file or an EXIF block): the first-IFD
    offset, each IFD's entry count, every entry's type, count and value, the next-IFD offsets,
    and the same inside the Exif sub-IFD."""
    if _u(data, base, 2, True) not in (0x4949, 0x4D4D):
        return
    big = data[base] == 0x4D
    fields.append((base + 4, "u32be" if big else "u32le"))
    _ifd_fields(data, base, _u(data, base + 4, 4, big), big, fields, set())


def _ifd_fields(data: bytes, base: int, ifd: int | None, big: bool, fields: list, seen: set) -> None:
    e2, e4 = ("u16be", "u32be") if big else ("u16le", "u32le")
    while ifd and base + ifd not in seen and len(seen) < 8:
        seen.add(base + ifd)
        n = _u(data, base + ifd, 2, big)
        if n is None or n > 512:
            return
        fields.append((base + ifd, e2))
        for i in range(n):
            e = base + ifd + 2 + 12 * i
            tag = _u(data, e, 2, big)
            if tag is None:
                return
            fields += [(e + 2, e2), (e + 4, e4), (e + 8, e4), (e + 8, e2)]
            if tag == 0x8769:  # the Exif sub-IFD
                _ifd_fields(data, base, _u(data, e + 8, 4, big), big, fields, seen)
        nxt = base + ifd + 2 + 12 * n
        fields.append((nxt, e4))
        ifd = _u(data, nxt, 4, big)


def _png_structure(data: bytes):
    segments, fields, pos = [], [], 8
    while pos + 12 <= len(data):
        length = _u(data, pos, 4, True)
        end = pos + 12 + length
        if end > len(data):
            break
        fields.append((pos, "u32be"))
        kind = data[pos + 4:pos + 8]
        if kind == b"IHDR":
            fields += [(pos + 8, "u32be"), (pos + 12, "u32be")] + [(pos + 16 + k, "u8") for k in range(5)]
        elif kind == b"eXIf":
            _tiff_fields(data, pos + 8, fields)
        segments.append((pos, end))
        pos = end
    return segments, fields


def _jpeg_structure(data: bytes):
    segments, fields, pos = [], [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        length = _u(data, pos + 2, 2, True)
        fields.append((pos + 2, "u16be"))
        if marker == 0xDA:  # the scan runs to the end-of-image marker: one segment
            end = data.rfind(b"\xff\xd9")
            segments.append((pos, end if end > pos else len(data)))
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            fields += [(pos + 4, "u8"), (pos + 5, "u16be"), (pos + 7, "u16be"), (pos + 9, "u8")]
            fields += [(pos + 10 + 3 * k + j, "u8") for k in range(data[pos + 9] if pos + 9 < len(data) else 0)
                       for j in range(3)]
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            _tiff_fields(data, pos + 10, fields)
        segments.append((pos, pos + 2 + length))
        pos += 2 + length
    return segments, fields


def _riff_structure(data: bytes):
    segments, fields, pos = [], [(4, "u32le")], 12
    while pos + 8 <= len(data):
        size = _u(data, pos + 4, 4, False)
        end = pos + 8 + size + (size & 1)
        fields.append((pos + 4, "u32le"))
        kind = data[pos:pos + 4]
        if kind == b"VP8X":
            fields += [(pos + 8, "u8"), (pos + 12, "u24le"), (pos + 15, "u24le")]
        elif kind == b"VP8 ":
            fields += [(pos + 14, "u16le"), (pos + 16, "u16le")]
        elif kind == b"VP8L":
            fields += [(pos + 9, "u32le")]
        elif kind == b"EXIF":
            _tiff_fields(data, pos + 8, fields)
        segments.append((pos, min(end, len(data))))
        pos = end
    return segments, fields


def _bmp_structure(data: bytes):
    fields = [(o, "u32le") for o in (2, 10, 14, 18, 22, 30, 34, 46)] + [(26, "u16le"), (28, "u16le")]
    return [], fields


def _protobuf_structure(data: bytes):
    """Top-level fields as segments; every key and length varint (nested messages included)
    as a field."""
    segments, fields = [], []

    def walk(start: int, end: int, depth: int, top: bool) -> bool:
        pos = start
        found = []
        while pos < end:
            field_start = pos
            key_at = pos
            key, pos = _read_varint(data, pos, end)
            if key is None or key >> 3 == 0:
                return False
            wire = key & 7
            found.append((key_at, "varint"))
            if wire == 0:
                value_at = pos
                _, pos = _read_varint(data, pos, end)
                if pos is None:
                    return False
                found.append((value_at, "varint"))
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            elif wire == 2:
                len_at = pos
                n, pos = _read_varint(data, pos, end)
                if n is None or pos + n > end:
                    return False
                found.append((len_at, "varint"))
                # nested messages; big values deeper down are float data, not messages
                if n > 0 and (depth < 2 or (depth < 6 and n <= 4096)):
                    walk(pos, pos + n, depth + 1, False)
                pos += n
            else:
                return False
            if pos > end:
                return False
            if top:
                segments.append((field_start, pos))
        fields.extend(found)
        return True

    walk(0, len(data), 0, True)
    return segments, fields


def _read_varint(data: bytes, pos: int, end: int):
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None, None


def structure(data: bytes):
    """``(segments, fields)`` of ``data`` by its magic number: segments are ``(start, end)``
    byte ranges of whole chunks; fields are ``(offset, kind)`` header numbers that mutations
    target (kind ``u8``, ``u16be``... or ``varint``)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_structure(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_structure(data)
    if data[:4] == b"RIFF":
        return _riff_structure(data)
    if data[:2] == b"BM":
        return _bmp_structure(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        fields: list = []
        _tiff_fields(data, 0, fields)
        return [], fields
    return _protobuf_structure(data)


def _fix_png_crcs(data: bytearray) -> bytearray:
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            break
        data[end - 4:end] = struct.pack(">I", zlib.crc32(bytes(data[pos + 4:end - 4])) & 0xFFFFFFFF)
        pos = end
    return data


# --------------------------------------------------------------------------------------------
# Mutation recipes
# --------------------------------------------------------------------------------------------
#: Integers that break parsers: zero, one, sign and width boundaries.
INTERESTING = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 64, 127, 128, 255, 256, 1000, 4096, 32767, 32768,
               65535, 65536, 100000, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1)


def apply_recipe(seed: bytes, ops, seeds: dict[str, bytes] | None = None) -> bytes:
    """The bytes that ``ops`` make of ``seed``; every position is taken modulo the current
    length, so any recipe applies to any input.

    Parameters
    ----------
    seed : bytes
    ops : sequence of lists
        ``[op, *ints]`` steps: ``flip pos bit``, ``byte pos value``, ``int pos width big value``,
        ``truncate pos``, ``delete pos n``, ``duplicate pos n at``, ``insert pos hex``,
        ``splice seed_name pos pos2``, ``chunk action i j`` (action 0 duplicate, 1 drop, 2 swap),
        ``field i value`` (a header field from :func:`structure`), ``fixcrc``, ``cutend pos``
        (cut, then append the format's end marker: a JPEG cut short behind an intact EOI),
        ``float pos kind`` (write NaN, +-infinity or 1e38 as a float32 of either byte order).
    seeds : dict, optional
        For ``splice``.
    """
    data = bytearray(seed)
    for op in ops:
        kind, args = op[0], list(op[1:])
        n = len(data)
        if kind == "fixcrc":
            if data[:8] == b"\x89PNG\r\n\x1a\n":
                data = _fix_png_crcs(data)
            continue
        if kind == "insert":
            pos = args[0] % (n + 1)
            data[pos:pos] = bytes.fromhex(args[1])
            continue
        if kind == "splice":
            other = (seeds or {}).get(args[0], b"")
            data = data[:args[1] % (n + 1)] + bytearray(other[args[2] % (len(other) + 1):])
            continue
        if n == 0:
            continue
        if kind == "cutend":
            data = data[:args[0] % n] + _end_marker(bytes(data))
        elif kind == "float":
            value = (float("nan"), float("inf"), float("-inf"), 1e38)[args[1] % 4]
            raw = struct.pack(">f" if args[1] % 8 >= 4 else "<f", value)
            pos = args[0] % n
            data[pos:pos + 4] = raw[:max(0, n - pos)]
        elif kind == "flip":
            data[args[0] % n] ^= 1 << (args[1] % 8)
        elif kind == "byte":
            data[args[0] % n] = args[1] & 0xFF
        elif kind == "int":
            width = 2 if args[1] % 2 == 0 else 4
            pos = args[0] % n
            value = (args[3] & ((1 << 8 * width) - 1)).to_bytes(width, "big" if args[2] % 2 else "little")
            data[pos:pos + width] = value[:max(0, n - pos)]
        elif kind == "truncate":
            data = data[:args[0] % n]
        elif kind == "delete":
            pos = args[0] % n
            del data[pos:pos + args[1]]
        elif kind == "duplicate":
            pos = args[0] % n
            piece = data[pos:pos + args[1]]
            at = args[2] % (n + 1)
            data[at:at] = piece
        elif kind == "chunk":
            segments, _ = structure(bytes(data))
            if not segments:
                continue
            a, b = segments[args[1] % len(segments)], segments[args[2] % len(segments)]
            if args[0] % 3 == 0:
                data[a[1]:a[1]] = data[a[0]:a[1]]
            elif args[0] % 3 == 1:
                del data[a[0]:a[1]]
            elif a != b:
                first, second = sorted((a, b))
                if first[1] <= second[0]:
                    data = (data[:first[0]] + data[second[0]:second[1]] + data[first[1]:second[0]]
                            + data[first[0]:first[1]] + data[second[1]:])
        elif kind == "field":
            _, fields = structure(bytes(data))
            if not fields:
                continue
            offset, fkind = fields[args[0] % len(fields)]
            value = args[1]
            if fkind == "varint":
                _, end = _read_varint(data, offset, len(data))
                if end is not None:
                    data[offset:end] = _pb_varint(value)
            else:
                width = _WIDTHS[fkind]
                raw = (value & ((1 << 8 * width) - 1)).to_bytes(width, "big" if fkind.endswith("be") else "little")
                data[offset:offset + width] = raw[:max(0, len(data) - offset)]
                if data[:8] == b"\x89PNG\r\n\x1a\n":
                    data = _fix_png_crcs(data)  # a header change, not a checksum test
        else:
            raise ValueError(f"unknown mutation {kind!r}")
    return bytes(data)


def _end_marker(data: bytes) -> bytes:
    """What ends a file of ``data``'s format: JPEG EOI, an empty PNG IEND chunk, else nothing."""
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b""


def recipe_strategy(seeds: dict[str, bytes]):
    """Hypothesis strategy of ``(seed name, ops)`` for :func:`apply_recipe`."""
    from hypothesis import strategies as st

    pos = st.integers(0, 2**20)
    value = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1),
                      st.integers(0, 255))
    op = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("byte"), pos, value),
        st.tuples(st.just("int"), pos, st.integers(0, 1), st.integers(0, 1), value),
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
        st.tuples(st.just("duplicate"), pos, st.integers(1, 256), pos),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=16).map(bytes.hex)),
        st.tuples(st.just("splice"), st.sampled_from(sorted(seeds)), pos, pos),
        st.tuples(st.just("chunk"), st.integers(0, 2), st.integers(0, 63), st.integers(0, 63)),
        st.tuples(st.just("field"), st.integers(0, 1023), value),
        st.tuples(st.just("field"), st.integers(0, 1023), value),
        st.tuples(st.just("fixcrc")),
        st.tuples(st.just("cutend"), pos),
        st.tuples(st.just("float"), pos, st.integers(0, 7)),
    )
    return st.tuples(st.sampled_from(sorted(seeds)), st.lists(op.map(list), min_size=1, max_size=4))


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------
class Violation(Exception):
    """A contract violation found by a check (the reader returned or raised something wrong)."""


def _check_message(message: str, path: Path) -> None:
    if "\n" in message or "\r" in message:
        raise Violation(f"error message is not one line: {message!r}")
    if not message.startswith(str(path)):
        raise Violation(f"error message does not start with the path: {message!r}")


def check_image(path: os.PathLike | str, max_pixels: int = FUZZ_MAX_PIXELS) -> str:
    """Run :func:`sice.io.read_image` on ``path`` and check the contract.

    Returns
    -------
    str
        ``"decoded"`` or ``"rejected"`` (a proper :class:`ImageReadError`).

    Raises
    ------
    Violation
        A bad message or an invalid :class:`ImageFile`; any other exception propagates (also a
        violation).
    """
    from sice.errors import ImageReadError
    from sice.io import FORMATS, read_image

    path = Path(path)
    try:
        im = read_image(path, max_pixels=max_pixels)
    except ImageReadError as exc:
        _check_message(str(exc), path)
        return "rejected"
    px = im.pixels
    depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16, np.dtype(np.float32): 32}
    problems = []
    if not isinstance(px, np.ndarray) or px.ndim != 3 or px.shape[2] not in (1, 2, 3, 4):
        problems.append(f"pixels of shape {getattr(px, 'shape', None)}")
    elif px.shape[0] < 1 or px.shape[1] < 1 or px.shape[0] * px.shape[1] > max_pixels:
        problems.append(f"size {px.shape[1]}x{px.shape[0]} outside 1..{max_pixels} pixels")
    if not isinstance(px, np.ndarray) or depth.get(px.dtype) != im.bit_depth:
        problems.append(f"dtype {getattr(px, 'dtype', None)} with bit_depth {im.bit_depth}")
    elif px.dtype.kind == "f" and not np.isfinite(px).all():
        problems.append("NaN or infinite float pixels")
    if im.format not in FORMATS:
        problems.append(f"format {im.format!r}")
    if not (im.exif is None or isinstance(im.exif, bytes)) or not (im.icc is None or isinstance(im.icc, bytes)):
        problems.append(f"metadata of types {type(im.exif).__name__}, {type(im.icc).__name__}")
    if problems:
        raise Violation(f"invalid ImageFile: {'; '.join(problems)}")
    return "decoded"


def check_caffe(path: os.PathLike | str, max_pixels: int = FUZZ_MAX_PIXELS) -> str:
    """Read, describe, recognise and port ``path`` with :mod:`sice.models.caffe`; check the contract.

    Returns ``"ported"`` or ``"rejected"`` (a proper :class:`ModelError`); raises
    :class:`Violation` for a bad message (other exceptions propagate: also violations).
    ``max_pixels`` is unused (same signature as :func:`check_image`).
    """
    from sice.errors import ModelError
    from sice.models import caffe

    path = Path(path)
    try:
        net = caffe.read_caffemodel(path)
        text = caffe.describe(net)
        if not isinstance(text, str):
            raise Violation(f"describe returned {type(text).__name__}")
        arch = caffe.detect_architecture(net)
        state = caffe.port_state_dict(net, arch)
    except ModelError as exc:
        _check_message(str(exc), path)
        return "rejected"
    from sice.models.checkpoint import MAX_ABS_WEIGHT

    for name, tensor in state.items():
        if not bool(tensor.isfinite().all()) or float(tensor.abs().max()) > MAX_ABS_WEIGHT:
            raise Violation(f"ported weights: {name} is not finite or above {MAX_ABS_WEIGHT:g}")
    return "ported"


# --------------------------------------------------------------------------------------------
# Cases whose right outcome is known
# --------------------------------------------------------------------------------------------
#: Special files put in place of the input: name -> (kind, link target).
SPECIAL_FILES = {
    "fifo": ("fifo", ""), "link-to-dev-zero": ("link", "/dev/zero"),
    "link-to-dev-urandom": ("link", "/dev/urandom"), "link-loop": ("loop", ""), "folder": ("dir", ""),
    "socket": ("socket", ""), "dangling-link": ("link", "/nonexistent/sice-fuzz"),
}


def cases(target: str) -> dict[str, tuple[bytes | tuple, str]]:
    """Inputs whose right outcome is known, run before the random ones.

    Returns
    -------
    dict
        name -> (input, required outcome). The input is file bytes or ``("special", kind,
        link target)`` (see :data:`SPECIAL_FILES`); every case here must be ``"rejected"``.
    """
    out: dict[str, tuple[bytes | tuple, str]] = {
        f"special-{name}": (("special", kind, dest), "rejected") for name, (kind, dest) in SPECIAL_FILES.items()}
    if target == "image":
        seeds = image_seeds()
        for name in ("jpeg-noise", "jpeg-exif", "jpeg-grey", "jpeg-progressive"):
            start, end = _first_scan(seeds[name])
            for fraction in (0.2, 0.5, 0.8):
                cut = start + int((end - start) * fraction)
                out[f"{name}-cut-at-{fraction:.0%}-of-its-scan-then-eoi"] = (seeds[name][:cut] + b"\xff\xd9",
                                                                               "rejected")
        for label, value in (("nan", np.nan), ("inf", np.inf), ("minus-inf", -np.inf)):
            rgb = _pixels(9, 13, 3, 5).astype(np.float32) / 255
            rgb[4, 6, 1] = value
            out[f"tiff-float-rgb-{label}"] = (_float_tiff(rgb), "rejected")
            out[f"tiff-float-grey-{label}"] = (_float_tiff(np.ascontiguousarray(rgb[..., 1])), "rejected")
    else:
        for label, value in (("nan", np.nan), ("inf", np.inf), ("1e30", 1e30)):
            out[f"residual-weight-{label}"] = (_residual_net(value), "rejected")
        named = _pb_len(1, b"a")
        out["20000-layers"] = (_pb_len(100, named) * 20_000, "rejected")
        out["200000-parameter-fields"] = (_pb_len(100, named + _pb_uint(9, 1) * 200_000), "rejected")
        out["20-blobs-in-a-layer"] = (_pb_len(100, named + _pb_len(7, b"") * 20), "rejected")
        out["40-blob-axes"] = (_pb_len(100, named + _pb_len(7, _pb_len(7, _pb_len(1, b"\x01" * 40)))), "rejected")
    return out


def _first_scan(data: bytes) -> tuple[int, int]:
    """Start and end of a JPEG's first entropy-coded segment (after the first SOS header, up to
    the next marker that is not a stuffed byte or a restart marker)."""
    pos = 2
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:
            start = end = pos + 2 + length
            while end + 1 < len(data) and not (data[end] == 0xFF and data[end + 1] not in (0, *range(0xD0, 0xD8))):
                end += 1
            return start, end
        pos += 2 + length
    raise ValueError("no scan in this JPEG")


def _make_special(path: Path, kind: str, dest: str):
    """Put a special file at ``path``; returns what must stay open (a socket) or None."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link":
        os.symlink(dest, path)
    elif kind == "loop":
        os.symlink(path.name, path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "socket":
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    return None


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()


CHECKS = {"image": check_image, "caffe": check_caffe}
SUFFIX = {"image": ".img", "caffe": ".caffemodel"}


def signature(exc: BaseException) -> str:
    """Where a violation happened, for de-duplication: type and the deepest sice frame (or the
    deepest frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(_SICE_DIR)]
    where = (ours or frames or [None])[-1]
    place = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
    if isinstance(exc, Violation):
        return f"Violation({str(exc).split(':')[0]}) at {place}"
    kind = type(exc).__qualname__
    if type(exc).__module__ not in ("builtins", __name__):
        kind = f"{type(exc).__module__}.{kind}"
    return f"{kind} at {place}"


# --------------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------------
def _vm_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _check_for(target: str):
    """``(check, seeds)`` of a target name, or of ``"module:function"`` (a check of the same
    signature with no seeds; the tests use it to show that hangs and over-allocation are caught)."""
    if target in CHECKS:
        return CHECKS[target], SEEDS[target]
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name), dict


def _worker(target: str, conn, workdir: str, max_pixels: int, memory: int) -> None:
    import resource
    import warnings

    warnings.simplefilter("ignore")  # readers warn about odd files; only exceptions matter here
    # Library chatter (libjpeg, OpenCV) goes to a log, not the report.
    log = os.open(os.path.join(workdir, "worker.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 2)
    check, seeds = _check_for(target)
    suffix = SUFFIX.get(target, ".bin")
    # Warm up every import and lazy table with the seeds, then fix the address-space ceiling.
    for data in seeds().values():
        p = Path(workdir) / f"seed{suffix}"
        p.write_bytes(data)
        check(p, max_pixels)
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + memory, resource.RLIM_INFINITY))
    conn.send(("ready", "", ""))
    path = Path(workdir) / f"input{suffix}"
    keep = None
    while True:
        data = conn.recv()
        if data is None:
            return
        if keep is not None:
            keep.close()
        _clear(path)
        if isinstance(data, tuple):  # ("special", kind, link target)
            keep = _make_special(path, data[1], data[2])
        else:
            keep = None
            path.write_bytes(data)
        try:
            outcome = check(path, max_pixels)
            reply = ("pass", outcome, "")
        except BaseException as exc:  # noqa: BLE001 - every other exception is what we look for
            reply = ("violation", signature(exc), "".join(traceback.format_exception(exc)))
        reply += (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,)
        conn.send(reply)


class _Runner:
    """Runs inputs in a worker process with a time limit; restarts it after a hang or death."""

    def __init__(self, target: str, workdir: Path, *, max_pixels: int, memory: int, timeout: float):
        self.target, self.workdir, self.max_pixels, self.memory = target, workdir, max_pixels, memory
        self.timeout = timeout
        self.proc = self.conn = None
        self.restarts = 0
        self.peak_rss = 0

    def start(self) -> None:
        import multiprocessing

        # spawn: a fresh interpreter per worker (no inherited threads or locks); few malloc
        # arenas and one thread each, so that the address-space limit measures the reader.
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(k, "1")
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(self.target, child, str(self.workdir), self.max_pixels,
                                                      self.memory), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        try:
            if not parent.poll(600):
                raise RuntimeError("the fuzz worker did not start within 10 minutes")
            parent.recv()
        except EOFError:
            log = self.workdir / "worker.log"
            raise RuntimeError(f"the fuzz worker died while starting (a seed fails its own check?): "
                               f"{log.read_text()[-2000:] if log.exists() else ''}") from None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
            self.proc = None

    def run(self, data: bytes | tuple, timeout: float | None = None) -> tuple[str, str, str]:
        """``(kind, outcome or signature, detail)``; kind ``pass``, ``violation``, ``hang`` or ``died``."""
        if self.proc is None:
            self.start()
        try:
            self.conn.send(data)
            ready = self.conn.poll(timeout or self.timeout)
            if ready:
                kind, what, detail, rss = self.conn.recv()
                self.peak_rss = max(self.peak_rss, rss)
                return kind, what, detail
        except (EOFError, BrokenPipeError, ConnectionResetError):
            ready = True
        alive = self.proc.is_alive()
        code = self.proc.exitcode
        self.stop()
        self.restarts += 1
        if ready or not alive:
            return "died", f"worker died (exit status {code})", f"exit status {code}"
        return "hang", "hang", f"no result within {timeout or self.timeout:g} s"


# --------------------------------------------------------------------------------------------
# The campaign
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Crash:
    signature: str
    seed: str
    ops: list
    detail: str
    size: int
    file: Path | None = None


@dataclasses.dataclass
class FuzzReport:
    target: str
    seconds: float
    inputs: int = 0
    outcomes: Counter = dataclasses.field(default_factory=Counter)
    crashes: dict = dataclasses.field(default_factory=dict)  # signature -> Crash
    violations: int = 0
    cases: int = 0
    cases_ok: int = 0
    slow: int = 0
    restarts: int = 0
    peak_rss: int = 0
    memory_limit: int = 0

    def text(self) -> str:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        lines = [f"sice fuzz {self.target}: {self.inputs} inputs in {self.seconds:.0f} s ({rate:.1f}/s); "
                 + ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
                 + f"; {self.violations} violating inputs, {len(self.crashes)} distinct crashes; "
                 f"{self.slow} slow but finished; {self.restarts} worker restarts; peak worker RSS "
                 f"{self.peak_rss / 2**20:.0f} MiB (address-space allowance {self.memory_limit / 2**20:.0f} MiB "
                 f"over the warmed-up worker); {self.cases_ok} of {self.cases} cases with a known outcome "
                 "as required"]
        for c in self.crashes.values():
            lines.append(f"  CRASH {c.signature}: seed {c.seed}, ops {json.dumps(c.ops)}, {c.size} bytes"
                         + (f" -> {c.file}" if c.file else ""))
            lines.append("    " + c.detail.strip().splitlines()[-1][:300])
        return "\n".join(lines)


def fuzz(target: str, seconds: float, crash_dir: os.PathLike | str | None = None, *, seed: int = 0,
         timeout: float = 10.0, max_pixels: int = FUZZ_MAX_PIXELS, memory: int | None = None,
         echo=None) -> FuzzReport:
    """Fuzz ``target`` for ``seconds`` and return the report (crashes saved to ``crash_dir``).

    Parameters
    ----------
    target : {"image", "caffe"}
    seconds : float
        Wall time of the campaign (the worker's start-up not included).
    crash_dir : path-like, optional
        Where each distinct crash is saved (``.bin`` input + ``.json`` recipe and traceback).
    seed : int
        Seeds the random bytes that Hypothesis turns into recipes: same seed, same inputs.
    timeout : float
        Seconds one input may take; a timeout is re-run once with 3x the time before it counts
        as a hang (the machine is shared, a slow moment is not a hang).
    max_pixels : int
        Pixel limit passed to the reader.
    memory : int, optional
        Address-space allowance of the worker in bytes (default from ``max_pixels``); 0 = none.
    echo : callable, optional
        Receives a line per new crash and progress every minute.

    Returns
    -------
    FuzzReport
        Counts of inputs and outcomes, the distinct crashes (minimised recipes), peak memory;
        ``report.text()`` is what the command prints.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    from hypothesis import given, settings

    say = echo or (lambda _m: None)
    seeds = SEEDS[target]()
    memory = BYTES_PER_PIXEL * max_pixels + MEMORY_SLACK if memory is None else memory
    report = FuzzReport(target, 0.0, memory_limit=memory)
    crash_dir = Path(crash_dir) if crash_dir else None
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="sice-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as wd:
        runner = _Runner(target, Path(wd), max_pixels=max_pixels, memory=memory, timeout=timeout)
        runner.start()

        def run_once(data: bytes | tuple) -> tuple[str, str, str]:
            kind, what, detail = runner.run(data)
            if kind == "hang":  # confirm with more time before calling it a hang
                kind, what, detail = runner.run(data, timeout * 3)
                if kind == "pass":
                    report.slow += 1
            return kind, what, detail

        def minimise(name: str, ops: list, sig: str) -> list:
            changed = True
            while changed and len(ops) > 1:
                changed = False
                for i in range(len(ops)):
                    trial = ops[:i] + ops[i + 1:]
                    k, w, _ = run_once(apply_recipe(seeds[name], trial, seeds))
                    if k != "pass" and w == sig:
                        ops, changed = trial, True
                        break
            return ops

        @settings(database=None)
        @given(recipe_strategy(seeds))
        def one(recipe):
            name, ops = recipe
            data = apply_recipe(seeds[name], ops, seeds)
            kind, what, detail = run_once(data)
            report.inputs += 1
            if kind == "pass":
                report.outcomes[what] += 1
                return
            report.violations += 1
            if what in report.crashes:
                return
            ops = minimise(name, [list(o) for o in ops], what)
            record(what, name, ops, detail, apply_recipe(seeds[name], ops, seeds))

        def record(what: str, name: str, ops: list, detail: str, data: bytes) -> None:
            crash = Crash(what, name, ops, detail, len(data))
            if crash_dir is not None:
                crash_dir.mkdir(parents=True, exist_ok=True)
                cid = f"{target}-{hashlib.sha256(what.encode()).hexdigest()[:10]}"
                crash.file = crash_dir / f"{cid}.bin"
                crash.file.write_bytes(data)
                (crash_dir / f"{cid}.json").write_text(json.dumps(
                    {"target": target, "signature": what, "seed": name, "ops": ops, "size": len(data),
                     "sha256": hashlib.sha256(data).hexdigest(), "detail": detail}, indent=1) + "\n")
            report.crashes[what] = crash
            say(f"new crash: {what} (seed {name}, ops {json.dumps(ops)})")

        for name, (data, expected) in cases(target).items():
            kind, what, detail = run_once(data)
            report.cases += 1
            if kind == "pass" and what == expected:
                report.cases_ok += 1
                continue
            report.violations += 1
            what = f"case {name}: expected {expected}, got {what}"
            record(what, name, [["case", name]], detail, data if isinstance(data, bytes) else b"")

        start = time.monotonic()
        next_note = start + 60
        try:
            while time.monotonic() - start < seconds:
                one.hypothesis.fuzz_one_input(rng.randbytes(256))
                if time.monotonic() >= next_note:
                    next_note += 60
                    say(f"{report.inputs} inputs, {len(report.crashes)} crashes")
        finally:
            report.seconds = time.monotonic() - start
            report.restarts = runner.restarts
            report.peak_rss = runner.peak_rss
            if runner.proc is not None and runner.proc.is_alive():
                runner.conn.send(None)  # let it exit on its own
            runner.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/support/fuzzing.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="campaign length (default 60)")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"),
                        help="where crashing inputs are saved (default ./fuzz-crashes)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same inputs)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per input before a hang")
    parser.add_argument("--max-pixels", type=int, default=FUZZ_MAX_PIXELS, help="pixel limit of the reader")
    args = parser.parse_args(argv)
    report = fuzz(args.target, args.seconds, args.crash_dir, seed=args.seed, timeout=args.timeout,
                  max_pixels=args.max_pixels, echo=lambda m: print(m, file=sys.stderr, flush=True))
    print(report.text(), flush=True)
    return 1 if report.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
