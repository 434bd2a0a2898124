"""tonegrid: pinned monotone luma curves, the black toe, the bounded chroma gain, and how its
two gain fields reach a photo (torch, ONNX, uint8/uint16/float)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sice.enhancement import Enhancer, apply_tone, gain_inputs
from sice.models import create_model
from sice.models.tonegrid import MAX_CHROMA, SHOULDER_SLOPE, TOE_SLOPE, knot_positions, luma


def _random_model(seed: int = 0, scale: float = 1.0):
    """A tonegrid whose last layer is random: curves far from the identity."""
    torch.manual_seed(seed)
    model = create_model("tonegrid").eval()
    with torch.no_grad():
        model.to_grid.weight.normal_(0, scale)
        model.to_grid.bias.normal_(0, scale)
    return model


def test_knots_are_dense_at_both_ends_and_symmetric():
    y = knot_positions(16).double()
    assert float(y[0]) == 0.0 and float(y[-1]) == 1.0
    assert torch.allclose(y + y.flip(0), torch.ones_like(y), atol=1e-6)  # a(1 - Y) = 1 - a(Y)
    # on the axis a(Y) = (sqrt(Y) + 1 - sqrt(1 - Y)) / 2 they are evenly spaced
    a = (y.sqrt() + 1 - (1 - y).sqrt()) / 2
    assert torch.allclose(a, torch.linspace(0, 1, 16, dtype=torch.float64), atol=1e-6)
    steps = y[1:] - y[:-1]
    assert float(steps[0]) < float(steps[7]) / 5  # 4/255 at black, 24/255 in the middle


def test_a_fresh_model_is_the_identity():
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        y = create_model("tonegrid")(x)
    assert torch.allclose(y, x, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_black_stays_black_and_white_stays_white_whatever_the_weights(seed):
    model = _random_model(seed, scale=2.0)
    x = torch.rand(1, 3, 64, 64) * 0.8 + 0.1
    x[..., :16, :] = 1.0  # a blown-out sky
    x[..., -16:, :] = 0.0  # a black floor
    with torch.no_grad():
        y = model(x)
    assert float(y[..., :16, :].min()) == pytest.approx(1.0, abs=1e-5)
    assert float(y[..., -16:, :].max()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_output_luma_is_monotone_in_input_luma_at_every_pixel(seed):
    # One fixed thumbnail (so one fixed grid of curves), uniform grey images of increasing
    # level: at every pixel the output luma may not go down while the input goes up (positive
    # curve increments).
    model = _random_model(seed, scale=1.5)
    thumb = torch.rand(1, 3, 256, 256)
    levels = torch.linspace(0, 1, 129)
    with torch.no_grad():
        outs = torch.stack([luma(model._enhance(thumb, torch.full((1, 3, 24, 24), float(v))))[0, 0]
                            for v in levels])
    assert torch.all(outs[1:] - outs[:-1] >= -1e-5)


def _documented_high(y: np.ndarray) -> np.ndarray:
    """slope_bounds' upper bounds as its docstring states them: log 2 + log 8 (1 - c)^2 at a
    segment centred on c, log 4 on the first segment."""
    c = (y[1:] + y[:-1]) / 2
    high = np.log(2) + np.log(8) * (1 - c) ** 2
    high[0] = np.log(4)
    return high


def _extreme_curve(signs: np.ndarray) -> torch.nn.Module:
    """A tonegrid whose segment slopes sit at their bounds: +1 -> upper, -1 -> lower."""
    model = create_model("tonegrid").eval()
    with torch.no_grad():
        model.to_grid.bias[:15] = torch.tensor(signs * 1e4, dtype=torch.float32)
    return model


def _grey_out(model, level: float) -> float:
    x = torch.full((1, 3, 8, 8), level)
    with torch.no_grad():
        return float(luma(model(x)).mean())


@pytest.mark.parametrize("rest", [1, -1])
def test_the_first_segment_keeps_black_near_black_under_the_strongest_lift(rest):
    y = knot_positions(16).double().numpy()
    high = _documented_high(y)
    d = np.diff(y)
    signs = np.full(15, float(rest))
    signs[0] = 1  # the first segment as steep as allowed; the rest all steep or all flat
    slopes = np.where(signs > 0, np.exp(high), 0.5)
    scale = float(np.sum(slopes * d))  # the curve is divided by this to end at 1
    first_slope = min(4 / scale, TOE_SLOPE)  # then held to TOE_SLOPE
    model = _extreme_curve(signs)
    assert _grey_out(model, 2 / 255) == pytest.approx(2 / 255 * first_slope, rel=1e-3)
    assert _grey_out(model, 2 / 255) * 255 <= 2 * TOE_SLOPE + 1e-3


def test_dark_tones_above_the_toe_can_be_lifted_a_lot():
    signs = -np.ones(15)
    signs[:2] = 1  # 3 stops at 10/255, where an under-exposed photo's shadows are
    assert _grey_out(_extreme_curve(signs), 0.04) / 0.04 > 8


def test_the_shoulder_rolls_highlights_off_without_a_cliff():
    y = knot_positions(16).double().numpy()
    high = _documented_high(y)
    signs = -np.ones(15)
    signs[-1] = 1  # everything darkened, the last segment as steep as allowed
    model = _extreme_curve(signs)
    d = np.diff(y)
    scale = 0.5 * d[:-1].sum() + np.exp(high[-1]) * d[-1]
    last = min(np.exp(high[-1]) / scale, SHOULDER_SLOPE) * d[-1]  # held to SHOULDER_SLOPE
    below = 1 - last  # the output at the last knot below white
    assert _grey_out(model, float(y[-2])) == pytest.approx(below, rel=1e-3)
    assert (1 - below) / (1 - y[-2]) <= SHOULDER_SLOPE + 1e-6
    # the segment below it is no cliff either: 0.5 / scale, scaled up by what the last lost
    assert _grey_out(model, 1.0) == pytest.approx(1.0, abs=1e-6)


def test_chroma_gain_is_bounded_by_max_chroma():
    model = _random_model(1, scale=3.0)
    with torch.no_grad():
        model.to_grid.bias[0] = 6.0  # strong lift: the luma gain far above MAX_CHROMA
    x = torch.rand(1, 3, 48, 48) * 0.1 + 0.05
    with torch.no_grad():
        g, s = model.tone_fields(model.thumbnail(x), x)
    assert float(g.max()) > MAX_CHROMA
    assert float(s.max()) <= MAX_CHROMA + 1e-5


def test_apply_tone_is_the_models_output_at_the_working_resolution():
    model = _random_model(2, scale=0.7)
    rng = np.random.default_rng(0)
    x = (rng.random((120, 90, 3)) ** 2).astype(np.float32)
    thumb, work = gain_inputs(x, 1024)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        expected = model._enhance(t(thumb), t(x))[0].numpy().transpose(1, 2, 0)
        g, s = (f[0, 0].numpy() for f in model.tone_fields(t(thumb), t(work)))
    assert np.abs(apply_tone(x, g, s) - expected).max() < 1e-5
    # the same in uint8 and uint16: rounding only
    for dtype, scale in ((np.uint8, 255), (np.uint16, 65535)):
        xi = np.round(x * scale).astype(dtype)
        xq = xi.astype(np.float32) / scale
        with torch.no_grad():
            ref = model._enhance(t(thumb), t(xq))[0].numpy().transpose(1, 2, 0)
            g, s = (f[0, 0].numpy() for f in model.tone_fields(t(thumb), t(xq)))
        out = apply_tone(xi, g, s)
        assert out.dtype == dtype
        assert np.abs(out.astype(np.float64) / scale - ref).max() <= 0.5 / scale + 2e-5


def test_apply_tone_upsamples_smooth_fields_like_opencv_resize():
    import cv2

    rng = np.random.default_rng(3)
    g = (1 + rng.random((6, 8))).astype(np.float32)
    s = (0.5 + rng.random((6, 8))).astype(np.float32)
    image = rng.random((60, 80, 3)).astype(np.float32) * 0.4
    gu = cv2.resize(g, (80, 60), interpolation=cv2.INTER_LINEAR)
    su = cv2.resize(s, (80, 60), interpolation=cv2.INTER_LINEAR)
    y = image @ np.array([0.299, 0.587, 0.114], np.float32)
    expected = np.clip(su[..., None] * image + ((gu - su) * y)[..., None], 0, 1)
    assert np.abs(apply_tone(image, g, s, strip=7) - expected).max() < 1e-5


def test_apply_tone_refuses_mismatched_fields():
    with pytest.raises(ValueError, match="equal"):
        apply_tone(np.zeros((4, 4, 3), np.uint8), np.ones((2, 2), np.float32), np.ones((2, 3), np.float32))


def test_enhancer_and_onnx_export_agree(tmp_path):
    from sice.export import export_onnx

    model = _random_model(4, scale=0.5)
    rng = np.random.default_rng(1)
    x = (rng.random((70, 100, 3)) ** 1.5 * 255).astype(np.uint8)
    torch_out = Enhancer(model).enhance_pixels(x)
    path = export_onnx(model, tmp_path / "tone.onnx")
    onnx = Enhancer(path)
    assert onnx.backend == "onnxruntime"
    assert np.abs(onnx.enhance_pixels(x).astype(int) - torch_out.astype(int)).max() <= 1


def test_lost_detail_weight_marks_clipped_and_black_inputs():
    from sice.training.loop import lost_detail_weight

    x = torch.full((1, 3, 2, 3), 0.5)
    x[..., 0, 0] = 1.0  # clipped in every channel
    x[0, :, 0, 1] = torch.tensor([1.0, 1.0, 0.9])  # one channel below 250/255: not lost
    x[..., 1, 0] = 0.0  # black
    x[0, :, 1, 1] = torch.tensor([2 / 255, 1 / 255, 0.0])  # every channel <= 2/255: black
    w = lost_detail_weight(x, 0.25)
    assert w.shape == (1, 1, 2, 3)
    assert w[0, 0].tolist() == [[0.25, 1.0, 1.0], [0.25, 0.25, 1.0]]
