"""The floor of NumPy image operations (sice.imageops) and its torch twin (sice.tensorops)."""
import subprocess
import sys

import numpy as np
import pytest

from sice.imageops import (
    REC601,
    linear_to_srgb,
    luminance,
    resize_long_side,
    srgb_to_linear,
)


def test_srgb_curves_match_the_standard():
    # IEC 61966-2-1 values evaluated by hand: 0.5 encoded -> ((0.5 + 0.055) / 1.055) ** 2.4.
    assert srgb_to_linear(np.float32(0.5)) == pytest.approx(0.21404114, rel=1e-5)
    assert srgb_to_linear(np.float32(0.02)) == pytest.approx(0.02 / 12.92, rel=1e-5)
    v = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(v)), v, atol=1e-5)


def test_linear_to_srgb_clips_out_of_range_light():
    np.testing.assert_allclose(linear_to_srgb(np.array([-0.5, 0.0, 1.0, 3.0])), [0, 0, 1, 1], atol=1e-7)


def test_luminance_is_rec601_luma():
    rgb = np.array([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0.5]]], np.float32)
    y = luminance(rgb)
    assert y.dtype == np.float32 and y.shape == (1, 4)
    np.testing.assert_allclose(y[0], [0.299, 0.587, 0.114, 0.5], rtol=1e-6)
    y64 = luminance(rgb.astype(np.float64), dtype=np.float64)
    assert y64.dtype == np.float64
    assert y64[0, 3] == pytest.approx(0.5 * (0.299 + 0.587 + 0.114), abs=1e-15)


def test_resize_long_side_keeps_the_aspect_and_never_enlarges():
    img = np.random.default_rng(0).random((300, 200, 3)).astype(np.float32)
    small = resize_long_side(img, 150)
    assert small.shape == (150, 100, 3) and small.dtype == np.float32
    # area averaging by exactly 2: each output pixel is the mean of a 2x2 block
    np.testing.assert_allclose(small[0, 0], img[:2, :2].mean(axis=(0, 1)), rtol=1e-5)
    assert resize_long_side(img, 300) is img and resize_long_side(img, 1000) is img
    assert resize_long_side(np.zeros((1000, 3), np.uint8), 10).shape == (10, 1)  # short side >= 1 px
    with pytest.raises(ValueError, match="size must be >= 1"):
        resize_long_side(img, 0)


def test_resize_long_side_takes_non_contiguous_views():
    img = np.random.default_rng(1).random((64, 48, 3)).astype(np.float32)
    np.testing.assert_array_equal(resize_long_side(img[:, ::-1], 32), resize_long_side(img[:, ::-1].copy(), 32))


def test_numpy_floor_and_the_enhancement_core_do_not_import_torch():
    """sice.imageops serves the ONNX-only path, which must not pay torch's import: the torch
    helpers (sice.tensorops) are imported only where torch already is."""
    code = "import sys, sice.imageops, sice.io, sice.enhancement; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tensor_luminance_matches_the_numpy_one():
    torch = pytest.importorskip("torch")
    from sice.tensorops import image_to_tensor, tensor_to_image
    from sice.tensorops import luminance as tensor_luminance

    rgb = np.random.default_rng(2).random((5, 7, 3)).astype(np.float32)
    t = image_to_tensor(rgb)
    assert t.shape == (1, 3, 5, 7) and t.is_contiguous()
    y = tensor_luminance(t)
    assert y.shape == (1, 1, 5, 7)
    np.testing.assert_allclose(y[0, 0].numpy(), luminance(rgb), rtol=1e-6)
    np.testing.assert_array_equal(tensor_to_image(t), rgb)
    assert tensor_to_image(y).shape == (5, 7, 1)
    # the weights are REC601 itself, in the order R, G, B
    eye = torch.eye(3).view(3, 3, 1, 1)
    np.testing.assert_allclose(tensor_luminance(eye).flatten().numpy(), REC601, rtol=1e-7)


def test_image_to_tensor_memory_formats():
    torch = pytest.importorskip("torch")
    from sice.tensorops import image_to_tensor

    rgb = np.random.default_rng(3).random((4, 6, 3)).astype(np.float32)
    cl = image_to_tensor(rgb, memory_format=torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert cl.data_ptr() == torch.from_numpy(rgb).data_ptr()  # a view of the array, no copy
    torch.testing.assert_close(cl, image_to_tensor(rgb))
