"""No-reference tone figures (sice.evaluation.tone): values computed by hand on tiny images."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sice.evaluation import tone
from sice.evaluation.metrics import METRICS, compute_metrics


def _grey(values, shape=(10, 10)) -> np.ndarray:
    """An (H, W, 3) grey image whose pixels take ``values`` (8-bit levels) in raster order."""
    v = np.resize(np.asarray(values, dtype=np.float32), shape[0] * shape[1]).reshape(shape) / 255
    return np.repeat(v[..., None], 3, axis=2)


def test_white_and_black_point_are_luma_percentiles():
    img = _grey(np.arange(100) * 2.5)  # levels 0, 2.5, ..., 247.5
    # numpy's linear percentile of 0..99 at 99.5 is 98.505 -> x 2.5 levels
    assert tone.white_point(img) == pytest.approx(98.505 * 2.5, abs=1e-3)
    assert tone.black_point(img) == pytest.approx(0.495 * 2.5, abs=1e-3)


def test_clipped_luma_averages_output_where_every_input_channel_is_clipped():
    inp = _grey([100] * 50 + [255] * 50)
    inp[0, 0] = [1.0, 1.0, 0.9]  # one channel below 250: not clipped although bright
    out = _grey([30] * 50 + [200] * 25 + [240] * 25)
    # clipped input pixels: rows 5-9 (50 pixels) -> output 200 x 25 and 240 x 25
    assert tone.clipped_luma(out, inp) == pytest.approx(220.0, abs=1e-3)


def test_black_luma_and_not_applicable_when_the_region_is_missing():
    inp = _grey([0] * 20 + [2] * 20 + [3] * 60)  # levels <= 2 are black: 40 pixels
    out = _grey([10] * 20 + [20] * 20 + [90] * 60)
    assert tone.black_luma(out, inp) == pytest.approx(15.0, abs=1e-3)
    assert math.isnan(tone.black_luma(out, _grey([50])))
    assert math.isnan(tone.clipped_luma(out, _grey([50])))


def test_colourfulness_matches_hasler_suesstrunk_by_hand():
    # half pure red (255, 0, 0), half pure blue (0, 0, 255):
    # rg = 255 | 0 ; yb = 127.5 | -255 ; std_rg = 127.5, std_yb = 191.25,
    # mean_rg = 127.5, mean_yb = -63.75
    img = np.zeros((2, 2, 3), np.float32)
    img[0, :, 0] = 1.0
    img[1, :, 2] = 1.0
    expected = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, -63.75)
    assert tone.colourfulness(img) == pytest.approx(expected, rel=1e-6)
    assert tone.colourfulness(_grey([10, 200])) == pytest.approx(0.0, abs=1e-9)


def test_colourfulness_ratio_is_output_over_input_and_nan_for_grey_input():
    rng = np.random.default_rng(0)
    img = rng.random((16, 16, 3)).astype(np.float32)
    half = 0.5 * img  # every opponent value halved: colourfulness halves
    assert tone.colourfulness_ratio(half, img) == pytest.approx(0.5, rel=1e-5)
    assert math.isnan(tone.colourfulness_ratio(img, _grey([128], shape=(16, 16))))


def _cr_noise(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Add ``noise`` along BT.601 Cr only: R += n, G -= n * 0.299 / 0.587 keeps the luma, so
    Cr = 0.713 (R - Y) moves by 0.713 n and Cb = 0.564 (B - Y) not at all."""
    out = image.copy()
    out[..., 0] += noise
    out[..., 1] -= noise * 0.299 / 0.587
    return out


def test_shadow_noise_measures_chroma_noise_in_the_darkest_quarter_only():
    rng = np.random.default_rng(1)
    inp = _grey([60] * 128 * 32 + [200] * 128 * 96, shape=(128, 128))  # top quarter dark
    noise = rng.normal(0, 4 / 255, (128, 128)).astype(np.float32)
    shadow_only = np.where(np.arange(128)[:, None] < 32, noise, 0).astype(np.float32)
    bright_only = noise - shadow_only
    # white noise minus its Gaussian low-pass (sigma 2) keeps sqrt(1 - 2 g0 + sum g^2) of its
    # std, g0 = 1 / (2 pi 4), sum g^2 = 1 / (4 pi 4): 0.970; Cr carries 0.713 of the red noise
    expected = 0.713 * 4 * np.sqrt(1 - 2 / (8 * np.pi) + 1 / (16 * np.pi))
    assert tone.shadow_noise(inp, inp) == pytest.approx(0.0, abs=1e-3)
    assert tone.shadow_noise(_cr_noise(inp, shadow_only), inp) == pytest.approx(expected, rel=0.1)
    assert tone.shadow_noise(_cr_noise(inp, bright_only), inp) < 0.1 * expected


def test_tone_figures_are_metrics_of_sice_eval_with_nan_for_not_applicable():
    inp = _grey([100])
    scores = compute_metrics(inp, ["white-point", "clipped-luma", "colourfulness"], original=inp)
    assert scores["white-point"] == pytest.approx(100.0, abs=1e-3)
    assert math.isnan(scores["clipped-luma"]) and math.isnan(scores["colourfulness"])
    for name in ("white-point", "black-point", "clipped-luma", "black-luma", "colourfulness", "shadow-noise"):
        assert METRICS[name].needs == "input"


def test_bad_shapes_are_refused_with_the_parameter_named():
    with pytest.raises(ValueError, match="output must be"):
        tone.clipped_luma(np.zeros((4, 4)), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="same shape"):
        tone.black_luma(np.zeros((4, 4, 3), np.float32), np.zeros((5, 4, 3), np.float32))
