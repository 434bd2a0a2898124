"""Caffe import (sice.models.caffe): wire-format reading, recognition, porting, bad input, the demo.

Synthetic caffemodels are written with the real ``protobuf`` library (tests/support/caffe_reference.py),
and ported models are checked against an independent interpreter of the layer list that runs
the net in Caffe's frame (the MATLAB-transposed image).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from sice.models import caffe
from sice.errors import ModelError
from sice.models import create_model, load_checkpoint, save_checkpoint

from support import caffe_demo
from support.caffe_reference import encode_net, random_blobs, run_caffe_net

pytest.importorskip("google.protobuf")

ARCHS = ("sice2018-residual", "sice2018", "sice2018-perpixel")


def _write(tmp_path, arch, name="net.caffemodel", seed=0, **kw):
    blobs = random_blobs(arch, seed)
    path = tmp_path / name
    path.write_bytes(encode_net(arch, blobs, **kw))
    return path, blobs


def _run_ours(model, rgb, aux):
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].double()
    args = (x,) if aux is None else (x, torch.from_numpy(aux)[None].double())
    with torch.no_grad():
        return model.double()(*args)[0].permute(1, 2, 0).numpy()


def _image(h=12, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((h, w, 3)), rng.random((2, h, w)) * 0.5


@pytest.mark.parametrize("arch", ARCHS)
def test_reader_gets_names_shapes_and_values(tmp_path, arch):
    path, blobs = _write(tmp_path, arch)
    net = caffe.read_caffemodel(path)
    assert net.format == "V2 (layer)"
    assert net.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for name, (w, b) in blobs.items():
        layer = net.layer(name)
        assert layer.type == "Convolution"
        assert layer.blobs[0].shape == w.shape
        np.testing.assert_array_equal(layer.blobs[0].data, w.ravel())
        np.testing.assert_array_equal(layer.blobs[1].data, b)


@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_is_recognised(tmp_path, arch):
    path, _ = _write(tmp_path, arch)
    assert caffe.detect_architecture(caffe.read_caffemodel(path)) == arch


@pytest.mark.parametrize("arch", ARCHS)
def test_port_reproduces_the_caffe_net_on_transposed_images(tmp_path, arch):
    """Our model on X equals the Caffe graph run on X^T (MATLAB's layout), transposed back."""
    path, _ = _write(tmp_path, arch)
    model = caffe.import_caffe(path)
    assert model.sice_config.name == arch
    rgb, aux = _image()
    aux = None if arch == "sice2018-residual" else aux
    expected = run_caffe_net(caffe.read_caffemodel(path).layers, rgb, aux, order="cij")
    np.testing.assert_allclose(_run_ours(model, rgb, aux), expected, atol=1e-5)


@pytest.mark.parametrize("order", caffe.S2D_ORDERS)
def test_perpixel_port_handles_every_space_to_depth_order(tmp_path, order):
    path, _ = _write(tmp_path, "sice2018-perpixel")
    rgb, aux = _image(8, 16)
    layers = caffe.read_caffemodel(path).layers
    expected = run_caffe_net(layers, rgb, aux, order=order)
    np.testing.assert_allclose(_run_ours(caffe.import_caffe(path, s2d_order=order), rgb, aux),
                               expected, atol=1e-5)
    # and another order gives another result: the order matters and is really applied
    other = next(o for o in caffe.S2D_ORDERS if o[0] != order[0])
    assert not np.allclose(_run_ours(caffe.import_caffe(path, s2d_order=other), rgb, aux), expected, atol=1e-3)


def test_without_transposition_the_port_is_the_untransposed_net(tmp_path):
    path, _ = _write(tmp_path, "sice2018")
    rgb, aux = _image()
    layers = caffe.read_caffemodel(path).layers
    plain = _run_ours(caffe.import_caffe(path, transpose=False), rgb, aux)
    np.testing.assert_allclose(plain, run_caffe_net(layers, rgb, aux, transposed=False), atol=1e-5)
    assert not np.allclose(plain, run_caffe_net(layers, rgb, aux, transposed=True), atol=1e-3)


@pytest.mark.parametrize("kw", [{"v1": True}, {"legacy_shape": True}, {"v1": True, "legacy_shape": True}])
def test_v1_layers_and_legacy_blob_dims(tmp_path, kw):
    path, blobs = _write(tmp_path, "sice2018", **kw)
    net = caffe.read_caffemodel(path)
    assert net.format == ("V1 (layers)" if kw.get("v1") else "V2 (layer)")
    assert net.layer("conv_g6").type == "Convolution"
    model = caffe.import_caffe(path)
    w = blobs["conv_g6"][0].transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(model.conv_g6.weight.detach().numpy(), w)


def test_checkpoint_round_trip_is_a_plain_sice_checkpoint(tmp_path):
    path, _ = _write(tmp_path, "sice2018-residual")
    model = caffe.import_caffe(path)
    out = save_checkpoint(tmp_path / "m.pt", model, meta=model.sice_meta)
    loaded = load_checkpoint(out)
    assert loaded.sice_meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.sice_meta["transposed"] is True and loaded.sice_meta["arch"] == "sice2018-residual"
    # fine-tuning starts from it like from any registry model: same keys, trainable
    fresh = create_model("sice2018-residual")
    fresh.load_state_dict(torch.load(out, weights_only=True)["state_dict"])
    for a, b in zip(fresh.parameters(), model.parameters()):
        assert torch.equal(a, b) and a.requires_grad


def test_describe_lists_layers_with_blob_shapes(tmp_path):
    path, _ = _write(tmp_path, "sice2018-perpixel")
    text = caffe.describe(caffe.read_caffemodel(path))
    assert "RIR" in text and "[48x64x3x3] [48]" in text
    assert "Dtow" in text and "param998 { 1: 2 2: 4 }" in text


# ---- bad input --------------------------------------------------------------------------------
def test_not_a_caffemodel(tmp_path):
    bad = tmp_path / "photo.caffemodel"
    bad.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100))
    with pytest.raises(ModelError, match=r"^.*photo\.caffemodel: expected a Caffe NetParameter.*found"):
        caffe.read_caffemodel(bad)
    text = tmp_path / "notes.caffemodel"
    text.write_bytes(b"")
    with pytest.raises(ModelError, match="without any layer"):
        caffe.read_caffemodel(text)


def test_truncated_file(tmp_path):
    path, _ = _write(tmp_path, "sice2018")
    raw = path.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelError, match=r"cut\.caffemodel: .*truncated: field 100 at byte \d+ needs"):
        caffe.read_caffemodel(cut)


def test_unknown_architecture_names_the_closest_and_the_difference(tmp_path):
    blobs = random_blobs("sice2018")
    blobs["conv_g6"] = (np.zeros((64, 96, 3, 3), np.float32), blobs["conv_g6"][1])
    path = tmp_path / "odd.caffemodel"
    path.write_bytes(encode_net("sice2018", blobs))
    with pytest.raises(ModelError, match=r"unknown architecture.*closest is sice2018 .*conv_g6.*"
                                         r"expected weight 64x128x3x3, found 64x96x3x3"):
        caffe.import_caffe(path)


def test_forced_architecture_that_does_not_fit(tmp_path):
    path, _ = _write(tmp_path, "sice2018")
    with pytest.raises(ModelError, match=r"not a sice2018-residual network: layer 'conv_gA1': "
                                         r"expected weight 64x3x3x3, found 64x4x3x3"):
        caffe.import_caffe(path, arch="sice2018-residual")


def test_blob_with_too_few_values(tmp_path):
    from support.caffe_reference import proto_classes

    path, _ = _write(tmp_path, "sice2018")
    cls = proto_classes()
    net = cls["NetParameter"]()
    net.ParseFromString(path.read_bytes())
    blob = next(l for l in net.layer if l.name == "conv_g7").blobs[0]
    del blob.data[100:]
    path.write_bytes(net.SerializeToString())
    with pytest.raises(ModelError, match=r"conv_g7.*weight 64x64x3x3 needs 36864 values, found 100"):
        caffe.import_caffe(path)


# ---- the release's own files (real data) -------------------------------------------------------
RELEASE = {"model1": "sice2018-residual", "model2": "sice2018", "model3": "sice2018-perpixel"}


@pytest.mark.realdata
@pytest.mark.parametrize("stem", list(RELEASE))
def test_release_models_port_exactly(shared_data, stem):
    """Each released file is recognised, and the port equals the file's own layer graph (ReLUs,
    linear layers, concat, residual, Dtow/PixelConv as its bottoms/tops say) run on X^T."""
    path = shared_data / "sice-caffe" / f"{stem}.caffemodel"
    net = caffe.read_caffemodel(path)
    assert caffe.detect_architecture(net) == RELEASE[stem]
    model = caffe.import_caffe(path)
    rgb, aux = _image(8, 12, seed=3)
    aux = None if stem == "model1" else aux
    expected = run_caffe_net(net.layers, rgb, aux, order=caffe.DEFAULT_S2D_ORDER)
    np.testing.assert_allclose(_run_ours(model, rgb, aux), expected, atol=1e-5)


@pytest.mark.realdata
def test_cli_import_writes_a_checkpoint_that_loads(shared_data, tmp_path):
    from click.testing import CliRunner

    from sice.cli.import_caffe import command
    from sice.models import load_model

    src = shared_data / "sice-caffe" / "model2.caffemodel"
    out = tmp_path / "model2.pt"
    result = CliRunner().invoke(command, [str(src), "-o", str(out), "--show"])
    assert result.exit_code == 0, result.output
    assert "conv_g6" in result.output and "[64x128x3x3]" in result.output
    model = load_model(out)
    assert model.sice_config.name == "sice2018"
    assert model.sice_meta["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.mark.realdata
def test_model2_port_reproduces_the_authors_demo_screenshot(shared_data):
    """Model 2 against the authors' screenshot of its output on 9.JPG.

    The demo runs the net on 9.JPG down-scaled by 3/5 (3592x2392); twice that (with and
    without the transposition) takes minutes on a 2-core CPU, so this test uses scale 1/5 (a
    third of the demo's) and the centre of the frame (half its width, a third of its height, plus
    a margin of twice the receptive radius: clouds, horizon, trees, grass). The screenshot shows the frame at about 1/13 of the demo's size, so the
    comparison happens at its resolution. Full-frame, full-scale figures: docs/caffe-port.md.
    """
    from sice.decomposition import aux_tensor
    from sice.evaluation.metrics import psnr, ssim
    from sice.io import read_image, read_rgb

    rgb = caffe_demo.demo_input(read_image(shared_data / "sice-fullres" / "9.JPG").pixels, 0.2)
    geometry = caffe_demo.screenshot_geometry(read_rgb(shared_data / "sice-caffe" / "demo" / "model2.bmp"), rgb)
    h, w = rgb.shape[:2]
    y0, y1, x0, x1 = h // 3, 2 * h // 3, w // 4, 3 * w // 4
    m = 2 * 12
    crop = rgb[y0 - m:y1 + m, x0 - m:x1 + m]
    sh, sw = geometry.output_half.shape[:2]
    # the compared window in screenshot pixels, 2 px inside the crop
    ry0, ry1 = int(np.ceil(y0 * sh / h)) + 2, int(y1 * sh / h) - 2
    rx0, rx1 = int(np.ceil(x0 * sw / w)) + 2, int(x1 * sw / w) - 2

    def scores(enhanced_crop):
        canvas = rgb.copy()
        canvas[y0:y1, x0:x1] = enhanced_crop[m:-m, m:-m]
        ours = geometry.resample(canvas)[ry0:ry1, rx0:rx1]
        theirs = geometry.output_half[ry0:ry1, rx0:rx1]
        return ssim(ours, theirs), psnr(ours, theirs)

    path = shared_data / "sice-caffe" / "model2.caffemodel"
    aux = aux_tensor(crop)
    ported = scores(caffe_demo.run_model(caffe.import_caffe(path), crop, aux=aux))
    untransposed = scores(caffe_demo.run_model(caffe.import_caffe(path, transpose=False), crop, aux=aux))
    unenhanced = scores(crop)
    print(f"SSIM/PSNR vs screenshot: port {ported}, no transposition {untransposed}, input {unenhanced}")
    assert ported[0] > 0.95 and ported[1] > 33
    assert ported[0] > unenhanced[0] + 0.3 and ported[1] > unenhanced[1] + 15
    assert ported[0] > untransposed[0] + 0.01 and ported[1] > untransposed[1] + 0.5


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.timeout(3600)  # Model 2 on 8.6 MP, twice, takes longer than the default 600 s
@pytest.mark.parametrize("stem", list(RELEASE))
def test_demo_reproduction_at_the_demo_scale(shared_data, stem):
    """The figures of docs/caffe-port.md: every port on the whole of 9.JPG with the demos'
    own preprocessing (bicubic 1/3 for Model 1, 3/5 for Models 2 and 3; crop to a multiple of
    4), compared with the authors' screenshot. Run tiled (exact: overlap >= receptive radius)
    so memory stays small; L/D by the fast WLS above 1 MP. Minutes per model on 2 cores."""
    from sice.decomposition import aux_tensor
    from sice.enhancement import tiled_apply
    from sice.evaluation.metrics import psnr, ssim
    from sice.io import read_image, read_rgb

    arch = RELEASE[stem]
    rgb = caffe_demo.demo_input(read_image(shared_data / "sice-fullres" / "9.JPG").pixels, caffe_demo.DEMO_SCALE[arch])
    geometry = caffe_demo.screenshot_geometry(read_rgb(shared_data / "sice-caffe" / "demo" / f"{stem}.bmp"), rgb)
    planes = rgb if arch == "sice2018-residual" else np.concatenate([rgb, aux_tensor(rgb).transpose(1, 2, 0)], 2)
    path = shared_data / "sice-caffe" / f"{stem}.caffemodel"
    variants = {"port": {}, "no transposition": {"transpose": False}}
    if arch == "sice2018-perpixel":
        variants.update({f"order {o}": {"s2d_order": o} for o in caffe.S2D_ORDERS if o != caffe.DEFAULT_S2D_ORDER})
    results = {"input": (ssim(geometry.resample(rgb), geometry.output_half),
                         psnr(geometry.resample(rgb), geometry.output_half))}
    for label, kw in variants.items():
        model = caffe.import_caffe(path, **kw)
        cfg = model.sice_config

        def fn(block, model=model):
            return caffe_demo.run_model(model, block[..., :3], aux=block[..., 3:].transpose(2, 0, 1) if block.shape[2] > 3 else None)

        out = tiled_apply(planes, fn, tile=768, overlap=cfg.receptive_radius, multiple=cfg.size_multiple)
        ours = geometry.resample(out)
        results[label] = (ssim(ours, geometry.output_half), psnr(ours, geometry.output_half))
        print(f"{stem} {rgb.shape[1]}x{rgb.shape[0]} {label}: SSIM {results[label][0]:.4f} PSNR {results[label][1]:.2f} dB", flush=True)
    print(f"{stem} input: SSIM {results['input'][0]:.4f} PSNR {results['input'][1]:.2f} dB")
    assert results["port"][0] == max(r[0] for r in results.values())


# ---- the command ------------------------------------------------------------------------------
def _cli(*args):
    from click.testing import CliRunner

    from sice.cli.main import cli

    return CliRunner().invoke(cli, ["import-caffe", *map(str, args)])


def test_cli_imports_and_the_checkpoint_loads(tmp_path):
    from sice.models import load_model

    path, _ = _write(tmp_path, "sice2018-perpixel")
    out = tmp_path / "m3.pt"
    result = _cli(path, "-o", out)
    assert result.exit_code == 0, result.output
    assert "sice2018-perpixel (655,408 parameters)" in result.output
    model = load_model(out)
    assert model.sice_meta["s2d_order"] == caffe.DEFAULT_S2D_ORDER
    expected = caffe.import_caffe(path)
    for (k, a), b in zip(model.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("case", ["not-caffe", "truncated", "wrong-arch"])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, case):
    path, _ = _write(tmp_path, "sice2018")
    args = []
    if case == "not-caffe":
        path.write_bytes(b"GIF89a" + bytes(64))
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:-1000])
    else:
        args = ["--arch", "sice2018-perpixel"]
    out = tmp_path / "out.pt"
    result = _cli(path, "-o", out, *args)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("sice: error: ")
    assert str(path) in result.output and "expected" in result.output
    assert list(tmp_path.iterdir()) == [path]  # no output, no temp file


def test_cli_show_without_output_only_prints(tmp_path):
    path, _ = _write(tmp_path, "sice2018-residual")
    result = _cli(path, "--show")
    assert result.exit_code == 0
    assert "conv_g17" in result.output and "[3x64x3x3] [3]" in result.output
    assert list(tmp_path.iterdir()) == [path]
    assert _cli(path).exit_code == 2  # neither -o nor --show: usage error
