"""Independent references for the Caffe import tests: a protobuf encoder and a layer interpreter.

* :func:`encode_net` writes a ``.caffemodel`` with the real ``protobuf`` library from a
  descriptor of the caffe.proto subset (not with sice's hand-written reader).
* :func:`run_caffe_net` executes a parsed layer list the way Caffe does, in Caffe's own frame
  (the transposed image), following the bottoms/tops of the file itself.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

RELEASE_GRAPHS = {}  # arch -> list of (name, type, bottoms, tops, n_in, n_out) of the release


def _branch(prefix: str, source: str, cin: int, last: int) -> list:
    layers, prev = [], source
    for i in range(1, last + 1):
        name = f"conv_g{prefix}{i}"
        layers.append((name, "Convolution", [prev], [name], cin if i == 1 else 64, 64))
        if i < last:
            layers.append((f"relu_g{prefix}{i}", "ReLU", [name], [name], 0, 0))
        prev = name
    return layers


def _trunk(first: int, last: int, source: str, relu_first: bool) -> list:
    layers, prev = [], source
    for i in range(first, last + 1):
        name = f"conv_g{i}"
        layers.append((name, "Convolution", [prev], [name], 64, 64))
        if i > first or relu_first:
            layers.append((f"relu_g{i}", "ReLU", [name], [name], 0, 0))
        prev = name
    return layers


RELEASE_GRAPHS["sice2018-residual"] = (
    [("data", "HDF5Data", [], ["data", "label"], 0, 0)]
    + _branch("A", "data", 3, 5)
    + _trunk(6, 16, "conv_gA5", relu_first=True)
    + [("conv_g17", "Convolution", ["conv_g16"], ["conv_g17"], 64, 3),
       ("sum", "Eltwise", ["data", "conv_g17"], ["sum"], 0, 0)])
RELEASE_GRAPHS["sice2018"] = (
    [("data", "HDF5Data", [], ["data", "dataL", "dataD", "label"], 0, 0)]
    + _branch("A", "dataL", 4, 5) + _branch("B", "dataD", 4, 5)
    + [("Concat", "Concat", ["conv_gA5", "conv_gB5"], ["Concat"], 0, 0),
       ("conv_g6", "Convolution", ["Concat"], ["conv_g6"], 128, 64)]
    + _trunk(7, 11, "conv_g6", relu_first=True)
    + [("conv_g12", "Convolution", ["conv_g11"], ["conv_g12"], 64, 3),
       ("sum", "Eltwise", ["data", "conv_g12"], ["sum"], 0, 0)])
RELEASE_GRAPHS["sice2018-perpixel"] = (
    [("data", "HDF5Data", [], ["data", "dataL", "dataD", "label"], 0, 0),
     ("Down1", "Dtow", ["dataL"], ["Down1"], 0, 0), ("Down2", "Dtow", ["dataD"], ["Down2"], 0, 0)]
    + _branch("A", "Down1", 64, 5) + _branch("B", "Down2", 64, 5)
    + [("Concat", "Concat", ["conv_gA5", "conv_gB5"], ["Concat"], 0, 0),
       ("conv_g6", "Convolution", ["Concat"], ["conv_g6"], 128, 64)]
    + _trunk(7, 11, "conv_g6", relu_first=True)
    + [("RIR", "Convolution", ["conv_g11"], ["RIR"], 64, 48),
       ("Up", "Dtow", ["RIR"], ["Up"], 0, 0),
       ("Pixel", "PixelConv", ["Up", "data"], ["Pixel"], 0, 0)])


def proto_classes():
    """NetParameter / V1 classes built at run time from a descriptor of the caffe.proto subset."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F_ = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")

    def msg(name, *fields):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name, packed in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".caffe.{type_name}"
            if packed:
                f.options.packed = True

    OPT, REP = F_.LABEL_OPTIONAL, F_.LABEL_REPEATED
    msg("BlobShape", ("dim", 1, F_.TYPE_INT64, REP, None, True))
    msg("BlobProto", ("num", 1, F_.TYPE_INT32, OPT, None, False),
        ("channels", 2, F_.TYPE_INT32, OPT, None, False), ("height", 3, F_.TYPE_INT32, OPT, None, False),
        ("width", 4, F_.TYPE_INT32, OPT, None, False), ("data", 5, F_.TYPE_FLOAT, REP, None, True),
        ("shape", 7, F_.TYPE_MESSAGE, OPT, "BlobShape", False))
    msg("DtowParameter", ("mode", 1, F_.TYPE_INT32, OPT, None, False),
        ("block", 2, F_.TYPE_INT32, OPT, None, False))
    msg("LayerParameter", ("name", 1, F_.TYPE_STRING, OPT, None, False),
        ("type", 2, F_.TYPE_STRING, OPT, None, False), ("bottom", 3, F_.TYPE_STRING, REP, None, False),
        ("top", 4, F_.TYPE_STRING, REP, None, False), ("blobs", 7, F_.TYPE_MESSAGE, REP, "BlobProto", False),
        ("dtow_param", 998, F_.TYPE_MESSAGE, OPT, "DtowParameter", False))
    msg("V1LayerParameter", ("bottom", 2, F_.TYPE_STRING, REP, None, False),
        ("top", 3, F_.TYPE_STRING, REP, None, False), ("name", 4, F_.TYPE_STRING, OPT, None, False),
        ("type", 5, F_.TYPE_INT32, OPT, None, False), ("blobs", 6, F_.TYPE_MESSAGE, REP, "BlobProto", False))
    msg("NetParameter", ("name", 1, F_.TYPE_STRING, OPT, None, False),
        ("layers", 2, F_.TYPE_MESSAGE, REP, "V1LayerParameter", False),
        ("layer", 100, F_.TYPE_MESSAGE, REP, "LayerParameter", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{n}"))
            for n in ("NetParameter", "BlobProto")}


V1_ENUM = {"Convolution": 4, "ReLU": 18, "Concat": 3, "Eltwise": 25, "HDF5Data": 9}


def random_blobs(arch: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Caffe-frame weights (N, C, kh, kw) and biases for every conv of ``arch`` (MSRA-like, small)."""
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, typ, _, _, cin, cout in RELEASE_GRAPHS[arch]:
        if typ == "Convolution":
            w = rng.normal(0, (1.0 / (cin * 9)) ** 0.5, (cout, cin, 3, 3)).astype(np.float32)
            blobs[name] = (w, rng.normal(0, 0.01, cout).astype(np.float32))
    return blobs


def encode_net(arch: str, blobs: dict, *, v1: bool = False, legacy_shape: bool = False) -> bytes:
    """A serialised NetParameter of the release's graph for ``arch`` with ``blobs``."""
    cls = proto_classes()
    net = cls["NetParameter"](name=f"test-{arch}")
    for name, typ, bottoms, tops, _, _ in RELEASE_GRAPHS[arch]:
        if v1:
            if typ not in V1_ENUM:
                continue  # V1 had no custom layers; only used for the models without them
            layer = net.layers.add(name=name, type=V1_ENUM[typ])
        else:
            layer = net.layer.add(name=name, type=typ)
            if typ == "Dtow":
                if name.startswith("Down"):
                    layer.dtow_param.mode = 2
                layer.dtow_param.block = 4
        layer.bottom.extend(bottoms)
        layer.top.extend(tops)
        for arr in blobs.get(name, ()):
            blob = layer.blobs.add()
            if legacy_shape:
                shape4 = (1,) * (4 - arr.ndim) + arr.shape
                blob.num, blob.channels, blob.height, blob.width = shape4
            else:
                blob.shape.dim.extend(arr.shape)
            blob.data.extend(arr.ravel().tolist())
    return net.SerializeToString()


def _channel(order: str, c: int, i: int, j: int, channels: int, block: int) -> int:
    """Channel of (colour c, row offset i, column offset j) under ``order`` (sice.models.caffe.S2D_ORDERS)."""
    return {"cij": c * block * block + i * block + j, "cji": c * block * block + j * block + i,
            "ijc": (i * block + j) * channels + c, "jic": (j * block + i) * channels + c}[order]


def space_to_depth(x: np.ndarray, block: int, order: str) -> np.ndarray:
    """(C, H, W) -> (C*b*b, H/b, W/b), by explicit loops over the named order (slow, plain)."""
    c_, h, w = x.shape
    out = np.zeros((c_ * block * block, h // block, w // block), x.dtype)
    for c in range(c_):
        for i in range(block):
            for j in range(block):
                out[_channel(order, c, i, j, c_, block)] = x[c, i::block, j::block]
    return out


def depth_to_space(x: np.ndarray, block: int, order: str) -> np.ndarray:
    ck, h, w = x.shape
    c_ = ck // (block * block)
    out = np.zeros((c_, h * block, w * block), x.dtype)
    for c in range(c_):
        for i in range(block):
            for j in range(block):
                out[c, i::block, j::block] = x[_channel(order, c, i, j, c_, block)]
    return out


def run_caffe_net(layers, rgb: np.ndarray, aux: np.ndarray | None, *, order: str = "cij",
                  transposed: bool = True) -> np.ndarray:
    """Run the layer list (``sice.models.caffe.CaffeLayer``-like: name/type/bottom/top/blobs/params) as
    Caffe would, on the image as MATLAB handed it over (transposed when ``transposed``).

    rgb (H, W, 3) float, aux (2, H, W) or None -> (H, W, 3) float64, back in image orientation.
    """
    x = rgb.transpose(2, 0, 1).astype(np.float64)  # (3, H, W)
    a = None if aux is None else aux.astype(np.float64)
    if transposed:
        x = x.transpose(0, 2, 1)
        a = None if a is None else a.transpose(0, 2, 1)
    blobs = {"data": x}
    if a is not None:
        blobs["dataL"] = np.concatenate([x, a[:1]])
        blobs["dataD"] = np.concatenate([x, a[1:]])
    for layer in layers:
        if layer.type in ("HDF5Data", "Data") or layer.type.endswith("Loss"):
            continue
        ins = [blobs[b] for b in layer.bottom]
        if layer.type == "Split":
            out = ins[0]
            for t in layer.top:
                blobs[t] = out
            continue
        if layer.type == "Convolution":
            w = torch.from_numpy(layer.blobs[0].data.reshape(layer.blobs[0].shape).astype(np.float64))
            b = torch.from_numpy(layer.blobs[1].data.astype(np.float64))
            out = F.conv2d(torch.from_numpy(ins[0])[None], w, b, padding=1)[0].numpy()
        elif layer.type == "ReLU":
            out = np.maximum(ins[0], 0)
        elif layer.type == "Concat":
            out = np.concatenate(ins)
        elif layer.type == "Eltwise":
            out = ins[0] + ins[1]
        elif layer.type == "Dtow":
            down = layer.name.startswith("Down")
            out = space_to_depth(ins[0], 4, order) if down else depth_to_space(ins[0], 4, order)
        elif layer.type == "PixelConv":
            out = ins[0] * ins[1]
        else:
            raise NotImplementedError(layer.type)
        blobs[layer.top[0]] = out
    result = out.transpose(0, 2, 1) if transposed else out
    return result.transpose(1, 2, 0)
