"""sice.enhancement: tiling equals untiled inference, sizes and layouts are kept, gains applied right."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sice.enhancement import Enhancer, apply_log2_gain, tiled_apply
from sice.models import create_model
from sice.tensorops import image_to_tensor, tensor_to_image
from sice.weights import DEFAULT_MODEL


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
            return tensor_to_image(net(image_to_tensor(block)))

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
    from sice.models.onnx_export import export_onnx

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
    from sice.models.onnx_export import export_onnx
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


# --------------------------------------------------------------------------------------------
# Issue 17 item 3: strength, applied to the gain and offset fields (the model's tone domain)
# --------------------------------------------------------------------------------------------
def _gain_offset_model():
    model = _random_model("gaingrid", offset=True)
    with torch.no_grad():
        model.to_grid.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(4))
        model.to_grid.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(5))
    return model


@pytest.mark.parametrize("strength", [0.0, 0.25, 0.5, 1.0])
def test_strength_scales_log_gains_and_offsets(strength):
    from sice.enhancement import gain_inputs

    enh = Enhancer(_gain_offset_model())
    img = np.random.default_rng(6).random((90, 120, 3)).astype(np.float32) * 0.5
    # smaller than the working resolution: the fields are per pixel, no upsampling involved
    log_gain, offset = enh._runner.photo_fields(*gain_inputs(img, enh._runner.work_size))
    assert log_gain.shape == img.shape and offset.shape == img.shape
    expected = np.clip(img * np.exp2(strength * log_gain) + strength * offset, 0, 1)  # by hand
    got = enh.enhance_rgb(img, strength=strength)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    if strength == 0.5:  # half the change in stops is not half-way between input and output
        blend = 0.5 * img + 0.5 * enh.enhance_rgb(img)
        assert np.abs(got - blend).max() > 0.01


def test_strength_zero_returns_integer_photos_unchanged():
    enh = Enhancer(_gain_offset_model())
    img = np.random.default_rng(7).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(enh.enhance_pixels(img, strength=0), img)
    assert np.abs(enh.enhance_pixels(img, strength=1).astype(int) - img).max() > 5


@pytest.mark.parametrize("bad,match", [(-0.1, r"strength must be in \[0, 1\], got -0.1"),
                                       (1.5, r"strength must be in \[0, 1\], got 1.5"),
                                       (float("nan"), r"strength must be in \[0, 1\], got nan"),
                                       ("half", r"strength must be a number in \[0, 1\], got 'half'")])
def test_strength_out_of_range(bad, match):
    import sice

    enh = Enhancer("gaingrid:untrained")
    with pytest.raises(ValueError, match=match):
        enh.enhance_pixels(np.zeros((4, 4, 3), np.uint8), strength=bad)
    with pytest.raises(ValueError, match=match):
        sice.enhance(np.zeros((4, 4, 3), np.uint8), model="gaingrid:untrained", strength=bad)


def test_strength_needs_a_gain_model():
    enh = Enhancer("sice2018-residual:untrained", tile=32)
    img = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="strength must be 1 for model 'sice2018-residual': it outputs pixels"):
        enh.enhance_rgb(img, strength=0.5)
    assert enh.enhance_rgb(img, strength=1.0).shape == img.shape


def test_enhance_file_strength_and_compare(tmp_path):
    import sice
    from sice.io import read_image, write_image

    px = np.random.default_rng(8).integers(0, 120, (30, 50, 3), dtype=np.uint8)
    write_image(tmp_path / "in.png", px)
    sice.enhance_file(tmp_path / "in.png", tmp_path / "out.png", strength=0, compare=tmp_path / "both.png")
    np.testing.assert_array_equal(read_image(tmp_path / "out.png").pixels, px)
    both = read_image(tmp_path / "both.png").pixels
    gap = both.shape[0] - 60
    np.testing.assert_array_equal(both[20:30], px[20:30])  # "before", below its label
    np.testing.assert_array_equal(both[30 + gap + 20:], px[20:])  # "after" (= before at strength 0)


# --------------------------------------------------------------------------------------------
# Issue 17 item 6: dtype in = dtype out, float range checked, channel_axis
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9, 11), (9, 11, 1), (9, 11, 2), (9, 11, 3), (9, 11, 4)])
def test_dtype_and_shape_round_trip(dtype, shape):
    import sice

    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        image = rng.random(shape).astype(dtype)
        tol = 1e-3 if dtype == np.float16 else 1e-6
    else:
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
        tol = 1
    out = sice.enhance(image, model="gaingrid:untrained")  # identity: values must come back too
    assert out.dtype == image.dtype and out.shape == image.shape
    np.testing.assert_allclose(out.astype(np.float64), image.astype(np.float64), atol=tol)


@pytest.mark.parametrize("values,match", [
    (np.linspace(0, 255, 48), r"float image values must be in \[0, 1\], got values in \[0, 255\] "
                              r"\(an 8-bit image as float\? divide it by 255"),
    (np.linspace(-0.5, 0.5, 48), r"float image values must be in \[0, 1\], got values in \[-0.5, 0.5\]$"),
    (np.r_[np.full(47, 0.5), np.nan], "float image values must be finite and in \\[0, 1\\]; the image holds NaN"),
])
def test_float_input_outside_0_1_is_a_value_error(values, match):
    import sice

    image = np.resize(values, (4, 4, 3)).astype(np.float64)
    with pytest.raises(ValueError, match=match):
        sice.enhance(image, model="gaingrid:untrained")
    with pytest.raises(ValueError, match=match):
        Enhancer("gaingrid:untrained").enhance_rgb(image)


def test_float_tiff_outside_0_1_fails_naming_the_file(tmp_path):
    import sice
    from sice.errors import ImageReadError
    from sice.io import write_image

    write_image(tmp_path / "hdr.tif", np.full((4, 5, 3), 3.0, np.float32))
    with pytest.raises(ImageReadError, match=f"^{tmp_path / 'hdr.tif'}: float image values must be in"):
        sice.enhance_file(tmp_path / "hdr.tif", tmp_path / "out.tif", model="gaingrid:untrained")


def test_channel_axis_follows_scikit_image():
    import sice

    model = _gain_offset_model()
    rng = np.random.default_rng(9)
    last = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    reference = sice.enhance(last, model=model)
    assert np.abs(reference.astype(int) - last).max() > 5
    first = np.ascontiguousarray(np.moveaxis(last, -1, 0))
    np.testing.assert_array_equal(sice.enhance(first, model=model, channel_axis=0), np.moveaxis(reference, -1, 0))
    middle = np.moveaxis(last, -1, 1)
    np.testing.assert_array_equal(sice.enhance(middle, model=model, channel_axis=-2), np.moveaxis(reference, -1, 1))
    grey = last[..., 0]
    assert sice.enhance(grey, model=model, channel_axis=None).shape == grey.shape
    with pytest.raises(ValueError, match="channel_axis=None means a grey"):
        sice.enhance(last, model=model, channel_axis=None)
    with pytest.raises(ValueError, match=r"channel_axis must be an axis of the 3-D image \(-3..2\) or None, got 3"):
        sice.enhance(last, model=model, channel_axis=3)


def test_api_docstring_examples_run():
    import doctest

    import sice

    result = doctest.testmod(sice, verbose=False)
    assert result.attempted >= 8 and result.failed == 0


# --------------------------------------------------------------------------------------------
# Issue 17 item 4: --device cuda
# --------------------------------------------------------------------------------------------
def test_cuda_unavailable_is_a_one_line_error():
    from sice.errors import SiceError

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SiceError, match=r"^device 'cuda': CUDA is not available \([^\n]*\); use device 'cpu'$"):
        Enhancer(device="cuda")


def test_cuda_uses_the_torch_backend_even_where_an_onnx_form_ships(monkeypatch):
    import sice.enhancement.runners as runners
    from sice.errors import SiceError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    made = []

    class Recorder:
        backend = "torch"

        def __init__(self, module, *, device):
            made.append((module.sice_config.name, device))
            self.name = module.sice_config.name
            self.photo_path = module.sice_config.photo_path

    monkeypatch.setattr(runners, "TorchRunner", Recorder)
    monkeypatch.setattr(runners, "shipped_onnx_runner", lambda *a, **k: pytest.fail("onnxruntime used on cuda"))
    enh = Enhancer(device="cuda")
    assert made == [(DEFAULT_MODEL, "cuda")] and enh.backend == "torch"
    with pytest.raises(SiceError, match="the onnxruntime backend runs on the CPU only"):
        Enhancer(device="cuda", backend="onnxruntime")
    with pytest.raises(SiceError, match="an ONNX model runs with onnxruntime on the CPU"):
        Enhancer("model.onnx", device="cuda")
    monkeypatch.undo()
    assert Enhancer().backend == "onnxruntime"  # the CPU default is unchanged


def test_before_after_image_layout():
    from sice.enhancement import before_after_image

    rng = np.random.default_rng(10)
    tall = rng.integers(0, 256, (50, 30, 3), dtype=np.uint8)
    pair = before_after_image(tall, 255 - tall)
    assert pair.dtype == np.uint8 and pair.shape[0] == 50 and pair.shape[1] > 60
    np.testing.assert_array_equal(pair[30:, :30], tall[30:])
    np.testing.assert_array_equal(pair[30:, -30:], 255 - tall[30:])
    wide16 = (rng.random((20, 64)) * 65535).astype(np.uint16)  # grey, 16-bit: shown as 8-bit grey
    pair = before_after_image(wide16, wide16)
    assert pair.shape[1] == 64 and pair.shape[0] > 40 and pair.shape[2] == 3
    big = np.zeros((3000, 2000, 3), np.float32)
    assert before_after_image(big, big, side=400).shape[0] == 400  # each panel 400 x 267


def test_the_registry_config_declares_the_photo_path_and_a_wrong_one_is_refused():
    from sice.models import ModelConfig, model_config

    assert {n: model_config(n).photo_path for n in ("tonegrid", "gaingrid", "hdrnet", "can32", "sice2018")} == {
        "tonegrid": "tone", "gaingrid": "gain", "hdrnet": "gain", "can32": "tiles", "sice2018": "tiles"}
    with pytest.raises(ValueError, match="only fully convolutional models can be run in tiles"):
        ModelConfig(name="x", description="", fully_convolutional=False)
    with pytest.raises(ValueError, match="photo_path must be one of"):
        ModelConfig(name="x", description="", photo_path="global")


def test_a_gain_model_without_offsets_hands_photos_one_field_and_they_get_its_gain():
    from sice.enhancement import gain_inputs
    from sice.models import create_model

    enh = Enhancer(create_model("gaingrid", work_size=64))
    img = np.random.default_rng(3).random((40, 50, 3)).astype(np.float32)
    fields = enh._runner.photo_fields(*gain_inputs(img, 64))
    assert len(fields) == 1 and fields[0].shape == img.shape
    np.testing.assert_allclose(enh.enhance_rgb(img), np.clip(img * np.exp2(fields[0]), 0, 1), atol=2e-6)


def test_the_api_keeps_a_few_enhancers_and_never_mixes_up_model_objects():
    from sice.enhancement.api import _RecentEnhancers
    from sice.models import create_model

    recent = _RecentEnhancers(size=2)
    a = create_model("gaingrid", work_size=64)
    first = recent.get(a)
    assert recent.get(a) is first  # the same object: no reload
    b = create_model("gaingrid", work_size=64)
    assert recent.get(b) is not first  # an equal-looking model is another model
    recent.get(create_model("gaingrid", work_size=64))
    assert len(recent.entries) == 2 and recent.get(a) is not first  # bounded: a was dropped


def test_enhance_to_bytes_takes_any_spelling_of_a_format_and_refuses_an_unknown_one(tmp_path):
    from sice.enhancement import enhance_to_bytes
    from sice.io import write_image

    src = tmp_path / "a.png"
    write_image(src, (np.random.default_rng(1).random((24, 32, 3)) * 120).astype(np.uint8))
    enh = Enhancer("tonegrid:untrained")
    data, fmt = enhance_to_bytes(src, enhancer=enh, format="jpg")
    assert fmt == "JPEG" and data[:3] == b"\xff\xd8\xff"
    assert enhance_to_bytes(src, enhancer=enh, format="jpeg") == (data, "JPEG")
    assert enhance_to_bytes(src, enhancer=enh)[1] == "PNG"  # the input's own format
    with pytest.raises(ValueError, match="format must be one of JPEG, PNG, TIFF, BMP, WEBP, got 'gif'"):
        enhance_to_bytes(src, enhancer=enh, format="gif")
