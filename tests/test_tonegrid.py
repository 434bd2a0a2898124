"""tonegrid: pinned monotone luma curves, the black toe, the bounded chroma gain, and how its
two gain fields reach a photo (torch, ONNX, uint8/uint16/float)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sice.enhancement import Enhancer, apply_tone, gain_inputs
from sice.models import create_model
from sice.models.tonegrid import (BASE_RADIUS, MAX_CHROMA, SHOULDER_SLOPE, TOE_SLOPE, base_luma,
                                  knot_positions)
from sice.tensorops import image_to_tensor, luminance, tensor_to_image


def _random_model(seed: int = 0, scale: float = 1.0):
    """A tonegrid whose last layer is random: curves far from the identity."""
    torch.manual_seed(seed)
    model = create_model("tonegrid").eval()
    with torch.no_grad():
        model.to_grid.weight.normal_(0, scale)
        model.to_grid.bias.normal_(0, scale)
    return model


def test_the_curve_knots_are_the_symmetric_ones_plus_two_near_black():
    y = create_model("tonegrid").knot_luma.double()
    expected = torch.sort(torch.cat([knot_positions(16).double(), torch.tensor([2 / 255, 8 / 255],
                                                                               dtype=torch.float64)])).values
    assert torch.allclose(y, expected, atol=1e-7)
    with pytest.raises(ValueError, match="dark_knots"):
        create_model("tonegrid", dark_knots=(0.5,))


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
    # away from their edges (the base luma's window, BASE_RADIUS, reaches across them)
    assert float(y[..., :16 - 2 * BASE_RADIUS, :].min()) == pytest.approx(1.0, abs=1e-5)
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
        outs = torch.stack([luminance(model._enhance(thumb, torch.full((1, 3, 24, 24), float(v))))[0, 0]
                            for v in levels])
    assert torch.all(outs[1:] - outs[:-1] >= -1e-5)


SEGMENTS = create_model("tonegrid").knots - 1  # 17: 16 knots + 2 dark knots - 1


def _extreme_curve(signs: np.ndarray) -> torch.nn.Module:
    """A tonegrid whose curve increments are one-hot-like: +1 -> a segment takes (a share of)
    everything, -1 -> nothing."""
    model = create_model("tonegrid").eval()
    with torch.no_grad():
        model.to_grid.bias[:SEGMENTS] = torch.tensor(signs * 50.0, dtype=torch.float32)
    return model


def _grey_out(model, level: float) -> float:
    x = torch.full((1, 3, 8, 8), level)
    with torch.no_grad():
        return float(luminance(model(x)).mean())


def test_the_toe_keeps_black_near_black_under_the_strongest_lift():
    signs = -np.ones(SEGMENTS)
    signs[0] = 1  # the first segment would take the whole curve: black to 2/255 -> 0..255
    model = _extreme_curve(signs)
    assert _grey_out(model, 2 / 255) == pytest.approx(2 / 255 * TOE_SLOPE, rel=1e-3)
    assert _grey_out(model, 1.0) == pytest.approx(1.0, abs=1e-6)  # still ends at white
    assert _grey_out(model, 0.5) <= 1.0


def test_the_toe_grows_the_lift_smoothly_and_shadows_above_it_can_be_lifted_a_lot():
    signs = -np.ones(SEGMENTS)
    signs[:4] = 1  # every toe segment (black .. 14.4/255) as steep as it may be
    model = _extreme_curve(signs)
    # by hand, the documented caps: slopes 5, 5 sqrt(2), 5 sqrt(4), 5 sqrt(7.2) over the knots
    # 0, 2, 4, 8, 14.4 (/255)
    expected = (2 * 5 + 2 * 5 * 2 ** 0.5 + 4 * 10) / 255
    assert _grey_out(model, 8 / 255) == pytest.approx(expected, rel=1e-3)  # 8x at 8/255
    signs = -np.ones(SEGMENTS)
    signs[4] = 1  # the first free segment (14.4/255 .. 29.5/255) takes the curve
    assert _grey_out(_extreme_curve(signs), 29.5 / 255) / (29.5 / 255) > 8  # 3 stops


def test_base_luma_keeps_flat_regions_and_steps_and_smooths_noise():
    torch.manual_seed(0)
    flat = torch.full((1, 1, 32, 32), 0.7)
    assert torch.allclose(base_luma(flat), flat, atol=1e-6)
    step = torch.zeros(1, 1, 32, 32)
    step[..., 16:] = 0.9
    # a step of 0.9 >> sqrt(BASE_EPS): kept within 1 % right next to it
    assert float((base_luma(step) - step).abs().max()) < 0.01
    noisy = 0.8 + 0.01 * torch.randn(1, 1, 64, 64)  # noise << sqrt(BASE_EPS)
    assert float(base_luma(noisy).std()) < 0.35 * float(noisy.std())


def test_the_shoulder_holds_the_top_segments_and_white_stays_white():
    signs = -np.ones(SEGMENTS)
    signs[-1] = 1  # the last segment (0.984 .. 1) would take the whole curve
    model = _extreme_curve(signs)
    y = model.knot_luma.numpy()
    below = _grey_out(model, float(y[-2]))
    assert (1 - below) / (1 - y[-2]) == pytest.approx(SHOULDER_SLOPE, rel=1e-3)
    assert _grey_out(model, 1.0) == pytest.approx(1.0, abs=1e-6)
    # the shoulder holds every segment from SHOULDER_START up, not just the last
    signs = -np.ones(SEGMENTS)
    signs[-3] = 1
    model = _extreme_curve(signs)
    lo, hi = float(y[-4]), float(y[-3])
    assert (_grey_out(model, hi) - _grey_out(model, lo)) / (hi - lo) <= SHOULDER_SLOPE * 1.001


def test_noise_next_to_a_clipped_sky_is_not_amplified_into_speckles():
    # A curve that darkens near-white as far as the shoulder allows, white pinned. The noise of
    # a near-white band is read through the base luma: scaled by the gain (below 1) plus what
    # is left of it in the base times the slope; it must not grow.
    signs = -np.ones(SEGMENTS)
    signs[-3:] = 1
    model = _extreme_curve(signs)
    torch.manual_seed(1)
    x = torch.ones(1, 3, 64, 64)
    band = (0.96 + 0.006 * torch.randn(1, 1, 32, 64)).clamp(0, 1)  # JPEG-like noise below white
    x[..., 32:, :] = band
    with torch.no_grad():
        y = luminance(model(x))
    assert _grey_out(model, 0.96) < 0.81  # the band is darkened a lot, with a slope of 5 there ...
    inner = (slice(None), slice(None), slice(32 + 4, None), slice(4, -4))
    # ... which, read per pixel, would multiply its noise by 5; through the base, 1.2
    assert float(y[inner].std()) < 1.5 * float(band[..., 4:, 4:-4].std())
    assert float(y[..., :32 - 4, :].min()) == pytest.approx(1.0, abs=1e-5)  # the sky stays white


def test_chroma_gain_is_bounded_by_max_chroma_and_saturation_is_held_near_clipping():
    signs = -np.ones(SEGMENTS)
    signs[4] = 1  # the first free segment (14.4/255 .. 29.5/255) takes the curve
    model = _extreme_curve(signs)
    with torch.no_grad():
        model.to_grid.bias[SEGMENTS:] = 20.0  # the most saturation there is, everywhere (tanh saturated)
    x = torch.full((1, 3, 16, 16), 0.1)
    x[..., 0, :, :] = 0.12  # a little colour
    with torch.no_grad():
        g, s = model.tone_fields(model.thumbnail(x), x)
    assert float(g.min()) > 1.5 * MAX_CHROMA  # about 3 stops of luma gain ...
    assert float(s.max()) == pytest.approx(MAX_CHROMA, rel=1e-5)  # ... chroma gain held at 4
    # a pixel with a clipped channel gets no saturation boost: chroma gain = luma gain
    bright = torch.full((1, 3, 16, 16), 0.9)
    bright[..., 2, :, :] = 1.0
    with torch.no_grad():
        g, s = model.tone_fields(model.thumbnail(bright), bright)
    assert torch.allclose(s, torch.minimum(g, torch.full_like(g, MAX_CHROMA)), rtol=1e-5)


def test_apply_tone_is_the_models_output_at_the_working_resolution():
    model = _random_model(2, scale=0.7)
    rng = np.random.default_rng(0)
    x = (rng.random((120, 90, 3)) ** 2).astype(np.float32)
    thumb, work = gain_inputs(x, 1024)
    with torch.no_grad():
        expected = tensor_to_image(model._enhance(image_to_tensor(thumb), image_to_tensor(x)))
        g, s = (f[0, 0].numpy() for f in model.tone_fields(image_to_tensor(thumb), image_to_tensor(work)))
    assert np.abs(apply_tone(x, g, s) - expected).max() < 1e-5
    # the same in uint8 and uint16: rounding only
    for dtype, scale in ((np.uint8, 255), (np.uint16, 65535)):
        xi = np.round(x * scale).astype(dtype)
        xq = xi.astype(np.float32) / scale
        with torch.no_grad():
            ref = tensor_to_image(model._enhance(image_to_tensor(thumb), image_to_tensor(xq)))
            g, s = (f[0, 0].numpy() for f in model.tone_fields(image_to_tensor(thumb), image_to_tensor(xq)))
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
    from sice.models.onnx_export import export_onnx

    model = _random_model(4, scale=0.5)
    rng = np.random.default_rng(1)
    x = (rng.random((70, 100, 3)) ** 1.5 * 255).astype(np.uint8)
    torch_out = Enhancer(model).enhance_pixels(x)
    path = export_onnx(model, tmp_path / "tone.onnx")
    onnx = Enhancer(path)
    assert onnx.backend == "onnxruntime"
    assert np.abs(onnx.enhance_pixels(x).astype(int) - torch_out.astype(int)).max() <= 1


def test_lost_detail_weight_marks_clipped_and_black_inputs():
    from sice.training.objective import lost_detail_weight

    x = torch.full((1, 3, 2, 3), 0.5)
    x[..., 0, 0] = 1.0  # clipped in every channel
    x[0, :, 0, 1] = torch.tensor([1.0, 1.0, 0.9])  # one channel below 250/255: not lost
    x[..., 1, 0] = 0.0  # black
    x[0, :, 1, 1] = torch.tensor([2 / 255, 1 / 255, 0.0])  # every channel <= 2/255: black
    w = lost_detail_weight(x, 0.25)
    assert w.shape == (1, 1, 2, 3)
    assert w[0, 0].tolist() == [[0.25, 1.0, 1.0], [0.25, 0.25, 1.0]]


def test_highlight_rolloff_target_blends_towards_the_labels_gamma_near_white():
    from sice.training.objective import highlight_rolloff_target

    x = torch.tensor([0.5, 0.5, 0.9, 1.0]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    x[0, 2, 0, 0] = 0.3  # a coloured pixel: its brightest channel decides, and its luma changes
    label = torch.full_like(x, 0.4)
    luma_in = (0.299 * 0.5 + 0.587 * 0.5 + 0.114 * 0.3 + 0.5 + 0.9 + 1.0) / 4
    gamma = math.log(0.4) / math.log(luma_in)  # takes the input's mean luma to the label's
    y = highlight_rolloff_target(x, label, 0.8)
    # below 0.8: the label; 0.9: halfway to 0.9**gamma; white: white
    assert torch.allclose(y[0, :, 0, :], torch.full((3, 2), 0.4))
    assert torch.allclose(y[0, :, 1, 0], torch.full((3,), 0.5 * 0.4 + 0.5 * 0.9 ** gamma))
    assert torch.allclose(y[0, :, 1, 1], torch.ones(3))
    # off below its start: a dark photo's target is its label
    dark = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.7
    assert torch.equal(highlight_rolloff_target(dark, label[..., :1, :1].expand(2, 3, 4, 4), 0.8),
                       label[..., :1, :1].expand(2, 3, 4, 4))


def test_strength_is_a_power_of_both_gains_and_zero_is_the_input():
    model = _random_model(5, scale=0.6)
    rng = np.random.default_rng(2)
    x = (rng.random((40, 50, 3)) ** 2 * 255).astype(np.uint8)
    enhancer = Enhancer(model)
    assert np.array_equal(enhancer.enhance_pixels(x, strength=0.0), x)
    thumb, work = gain_inputs(x, 1024)
    with torch.no_grad():
        g, s = (f[0, 0].numpy() for f in model.tone_fields(image_to_tensor(thumb), image_to_tensor(work)))
    half = apply_tone(x, np.sqrt(g), np.sqrt(s))  # half the change in stops
    assert np.abs(enhancer.enhance_pixels(x, strength=0.5).astype(int) - half.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="strength"):
        enhancer.enhance_pixels(x, strength=1.5)


def test_an_ensemble_is_the_mean_of_its_members_fields_and_exports(tmp_path):
    from sice.models.onnx_export import export_onnx
    from sice.models.tonegrid import tone_ensemble_of

    a, b = _random_model(6, scale=0.6), _random_model(7, scale=0.6)
    ensemble = tone_ensemble_of([a, b])
    assert ensemble.sice_config.name == "tonegrid-ensemble" and ensemble.sice_config.photo_path == "tone"
    x = torch.rand(1, 3, 40, 52) ** 2
    thumb = a.thumbnail(x)
    with torch.no_grad():
        (ga, sa), (gb, sb) = a.tone_fields(thumb, x), b.tone_fields(thumb, x)
        g, s = ensemble.tone_fields(thumb, x)
        # the mean of the members' outputs, before clipping, is one model with the mean gains
        mean_out = ((sa * x + (ga - sa) * luminance(x)) + (sb * x + (gb - sb) * luminance(x))) / 2
    assert torch.allclose(g, (ga + gb) / 2) and torch.allclose(s, (sa + sb) / 2)
    assert torch.allclose(s * x + (g - s) * luminance(x), mean_out, atol=1e-6)
    img = (np.random.default_rng(4).random((60, 80, 3)) * 255).astype(np.uint8)
    path = export_onnx(ensemble, tmp_path / "ens.onnx")
    assert np.abs(Enhancer(path).enhance_pixels(img).astype(int) - Enhancer(ensemble).enhance_pixels(img).astype(int)).max() <= 1
