"""The in-process MEF and tone-mapping operators of sice.fusion against values computed by hand
from each paper's formulas (independent transcriptions, not the module's own code)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sice.fusion import ashikhmin, bilateral_fusion, block_fusion, fattal, mai, photographic, pyramid_fusion


# --- Reinhard et al. 2002, photographic operator ------------------------------------------------

def test_photographic_uniform_image_maps_to_key_over_one_plus_key():
    """Uniform luminance: log-average = L, scaled L = a, every neighbourhood uniform: a / (1 + a)."""
    for level in (1e-3, 1.0, 250.0):
        out = photographic.photographic_luminance(np.full((40, 50), level, np.float32))
        np.testing.assert_allclose(out, 0.18 / 1.18, rtol=1e-5)


def test_photographic_two_regions_follow_global_formula_without_halo():
    """Halves at 1 and 100: log-average 10, scaled 0.018 and 1.8. Away from the edge the pixel
    adapts to its own region: L / (1 + L) = 0.018 / 1.018 and 1.8 / 2.8. Two pixels from the
    edge the dark side still does (the scale selection avoids the dark halo that adapting to a
    43-pixel neighbourhood would give)."""
    lum = np.ones((64, 256), np.float32)
    lum[:, 128:] = 100.0
    out = photographic.photographic_luminance(lum)
    assert out[32, 10] == pytest.approx(0.018 / 1.018, rel=1e-3)
    assert out[32, 245] == pytest.approx(1.8 / 2.8, rel=1e-3)
    assert out[32, 125] == pytest.approx(0.018 / 1.018, rel=0.01)
    # For contrast: adapting every pixel to the largest scale (sigma 43 / 4 px) darkens it by > 40 %.
    scaled = 0.018 * lum
    global_adapt = scaled / (1 + cv2.GaussianBlur(scaled, (0, 0), 43 / 4))
    assert global_adapt[32, 125] < 0.6 * (0.018 / 1.018)


# --- Fattal et al. 2002, gradient-domain compression -------------------------------------------

def test_fattal_attenuation_factor_is_the_papers_formula():
    alpha, beta = 0.2, 0.85
    mags = np.array([alpha, 10 * alpha, 0.1 * alpha])
    np.testing.assert_allclose(fattal.attenuation(mags, alpha, beta), [1.0, 10 ** (beta - 1), 0.1 ** (beta - 1)])


def test_fattal_with_beta_one_reconstructs_the_log_luminance():
    """beta = 1 leaves every gradient unchanged: the Poisson solve returns H up to a constant."""
    h = np.random.default_rng(3).normal(size=(40, 70)).cumsum(axis=1)
    np.testing.assert_allclose(fattal.compress_log_luminance(h, beta=1.0), h - h.mean(), atol=1e-8)


def test_fattal_compresses_large_gradients_more_than_small_ones():
    """A 5-unit log step with fine texture: the step shrinks far more than the texture does."""
    rng = np.random.default_rng(0)
    h = np.zeros((64, 128))
    h[:, 64:] = 5.0
    texture = 0.05 * rng.standard_normal(h.shape)
    out = fattal.compress_log_luminance(h + texture)
    step = out[:, 70:120].mean() - out[:, 8:58].mean()
    texture_out = out[:, 8:58].std()
    assert step < 0.5 * 5.0
    assert texture_out / step > 2 * texture[:, 8:58].std() / 5.0


# --- Mai et al. 2011, optimal tone curve --------------------------------------------------------

def test_mai_tone_curve_slopes_are_cube_roots_of_the_histogram():
    """1, 8 and 27 pixels (of 36) at log10 L = 0.05, 1.05, 1.95: three occupied bins of width 0.1
    whose cube-root weights are 1 : 2 : 3, so the curve rises by 1/6, 2/6 and 3/6 across them
    (flat elsewhere) and the bins' centres map to 1/12, 1/6 + 1/6 and 1/6 + 2/6 + 1/4."""
    log_lum = np.array([0.05] * 1 + [1.05] * 8 + [1.95] * 27)
    nodes, values = mai.optimal_tone_curve(log_lum)
    assert nodes[0] == pytest.approx(0.0) and nodes[-1] == pytest.approx(2.0) and len(nodes) == 21
    np.testing.assert_allclose(np.interp([0.05, 1.05, 1.95], nodes, values), [1 / 12, 1 / 3, 3 / 4], atol=1e-12)
    assert values[0] == 0.0 and values[-1] == pytest.approx(1.0) and np.all(np.diff(values) >= 0)


def test_mai_keeps_grey_grey_and_order():
    lum = np.geomspace(0.01, 50.0, 64, dtype=np.float32)[None, :].repeat(8, 0)
    out = mai.mai(np.repeat(lum[..., None], 3, axis=2))
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
    assert np.all(np.diff(out[0, :, 0]) >= 0) and out[0, -1, 0] > out[0, 0, 0] + 0.9


# --- Ashikhmin 2002 -----------------------------------------------------------------------------

def test_ashikhmin_capacity_matches_the_papers_piecewise_function():
    lum = np.array([0.0014, 0.0034, 0.01, 1.0, 4.0, 7.2444, 100.0])
    expected = [1.0, 2.4483, 2.4483 + math.log(0.01 / 0.0034) / 0.4027, 16.5630, 16.5630 + 3 / 0.4027,
                32.0693, 32.0693 + math.log(100 / 7.2444) / 0.0556]
    np.testing.assert_allclose(ashikhmin.capacity(lum), expected, rtol=1e-12)
    # Continuous at the breakpoints within the paper's rounding of its constants.
    for b in (0.0034, 1.0, 7.2444):
        assert abs(ashikhmin.capacity(b * (1 - 1e-9)) - ashikhmin.capacity(b)) < 0.02


def test_ashikhmin_maps_uniform_regions_through_the_normalised_capacity():
    """Stripes at 0.01, 1 and 100 cd/m^2, each 200 px wide: in a stripe's middle the adaptation
    luminance is the stripe's own, so L_d = TM(L) = (C(L) - C(0.01)) / (C(100) - C(0.01))."""
    lum = np.ones((16, 600), np.float32)
    lum[:, :200], lum[:, 400:] = 0.01, 100.0
    c = lambda x: ashikhmin.capacity(np.array(x))  # noqa: E731
    c_lo = 2.4483 + math.log(0.01 / 0.0034) / 0.4027
    c_hi = 32.0693 + math.log(100 / 7.2444) / 0.0556
    out = ashikhmin.ashikhmin_luminance(lum)
    assert out[8, 100] == pytest.approx(0.0, abs=1e-6)
    assert out[8, 300] == pytest.approx((16.5630 - c_lo) / (c_hi - c_lo), rel=1e-4)
    assert out[8, 500] == pytest.approx(1.0, rel=1e-4)
    assert float(c(1.0)) == pytest.approx(16.5630)


# --- Raman & Chaudhuri 2009, bilateral compositing ---------------------------------------------

def _bilateral_brute_force(img: np.ndarray, sigma_s: float, sigma_r: float) -> np.ndarray:
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty_like(img, dtype=np.float64)
    for y in range(h):
        for x in range(w):
            wgt = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma_s ** 2)
                         - (img - img[y, x]) ** 2 / (2 * sigma_r ** 2))
            out[y, x] = (wgt * img).sum() / wgt.sum()
    return out


def test_bilateral_fusion_matches_the_papers_weighted_mean():
    """Flat frame A and a fine checkerboard B: W = C + |L - BF(L)| with an exact bilateral filter
    (sigma_s = min(H, W), sigma_r = 0.1 x stack range, C = 70/255); fused = sum W I / sum W."""
    n = 16
    a = np.full((n, n), 0.05, np.float32)
    b = (0.5 + 0.02 * np.where((np.add.outer(np.arange(n), np.arange(n)) % 2) == 0, 1, -1)).astype(np.float32)
    frames = [np.repeat(x[..., None], 3, axis=2) for x in (a, b)]
    sigma_r = 0.1 * (0.52 - 0.05)
    weights = [70 / 255 + np.abs(x - _bilateral_brute_force(x, n, sigma_r)) for x in (a, b)]
    expected = (weights[0] * a + weights[1] * b) / (weights[0] + weights[1])
    assert weights[1].mean() > weights[0].mean() + 0.005      # the textured frame gets more weight
    out = bilateral_fusion.bilateral_fusion(frames)
    # The fast filter's piecewise-linear levels are exact here (the checkerboard has two values).
    np.testing.assert_allclose(out[..., 1], expected, atol=1e-5)


# --- Goshtasby 2005, block entropy --------------------------------------------------------------

def test_block_fusion_picks_the_frame_with_more_information_everywhere():
    rng = np.random.default_rng(5)
    flat = np.full((48, 64, 3), 0.4, np.float32)
    textured = rng.uniform(0, 1, (48, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(block_fusion.block_fusion([flat, textured]), textured, atol=1e-6)


def test_block_fusion_matches_the_papers_gaussian_blend():
    """Frame A textured on the left, B on the right: transcription of
    O(x) = sum_b G_b(x) I_best(b)(x) / sum_b G_b(x), with per-block entropies from np.histogram."""
    rng = np.random.default_rng(6)
    h, w, block, sigma = 24, 40, 8, 6.0
    a = np.full((h, w, 3), 0.3, np.float32)
    b = np.full((h, w, 3), 0.7, np.float32)
    a[:, :20] = rng.uniform(0, 1, (h, 20, 1))
    b[:, 20:] = rng.uniform(0, 1, (h, 20, 1))
    frames = [a, b]
    grey = [np.clip(f @ [0.299, 0.587, 0.114] * 255 + 0.5, 0, 255).astype(int) for f in frames]
    num = np.zeros((h, w, 3))
    den = np.zeros((h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    for by in range(0, h, block):
        for bx in range(0, w, block):
            ents = []
            for g in grey:
                p = np.histogram(g[by:by + block, bx:bx + block], bins=256, range=(0, 256))[0] / block ** 2
                p = p[p > 0]
                ents.append(-(p * np.log2(p)).sum())
            cy, cx = by + (block - 1) / 2, bx + (block - 1) / 2
            gauss = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
            num += gauss[..., None] * frames[int(np.argmax(ents))]
            den += gauss
    out = block_fusion.block_fusion(frames, block=block, sigma=sigma)
    np.testing.assert_allclose(out, num / den[..., None], atol=1e-5)


# --- Burt & Kolczynski 1993, salience/match pyramid ---------------------------------------------

def test_pyramid_fusion_of_identical_frames_is_the_frame():
    f = np.random.default_rng(1).uniform(0, 1, (37, 53, 3)).astype(np.float32)
    np.testing.assert_allclose(pyramid_fusion.pyramid_fusion([f, f.copy(), f.copy()]), f, atol=1e-5)


def test_laplacian_pyramid_round_trip_is_exact():
    f = np.random.default_rng(0).uniform(0, 1, (37, 53, 3)).astype(np.float32)
    np.testing.assert_allclose(pyramid_fusion.collapse(pyramid_fusion.laplacian_pyramid(f, 4)), f, atol=1e-5)


def test_pyramid_fusion_takes_detail_from_the_salient_frame_and_averages_the_base():
    """Flat A (value a) and B = b + zero-mean texture: A's band-pass coefficients are 0, so the
    match is 0 and B's are selected at every level, while the coarsest level is the mean of both.
    The collapse is linear, so fused = B + (a - b) / 2."""
    rng = np.random.default_rng(2)
    b_level, a_level = 0.6, 0.2
    texture = rng.uniform(-0.1, 0.1, (64, 64)).astype(np.float32)
    texture -= cv2.GaussianBlur(texture, (0, 0), 8)                     # no coarse-scale content
    b = np.repeat((b_level + texture)[..., None], 3, axis=2).astype(np.float32)
    a = np.full_like(b, a_level)
    out = pyramid_fusion.pyramid_fusion([a, b])
    np.testing.assert_allclose(out, b + (a_level - b_level) / 2, atol=0.01)


def test_pyramid_band_rule_selects_or_weights_by_match():
    """B = c A exactly: match M = 2c / (1 + c^2). c = 0.5: M = 0.8 <= 0.85, A (more salient) is
    selected. c = 0.9: M = 0.99448 > 0.85, w_min = 1/2 - 1/2 (1 - M) / 0.15, fused = (1 - w_min) A +
    w_min c A."""
    band = np.random.default_rng(4).normal(size=(16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(pyramid_fusion.fuse_bands(band, 0.5 * band), band, atol=1e-6)
    m = 2 * 0.9 / (1 + 0.81)
    w_min = 0.5 - 0.5 * (1 - m) / (1 - 0.85)
    np.testing.assert_allclose(pyramid_fusion.fuse_bands(band, 0.9 * band), ((1 - w_min) + w_min * 0.9) * band,
                               rtol=1e-4, atol=1e-6)
