"""sice.enhancement: tiling equals untiled inference, sizes and layouts are kept, gains applied right."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sice.enhancement import Enhancer, apply_log2_gain, tiled_apply
from sice.models import create_model


def _random_model(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    m = create_model(name, **kwargs)
    with torch.no_grad():  # make the residual branch matter so the test can fail
        for p in m.parameters():
            if p.dim() == 4:
                p.mul_(0.5)
        last = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)][-1]
        last.weight.normal_(0, 0.02)
    return m.eval()


def test_tiled_apply_matches_untiled_for_a_conv_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(5)]).eval()
    img = np.random.default_rng(0).random((70, 95, 3)).astype(np.float32)

    def fn(block):
        with torch.no_grad():
            return net(torch.from_numpy(block.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)

    whole = fn(img)
    tiled = tiled_apply(img, fn, tile=16, overlap=5, out_channels=3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # too little overlap must differ: the test can fail
    bad = tiled_apply(img, fn, tile=16, overlap=2, out_channels=3)
    assert np.abs(bad - whole).max() > 1e-3


@pytest.mark.parametrize("name", ["sice2018-residual", "sice2018", "sice2018-perpixel"])
def test_enhancer_tiled_equals_untiled(name):
    if name == "sice2018-perpixel":
        pytest.importorskip("sice.decomposition")
    model = _random_model(name)
    img = np.random.default_rng(1).random((61, 83, 3)).astype(np.float32) * 0.5
    small_tiles = Enhancer(model, tile=16).enhance_rgb(img)
    one_tile = Enhancer(model, tile=4096).enhance_rgb(img)
    assert small_tiles.shape == img.shape
    assert np.abs(small_tiles - one_tile).max() <= 1 / 255


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (13, 17), (64, 48)])
def test_output_has_input_size(shape):
    enh = Enhancer("sice2018-residual:untrained", tile=16)
    img = np.random.default_rng(0).random(shape + (3,)).astype(np.float32)
    assert enh.enhance_rgb(img).shape == img.shape
    g = Enhancer("gaingrid:untrained")
    np.testing.assert_allclose(g.enhance_rgb(img), img, atol=1e-6)  # untrained gaingrid = identity


def test_enhance_pixels_keeps_layout_dtype_and_alpha():
    enh = Enhancer("gaingrid:untrained")  # identity: outputs must equal inputs exactly
    rng = np.random.default_rng(0)
    grey16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    out = enh.enhance_pixels(grey16)
    assert out.dtype == np.uint16 and out.shape == grey16.shape
    assert np.abs(out.astype(int) - grey16).max() <= 1
    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    out = enh.enhance_pixels(rgba)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(out, rgba)
    f = rng.random((4, 5, 3)).astype(np.float32)
    assert enh.enhance_pixels(f).dtype == np.float32


def test_apply_log2_gain_matches_reference():
    import cv2

    rgb = np.random.default_rng(0).random((40, 60, 3)).astype(np.float32) * 0.4
    log_gain = np.random.default_rng(1).normal(0, 0.5, (10, 15, 3)).astype(np.float32)
    # reference: upsample the gains with OpenCV's resize (pixel-centre aligned, exact 4x)
    ref_gain = cv2.resize(np.exp2(log_gain), (60, 40), interpolation=cv2.INTER_LINEAR)
    ref = np.clip(rgb * ref_gain, 0, 1)
    got = apply_log2_gain(rgb, log_gain, strip=7)  # strips must not show
    np.testing.assert_allclose(got, ref, atol=2e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_apply_log2_gain_with_offsets_in_every_dtype(dtype):
    import cv2

    rng = np.random.default_rng(3)
    rgb = rng.random((40, 60, 3)).astype(np.float32) * 0.6
    log_gain = rng.normal(0, 0.5, (10, 15, 3)).astype(np.float32)
    offset = rng.uniform(-0.1, 0.2, (10, 15, 3)).astype(np.float32)
    up = lambda a: cv2.resize(a, (60, 40), interpolation=cv2.INTER_LINEAR)
    ref = np.clip(rgb * up(np.exp2(log_gain)) + up(offset), 0, 1)  # by hand, in [0, 1]
    scale = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    image = rgb if dtype == np.float32 else np.round(rgb * scale).astype(dtype)
    got = apply_log2_gain(image, log_gain, offset=offset, strip=7)
    assert got.dtype == image.dtype
    # integer inputs were rounded first: allow that error times the largest gain, plus rounding
    tol = 2e-3 if dtype == np.float32 else float(np.exp2(log_gain).max()) / scale + 1 / scale + 2e-3
    np.testing.assert_allclose(got.astype(np.float64) / scale, ref, atol=tol)
    assert (got.astype(np.float64) / scale < rgb * up(np.exp2(log_gain)) - 0.05).any()  # offsets < 0 used
    with pytest.raises(ValueError, match="offset"):
        apply_log2_gain(image, log_gain, offset=offset[:5])


@pytest.mark.parametrize("layout", [{}, {"adaptive": True}, {"offset": True}, {"offset": "grey"}])
def test_gaingrid_torch_equals_onnx(tmp_path, layout):
    pytest.importorskip("onnxruntime")
    from sice.export import export_onnx

    model = _random_model("gaingrid", **layout)
    with torch.no_grad():
        model.to_grid.weight.normal_(0, 0.3)
        model.to_grid.bias.normal_(0, 1.0)
    export_onnx(model, tmp_path / "g.onnx")
    img = np.random.default_rng(2).random((300, 410, 3)).astype(np.float32) * 0.3
    a = Enhancer(model).enhance_rgb(img)
    b = Enhancer(str(tmp_path / "g.onnx")).enhance_rgb(img)
    assert np.abs(a - b).max() <= 1 / 255
    assert np.abs(a - img).mean() > 1e-3  # the model does something


def test_gaingrid_ensemble_torch_equals_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from sice.export import export_onnx
    from sice.models.gaingrid import ensemble_of

    members = [_random_model("gaingrid"), _random_model("gaingrid", offset=True)]
    for i, m in enumerate(members):
        with torch.no_grad():
            m.to_grid.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(i))
    model = ensemble_of(members)
    export_onnx(model, tmp_path / "e.onnx")
    img = np.random.default_rng(3).random((260, 390, 3)).astype(np.float32) * 0.3
    a = Enhancer(model).enhance_rgb(img)
    b = Enhancer(str(tmp_path / "e.onnx")).enhance_rgb(img)
    assert np.abs(a - b).max() <= 1 / 255
    assert np.abs(a - img).mean() > 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        Enhancer("gaingrid:untrained", backend="tpu")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        Enhancer("gaingrid:untrained").enhance_rgb(np.zeros((4, 4)))
