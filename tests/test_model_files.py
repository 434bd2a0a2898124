"""Issue 16 items 2 and 4 (model files): checkpoints and caffemodels with NaN or huge weights are
refused at load and at save, naming the file and the tensor; a diverging training run never
leaves a bad last.pt; what a model returns is checked before it is written; ``sice
import-caffe`` refuses special files and crafted protobufs in bounded memory, without hanging.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from sice.models import caffe
from sice.errors import ModelError, SiceError
from sice.models import create_model, load_checkpoint, save_checkpoint
from sice.models.checkpoint import MAX_ABS_WEIGHT

from support.memory_probe import run_measured


def _sice(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "sice", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _one_error_line(r, *fragments):
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sice: error: "), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ---- checkpoints ------------------------------------------------------------------------------
def _poisoned(model, value, name="conv_gA1.weight"):
    with torch.no_grad():
        model.state_dict()[name].view(-1)[7] = value
    return model


@pytest.mark.parametrize("value,what", [(float("nan"), "1 NaN"), (float("inf"), "1 infinite"), (1e30, "1e+30")])
def test_save_refuses_bad_weights_and_keeps_the_old_file(tmp_path, value, what):
    path = save_checkpoint(tmp_path / "m.pt", create_model("sice2018-residual", width=8))
    before = path.read_bytes()
    bad = _poisoned(create_model("sice2018-residual", width=8), value)
    with pytest.raises(ModelError, match=rf"^{path}: tensor 'conv_gA1.weight' holds .*{re.escape(what)}"):
        save_checkpoint(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file either


@pytest.mark.parametrize("value", [float("nan"), -1e30, 2 * MAX_ABS_WEIGHT])
def test_load_refuses_a_checkpoint_with_bad_weights(tmp_path, value):
    good = save_checkpoint(tmp_path / "good.pt", create_model("sice2018-residual", width=8))
    payload = torch.load(good, weights_only=True)
    payload["state_dict"]["conv_g16.bias"][1] = value  # as a diverged run or a bit flip leaves it
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(ModelError, match=rf"^{bad}: tensor 'conv_g16.bias' holds"):
        load_checkpoint(bad)
    if not np.isnan(value):
        return  # the command line once is enough
    out = tmp_path / "out"
    photo = tmp_path / "photo.png"
    from sice.io import write_image

    write_image(photo, np.full((16, 16, 3), 40, np.uint8))
    r = _sice("enhance", photo, "-o", out, "--model", bad)
    _one_error_line(r, str(bad), "conv_g16.bias")
    assert not out.exists() or not list(out.iterdir())


def test_shipped_weights_pass_the_check():
    from sice.models import load_model

    assert load_model("default") is not None  # loading runs check_weights


# ---- what a model returns ----------------------------------------------------------------------
def test_nan_from_a_model_is_an_error_not_a_black_picture(tmp_path):
    from sice.enhancement import Enhancer, enhance_file
    from sice.io import write_image

    photo = write_image(tmp_path / "photo.png", np.full((24, 40, 3), 50, np.uint8))
    image_model = _poisoned(create_model("sice2018-residual", width=8), float("nan"), "conv_g16.bias")
    gain_model = create_model("gaingrid")
    with torch.no_grad():
        next(p for p in gain_model.parameters() if p.dim() > 1).view(-1)[0] = float("nan")
    for model in (image_model, gain_model):
        dst = tmp_path / f"{model.sice_config.name}.png"
        with pytest.raises(ModelError, match=rf"model '{model.sice_config.name}' returned \d+ NaN or infinite"):
            enhance_file(photo, dst, enhancer=Enhancer(model, backend="torch"))
        assert not dst.exists()


# ---- training that diverges -------------------------------------------------------------------
def test_diverging_training_never_names_a_bad_last_checkpoint(tmp_path):
    from sice.training import load_config, train

    from support.helpers import TINY, make_training_dataset

    data = make_training_dataset(tmp_path / "data", n=6)
    run = tmp_path / "run"
    cfg = load_config(None, TINY + ["run.steps=30", "run.checkpoint_every=1", 'optim.name="sgd"', "optim.lr=1",
                                    "optim.momentum=0.9"])
    with pytest.raises(SiceError, match=r"(weights diverged|loss became).*last good: ") as info:
        train(data, run, cfg, progress=False)
    named = str(info.value).rsplit("last good: ", 1)[1].rstrip(")")
    assert named == str(run / "last.pt")
    model = load_checkpoint(named)  # loads: every weight finite and below the limit
    assert max(float(p.detach().abs().max()) for p in model.parameters()) <= MAX_ABS_WEIGHT
    assert not list(run.glob(".*.tmp"))


# ---- caffemodels ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), 1e30])
def test_caffemodel_with_a_bad_weight_is_refused(tmp_path, value):
    pytest.importorskip("google.protobuf")
    from support.caffe_reference import encode_net, random_blobs

    blobs = random_blobs("sice2018-residual")
    blobs["conv_g7"][0][3, 2, 1, 0] = value
    path = tmp_path / "model1.caffemodel"
    path.write_bytes(encode_net("sice2018-residual", blobs))
    with pytest.raises(ModelError, match=rf"^{path}: tensor 'conv_g7.weight' holds"):
        caffe.import_caffe(path)
    if not np.isnan(value):
        return  # the command line once is enough
    out = tmp_path / "m.pt"
    _one_error_line(_sice("import-caffe", path, "-o", out), str(path), "conv_g7.weight")
    assert not out.exists()


def test_import_caffe_refuses_special_files_without_hanging(tmp_path):
    zero = tmp_path / "zero.caffemodel"
    os.symlink("/dev/zero", zero)
    fifo = tmp_path / "fifo.caffemodel"
    os.mkfifo(fifo)
    big = tmp_path / "big.caffemodel"
    with open(big, "wb") as f:
        f.truncate(caffe.MAX_FILE_BYTES + 1)  # sparse
    for path, why in ((zero, "not a regular file (a device)"), (fifo, "not a regular file (a FIFO)")):
        out = tmp_path / "m.pt"
        # before: /dev/zero grew to 3.5 GB and died with a traceback; the FIFO waited forever
        _one_error_line(_sice("import-caffe", path, "-o", out, timeout=60), str(path), why)
        assert not out.exists()
    with pytest.raises(ModelError, match=rf"^{big}: .* more than any SICE network needs"):
        caffe.read_caffemodel(big)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _layer(body: bytes) -> bytes:
    return _field(100, _field(1, b"a") + body)  # NetParameter.layer, with a name


# Each about 6-12 MB; before the limits they took 44-164 times their size in memory (1 GB for the
# empty layers), with a 30 s parse.
CRAFTED = {
    "empty layers": (lambda: _layer(b"") * 1_000_000, "more than 10,000 layers"),
    "parameter fields": (lambda: _layer(b"\x48\x01" * 3_000_000), "more than 100,000 entries"),
    "blob axes": (lambda: _layer(_field(7, _field(7, _field(1, b"\x01" * 6_000_000)))), "more than 32 axes"),
    "blobs": (lambda: _layer(b"\x3a\x00" * 3_000_000), "more than 16 blobs"),
    "unpacked floats": (lambda: _layer(_field(7, _field(7, _field(1, _varint(2_000_000))) +
                                              (b"\x2d" + b"\x00\x00\x80\x3f") * 2_000_000)), None),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_caffemodels_parse_in_bounded_memory(tmp_path, name):
    build, error = CRAFTED[name]
    path = tmp_path / "crafted.caffemodel"
    path.write_bytes(build())
    size_mib = path.stat().st_size / 2**20
    got = run_measured(
        """
        import numpy as np, torch
        from sice.models import caffe
        from sice.errors import ModelError
        """,
        """
        try:
            net = caffe.read_caffemodel(sys.argv[1])
            caffe.describe(net)
            result = {"blobs": [b.data.size for l in net.layers for b in l.blobs]}
        except ModelError as exc:
            result = {"error": str(exc)}
        """, path)
    assert got["after"] - got["before"] < 2 * size_mib + 40, (name, size_mib, got)
    if error is None:
        assert got.get("blobs") == [2_000_000], got  # a valid, if odd, file still reads
    else:
        assert got.get("error", "").startswith(str(path)) and error in got["error"], got
