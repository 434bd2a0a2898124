"""Reading the original SICE ``.caffemodel`` files and porting them to :mod:`sice.models.sice2018`.

A ``.caffemodel`` is a serialised Caffe ``NetParameter`` protobuf: the training-net definition
with each layer's learned blobs (weight ``N x C x kh x kw``, then bias) embedded. This module
reads it, recognises which of the three released networks it holds from the layer names and
blob shapes, and fills the PyTorch model whose attributes carry the same layer names.

Two facts of the release decide the port (see DESIGN.md):

* MATLAB handed images to Caffe as ``W x H x C`` arrays, so the networks were trained on
  transposed images. Running the net on an image ``X`` the way it was trained is
  ``f(X^T)^T``; for 3x3 convolutions that equals running it on ``X`` with each kernel's two
  spatial axes swapped, which is what :func:`port_state_dict` does (``transpose=True``).
* Images are RGB (MATLAB order), not BGR: channels are copied as they are.

Model 3 has two space-to-depth layers ("Dtow", 4x4 blocks) whose channel order the release
does not publish. Our :class:`~sice.models.sice2018.SICEPerPixel` uses PyTorch's
``pixel_unshuffle`` order; the imported weights are permuted from the release's order, which
was decided by reproducing the authors' demo screenshot (docs/caffe-port.md):
:data:`DEFAULT_S2D_ORDER`.

The authors' demo (bicubic down-scaling, crop to a multiple of 4, registration to their
screenshot) is re-created test-side, in ``tests/support/caffe_demo.py``, so the port can be
checked against their own result.

References
----------
.. [1] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE TIP 27(4):2049-2062, 2018.
.. [2] Y. Jia et al., "Caffe: Convolutional Architecture for Fast Feature Embedding", ACM MM
   2014 (``caffe.proto``: NetParameter, LayerParameter, V1LayerParameter, BlobProto).
.. [3] Protocol Buffers encoding, https://protobuf.dev/programming-guides/encoding/
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn

from ..errors import ModelError
from . import create_model
from .checkpoint import check_weights

#: The architectures a caffemodel can be ported to (registry names), in detection order.
ARCHITECTURES = ("sice2018-residual", "sice2018", "sice2018-perpixel")

#: Space-to-depth channel orders tried for Model 3, named by significance in Caffe's own frame
#: (``c`` channel, ``i`` offset along Caffe's height axis, ``j`` along its width axis; the
#: leftmost letter varies slowest): ``"cij"`` = ``c * 16 + i * 4 + j``, ``"ijc"`` =
#: ``(i * 4 + j) * C + c``.
S2D_ORDERS = ("cij", "cji", "ijc", "jic")

#: The order of the release's "Dtow" layers, found by matching the authors' demo screenshot.
DEFAULT_S2D_ORDER = "cij"

# --------------------------------------------------------------------------------------------
# Protobuf wire format
# --------------------------------------------------------------------------------------------
# Hand-written on purpose: there is no compiled caffe.proto in any maintained package, the
# release uses custom layers ("Dtow" with parameter field 998, "PixelConv") that upstream
# caffe.proto does not describe anyway, and only a dozen fields are needed. Reading them takes
# 40 lines, decodes the packed float blobs zero-copy with NumPy, and reports truncation with
# the byte offset, where a generated parser would only say "Error parsing message".
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _WireError(Exception):
    """Malformed protobuf; carries a reason without the file name (added by the caller)."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError(f"varint longer than 10 bytes at byte {pos}")


def _fields(buf: memoryview, base: int = 0) -> Iterator[tuple[int, int, object, int]]:
    """Yield ``(field number, wire type, value, file offset of value)`` of one message.

    ``base`` is the message's own offset in the file (for error messages). Varints come as
    ``int``, fixed 32/64-bit and length-delimited values as ``memoryview``.
    """
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError(f"field number 0 at byte {base + start}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value, base + start
            continue
        if wire not in (_I64, _I32, _LEN):
            raise _WireError(f"invalid wire type {wire} at byte {base + start}")
        if wire == _LEN:
            size, pos = _varint(buf, pos)
        else:
            size = 8 if wire == _I64 else 4
        if pos + size > len(buf):
            raise _WireError(f"truncated: field {number} at byte {base + start} needs {size} "
                             f"bytes, only {len(buf) - pos} left")
        yield number, wire, buf[pos:pos + size], base + pos
        pos += size


def _packed_ints(wire: int, value, most: int) -> list[int]:
    """The varints of a (packed) repeated field; stops after ``most`` of them."""
    if wire == _VARINT:
        return [value]
    out, pos = [], 0
    while pos < len(value) and len(out) < most:
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def _text(value) -> str:
    return bytes(value).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# The caffe.proto subset
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CaffeBlob:
    """One ``BlobProto``: its shape (``shape.dim`` or legacy num/channels/height/width) and data."""

    shape: tuple[int, ...]
    data: np.ndarray  # float32, flat


@dataclasses.dataclass
class CaffeLayer:
    """One layer: ``LayerParameter`` (V2, ``NetParameter.layer``) or ``V1LayerParameter``."""

    name: str
    type: str
    bottom: list[str]
    top: list[str]
    blobs: list[CaffeBlob]
    params: dict[int, list] = dataclasses.field(default_factory=dict)  # other fields, raw


@dataclasses.dataclass
class CaffeNet:
    """A parsed ``.caffemodel``."""

    path: str
    name: str
    layers: list[CaffeLayer]
    format: str  # "V2 (layer)" or "V1 (layers)"
    sha256: str

    def layer(self, name: str) -> CaffeLayer | None:
        return next((l for l in self.layers if l.name == name), None)


# NetParameter: name = 1, layers (V1) = 2, layer (V2) = 100.
# LayerParameter: name 1, type 2 (string), bottom 3, top 4, blobs 7.
# V1LayerParameter: bottom 2, top 3, name 4, type 5 (enum), blobs 6.
# BlobProto: num 1, channels 2, height 3, width 4, data 5 (packed float), shape 7 (BlobShape:
# dim 1, packed int64), double_data 8.
_V2 = {"name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7}
_V1 = {"name": 4, "type": 5, "bottom": 2, "top": 3, "blobs": 6}
_V1_TYPES = {  # V1LayerParameter.LayerType values that a SICE-like net can contain
    0: "None", 1: "Accuracy", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 9: "HDF5Data", 14: "InnerProduct", 17: "Pooling", 18: "ReLU",
    19: "Sigmoid", 22: "Split", 23: "TanH", 25: "Eltwise", 29: "MemoryData", 39: "Deconvolution",
}


#: Limits of what a caffemodel may hold, far above the release (2-3 MB files, 34-37 layers,
#: 34 blobs, at most 3 parameter fields per layer) and below what would let a crafted file of a
#: few MB expand to GBs of Python objects (fuzzing: 12 MB of empty layers took 1 GB).
MAX_FILE_BYTES = 256 << 20
MAX_LAYERS = 10_000
MAX_ENTRIES = 100_000  # layers + blobs + names + parameter fields, in all
MAX_BLOBS_PER_LAYER = 16
MAX_AXES = 32  # Caffe's own kMaxBlobAxes


class _Budget:
    """Counts the Python objects a parse creates and stops it past :data:`MAX_ENTRIES`."""

    def __init__(self) -> None:
        self.entries = 0

    def take(self, n: int = 1) -> None:
        self.entries += n
        if self.entries > MAX_ENTRIES:
            raise _WireError(f"more than {MAX_ENTRIES:,} entries (layers, blobs, names, parameters)")


def _parse_blob(buf: memoryview, base: int, budget: _Budget) -> CaffeBlob:
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    have_legacy = False
    shape: list[int] | None = None
    floats = bytearray()  # little-endian float32 values, however the file spreads them
    for number, wire, value, offset in _fields(buf, base):
        if number in legacy and wire == _VARINT:
            legacy[number] = value
            have_legacy = True
        elif number == 7 and wire == _LEN:
            shape = []
            for n, w, v, _ in _fields(value, offset):
                if n == 1:
                    shape.extend(_packed_ints(w, v, MAX_AXES + 1 - len(shape)))
                if len(shape) > MAX_AXES:
                    raise _WireError(f"blob at byte {offset} has more than {MAX_AXES} axes")
        elif number == 5 and wire == _LEN:  # packed floats
            if len(value) % 4:
                raise _WireError(f"blob data of {len(value)} bytes is not a float array")
            floats += value
        elif number == 5 and wire == _I32:  # unpacked float: appended to one buffer, not one array each
            floats += value
        elif number == 8 and wire == _LEN:  # double_data
            floats += np.frombuffer(value[: len(value) // 8 * 8], dtype="<f8").astype("<f4").tobytes()
    if shape is None:
        shape = [legacy[1], legacy[2], legacy[3], legacy[4]] if have_legacy else []
    return CaffeBlob(tuple(int(d) for d in shape), np.frombuffer(floats, dtype="<f4").astype(np.float32))


def _parse_layer(buf: memoryview, base: int, keys: dict[str, int], v1: bool, budget: _Budget) -> CaffeLayer:
    layer = CaffeLayer(name="", type="", bottom=[], top=[], blobs=[])
    for number, wire, value, offset in _fields(buf, base):
        budget.take()
        if number == keys["name"] and wire == _LEN:
            layer.name = _text(value)
        elif number == keys["type"]:
            if v1 and wire == _VARINT:
                layer.type = _V1_TYPES.get(value, f"V1type{value}")
            elif wire == _LEN:
                layer.type = _text(value)
        elif number == keys["bottom"] and wire == _LEN:
            layer.bottom.append(_text(value))
        elif number == keys["top"] and wire == _LEN:
            layer.top.append(_text(value))
        elif number == keys["blobs"] and wire == _LEN:
            if len(layer.blobs) == MAX_BLOBS_PER_LAYER:
                raise _WireError(f"layer at byte {base} has more than {MAX_BLOBS_PER_LAYER} blobs")
            layer.blobs.append(_parse_blob(value, offset, budget))
        else:
            layer.params.setdefault(number, []).append((wire, value))
    for k, blob in enumerate(layer.blobs):
        needed = int(np.prod(blob.shape, dtype=object))
        if blob.data.size and blob.data.size != needed:  # no blob is ever used against its shape
            what = ("weight", "bias")[k] if k < 2 else f"blob {k}"
            raise _WireError(f"layer {layer.name!r}: {what} {_fmt_shape(blob.shape)} needs {needed} values, "
                             f"found {blob.data.size}")
    return layer


def read_caffemodel(path: os.PathLike | str) -> CaffeNet:
    """Parse a ``.caffemodel`` (V2 ``layer`` or V1 ``layers`` field).

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    CaffeNet
        Its layers in file order with their blobs (float32).

    Raises
    ------
    ModelError
        Missing, unreadable or not a regular file (FIFO, device), larger than
        :data:`MAX_FILE_BYTES`, malformed or truncated protobuf, more layers, blobs or axes than
        the limits above, a blob whose values do not fill its shape, or a protobuf without
        layers; the message starts with the path.
    """
    path = Path(path)
    raw = _read_regular_file(path)
    what = "expected a Caffe NetParameter protobuf (.caffemodel)"
    buf = memoryview(raw)
    name, layers, fmt = "", [], ""
    budget = _Budget()
    try:
        for number, wire, value, offset in _fields(buf):
            if number == 1 and wire == _LEN:
                name = _text(value)
            elif number in (100, 2) and wire == _LEN:
                v1 = number == 2
                if fmt and fmt != ("V1 (layers)" if v1 else "V2 (layer)"):
                    continue  # Caffe refuses nets with both kinds; keep the first kind seen
                fmt = "V1 (layers)" if v1 else "V2 (layer)"
                if len(layers) == MAX_LAYERS:
                    raise _WireError(f"more than {MAX_LAYERS:,} layers")
                budget.take()
                layers.append(_parse_layer(value, offset, _V1 if v1 else _V2, v1, budget))
    except _WireError as exc:
        raise ModelError(f"{path}: {what}, found a malformed file ({exc})") from None
    if not layers:
        raise ModelError(f"{path}: {what}, found {len(raw)} bytes without any layer")
    if not any(layer.name for layer in layers):
        raise ModelError(f"{path}: {what}, found layers without names")
    return CaffeNet(str(path), name, layers, fmt, hashlib.sha256(raw).hexdigest())


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, read from one handle: regular files of at most
    :data:`MAX_FILE_BYTES` only (a FIFO would block, /dev/zero never ends)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelError(f"{path}: is a folder, not a .caffemodel file")
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if (
                stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket or special file"
            raise ModelError(f"{path}: not a regular file ({kind}); give the .caffemodel file itself")
        if st.st_size > MAX_FILE_BYTES:
            raise ModelError(f"{path}: {st.st_size:,} bytes is more than any SICE network needs "
                             f"(limit {MAX_FILE_BYTES >> 20} MiB; the released models are 2-3 MB)")
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as f:
            return f.read(st.st_size)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Recognising the architecture and porting the weights
# --------------------------------------------------------------------------------------------
def _fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


@functools.lru_cache(maxsize=None)
def _expected_layers(arch: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Caffe layer name -> (weight shape, bias shape), read off the PyTorch module itself."""
    state = create_model(arch).state_dict()
    names = dict.fromkeys(k.rsplit(".", 1)[0] for k in state)
    return {n: (tuple(state[f"{n}.weight"].shape), tuple(state[f"{n}.bias"].shape)) for n in names}


def _mismatch(net: CaffeNet, arch: str) -> str | None:
    """Why ``net`` is not ``arch`` (expected vs found, first difference), or None if it is."""
    expected = _expected_layers(arch)
    found = {l.name: l for l in net.layers if l.blobs}
    for name, (wshape, bshape) in expected.items():
        layer = found.get(name)
        if layer is None:
            return f"layer {name!r} with a {_fmt_shape(wshape)} weight is missing"
        if len(layer.blobs) != 2:
            return f"layer {name!r}: expected 2 blobs (weight, bias), found {len(layer.blobs)}"
        weight, bias = layer.blobs
        if weight.shape != wshape:
            return f"layer {name!r}: expected weight {_fmt_shape(wshape)}, found {_fmt_shape(weight.shape)}"
        if int(np.prod(bias.shape)) != int(np.prod(bshape)):
            return f"layer {name!r}: expected bias of {bshape[0]}, found {_fmt_shape(bias.shape)}"
        for blob, shape, what in ((weight, wshape, "weight"), (bias, bshape, "bias")):
            if blob.data.size != int(np.prod(shape)):
                return (f"layer {name!r}: {what} {_fmt_shape(shape)} needs {int(np.prod(shape))} "
                        f"values, found {blob.data.size}")
    extra = [n for n in found if n not in expected]
    if extra:
        return f"layers with weights that {arch} does not have: {', '.join(extra[:4])}"
    return None


def detect_architecture(net: CaffeNet) -> str:
    """The registry name of the network ``net`` holds, from layer names and blob shapes.

    Raises
    ------
    ModelError
        When it is none of :data:`ARCHITECTURES`; the message gives the closest one and its
        first difference (expected vs found).
    """
    reasons = {}
    for arch in ARCHITECTURES:
        reason = _mismatch(net, arch)
        if reason is None:
            return arch
        reasons[arch] = reason
    n_weighted = sum(1 for l in net.layers if l.blobs)
    # "closest": the architecture that shares most weighted layer names with the file
    names = {l.name for l in net.layers if l.blobs}
    closest = max(ARCHITECTURES, key=lambda a: len(names & set(_expected_layers(a))))
    raise ModelError(
        f"{net.path}: unknown architecture: expected one of {', '.join(ARCHITECTURES)}, found "
        f"{n_weighted} layers with weights; closest is {closest} ({reasons[closest]}); "
        f"use --arch to force one")


def s2d_permutation(order: str, channels: int, block: int, *, transposed: bool) -> np.ndarray:
    """Index map from our space-to-depth channels to the release's.

    Our channel ``k = c * block**2 + dy * block + dx`` (``torch.nn.functional.pixel_unshuffle``)
    holds the same pixel as the release's channel ``perm[k]`` under ``order`` (see
    :data:`S2D_ORDERS`). With ``transposed`` the release's frame is the transposed image, so its
    height offset ``i`` is our ``dx``.

    Returns
    -------
    perm : (channels * block**2,) int ndarray
    """
    if order not in S2D_ORDERS:
        raise ValueError(f"order must be one of {S2D_ORDERS}, got {order!r}")
    c, dy, dx = np.meshgrid(np.arange(channels), np.arange(block), np.arange(block), indexing="ij")
    i, j = (dx, dy) if transposed else (dy, dx)
    index = {
        "cij": c * block * block + i * block + j,
        "cji": c * block * block + j * block + i,
        "ijc": (i * block + j) * channels + c,
        "jic": (j * block + i) * channels + c,
    }[order]
    return index.reshape(-1)


def port_state_dict(net: CaffeNet, arch: str, *, transpose: bool = True,
                    s2d_order: str = DEFAULT_S2D_ORDER) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of ``arch`` filled from ``net``'s blobs.

    Parameters
    ----------
    net : CaffeNet
        From :func:`read_caffemodel`.
    arch : str
        One of :data:`ARCHITECTURES`.
    transpose : bool
        Swap each kernel's spatial axes (the release was trained on MATLAB's transposed images).
        False only to show what an unported net does.
    s2d_order : str
        Channel order of the release's space-to-depth layers (``sice2018-perpixel`` only).

    Raises
    ------
    ModelError
        When a layer is missing, a blob has the wrong shape (expected vs found), or a weight is
        NaN, infinite or huge (:func:`sice.models.checkpoint.check_weights`).
    """
    if arch not in ARCHITECTURES:
        raise ModelError(f"{net.path}: cannot port to {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    reason = _mismatch(net, arch)
    if reason is not None:
        raise ModelError(f"{net.path}: not a {arch} network: {reason}")
    state = {}
    for name, (wshape, bshape) in _expected_layers(arch).items():
        weight, bias = net.layer(name).blobs
        w = weight.data.reshape(wshape)
        if transpose:
            w = w.transpose(0, 1, 3, 2)
        b = bias.data.reshape(bshape)
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    check_weights(state, net.path)  # a NaN or 1e30 weight would give black pictures
    if arch == "sice2018-perpixel":
        from .sice2018 import PERPIXEL_BLOCK as block

        # the first convs of both branches read space-to-depth channels; RIR writes them
        perm_in = torch.from_numpy(s2d_permutation(s2d_order, 4, block, transposed=transpose))
        perm_out = torch.from_numpy(s2d_permutation(s2d_order, 3, block, transposed=transpose))
        for name in ("conv_gA1", "conv_gB1"):
            state[f"{name}.weight"] = state[f"{name}.weight"][:, perm_in].contiguous()
        state["RIR.weight"] = state["RIR.weight"][perm_out].contiguous()
        state["RIR.bias"] = state["RIR.bias"][perm_out].contiguous()
    return state


def import_caffe(path: os.PathLike | str, *, arch: str | None = None, transpose: bool = True,
                 s2d_order: str = DEFAULT_S2D_ORDER) -> nn.Module:
    """Build the sice model a ``.caffemodel`` holds, with its weights (eval mode, CPU).

    Parameters
    ----------
    path : path-like
        One of the release's ``model{1,2,3}.caffemodel`` (or any net of the same layout).
    arch : str, optional
        Force the architecture instead of recognising it.
    transpose, s2d_order
        See :func:`port_state_dict`.

    Returns
    -------
    torch.nn.Module
        A registered model (``model.sice_config``); ``model.sice_meta`` holds the provenance
        for :func:`sice.models.save_checkpoint`: source file, sha256, arch, transposition.

    Raises
    ------
    ModelError
        Unreadable or malformed file, unknown architecture, wrong blob shapes.
    """
    net = read_caffemodel(path)
    if arch is None:
        arch = detect_architecture(net)
    model = create_model(arch)
    model.load_state_dict(port_state_dict(net, arch, transpose=transpose, s2d_order=s2d_order))
    meta = {
        "source": "caffe",
        "source_file": os.path.abspath(os.fspath(path)),
        "sha256": net.sha256,
        "arch": arch,
        "transposed": bool(transpose),
        "rgb_order": "RGB",
        "paper": model.sice_config.paper,
    }
    if arch == "sice2018-perpixel":
        meta["s2d_order"] = s2d_order
    model.sice_meta = meta
    return model.eval()


# --------------------------------------------------------------------------------------------
# Showing the embedded net definition
# --------------------------------------------------------------------------------------------
# Field names of the few parameter messages the release uses; others print by number.
_PARAM_NAMES = {
    5: ("loss_weight", None), 8: ("include", {1: "phase"}), 10: ("phase", None),
    106: ("convolution_param", {1: "num_output", 2: "bias_term", 3: "pad", 4: "kernel_size",
                                5: "group", 6: "stride", 7: "weight_filler", 8: "bias_filler"}),
    110: ("eltwise_param", {1: "operation", 2: "coeff"}),
    112: ("hdf5_data_param", {1: "source", 2: "batch_size", 3: "shuffle"}),
}
_FILLER_NAMES = {1: "type", 2: "value", 3: "min", 4: "max", 5: "mean", 6: "std", 8: "variance_norm"}


def _render(wire: int, value, names: dict | None, depth: int = 0) -> str:
    """Protobuf-text-like rendering of one value (nested messages guessed when they parse)."""
    if wire == _VARINT:
        return str(value)
    if wire == _I32:
        return f"{float(np.frombuffer(value, '<f4')[0]):g}"
    if wire == _I64:
        return f"{float(np.frombuffer(value, '<f8')[0]):g}"
    raw = bytes(value)
    # Fuzz fix (tests/support/fuzzing.py): a crafted file can nest messages thousands deep and
    # exhaust the recursion limit; no real Caffe parameter nests this deep.
    if depth >= 32:
        return f"<{len(raw)} bytes>"
    if depth > 0 and names is None and raw and all(32 <= b < 127 for b in raw):
        return f'"{_text(value)}"'
    try:
        parts = []
        for n, w, v, _ in _fields(value):
            key = (names or {}).get(n, str(n))
            sub = _FILLER_NAMES if key.endswith("_filler") else None
            parts.append(f"{key}: {_render(w, v, sub, depth + 1)}")
        return "{ " + " ".join(parts) + " }"
    except _WireError:
        return f'"{_text(value)}"'


def describe(net: CaffeNet) -> str:
    """The embedded layer list, one line per layer: name, type, bottoms -> tops, blob shapes, params."""
    lines = [f"# {net.path}: {len(net.layers)} layers, {net.format}, sha256 {net.sha256[:16]}..."]
    for layer in net.layers:
        line = f"{layer.name:<20} {layer.type:<14} {','.join(layer.bottom) or '-'} -> {','.join(layer.top) or '-'}"
        if layer.blobs:
            line += "  blobs " + " ".join(f"[{_fmt_shape(b.shape)}]" for b in layer.blobs)
        for number, values in sorted(layer.params.items()):
            name, sub = _PARAM_NAMES.get(number, (f"param{number}", None))
            for wire, value in values:
                line += f"  {name} " + (_render(wire, value, sub) if wire == _LEN else
                                        f"{_render(wire, value, None)}")
        lines.append(line)
    return "\n".join(lines)
