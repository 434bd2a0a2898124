"""Classic baselines against hand-computed values and independent constructions."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from support.helpers import synthetic_scene
from sice.evaluation import baselines as B


@pytest.mark.parametrize("name", list(B.BASELINES))
def test_every_baseline_keeps_shape_dtype_and_range(name):
    img = synthetic_scene(40, 56, seed=1) * 0.3
    out = B.BASELINES[name](img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="image must be"):
        B.BASELINES[name](img[..., 0])


def test_identity_returns_the_input():
    img = synthetic_scene(16, 20)
    np.testing.assert_array_equal(B.identity(img), img)


def test_histogram_equalization_is_the_textbook_cdf_mapping_on_luma():
    img = synthetic_scene(30, 40, seed=2) * 0.4 + 0.1
    out = B.histogram_equalization(img)
    ycc_in = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    y8 = np.clip(ycc_in[..., 0] * 255 + 0.5, 0, 255).astype(np.uint8)
    # Textbook HE (as documented by OpenCV): round((cdf(v) - cdf_min) * 255 / (N - cdf_min)).
    cdf = np.bincount(y8.ravel(), minlength=256).cumsum()
    cdf_min = cdf[cdf > 0][0]
    lut = np.round((cdf - cdf_min) * 255.0 / (y8.size - cdf_min)).clip(0, 255)
    ycc_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)
    inside = (out > 0.002).all(2) & (out < 0.998).all(2)  # not clipped by the RGB range
    np.testing.assert_allclose(ycc_out[..., 0][inside] * 255, lut[y8][inside], atol=0.6)
    np.testing.assert_allclose(ycc_out[..., 1:][inside], ycc_in[..., 1:][inside], atol=2e-3)


def test_clahe_raises_local_contrast_of_L_and_keeps_ab():
    img = synthetic_scene(64, 64, seed=3) * 0.2 + 0.3  # low contrast
    out = B.clahe(img)
    lab_in = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    lab_out = cv2.cvtColor(out, cv2.COLOR_RGB2Lab)
    assert lab_out[..., 0].std() > 1.5 * lab_in[..., 0].std()
    np.testing.assert_allclose(lab_out[..., 1:], lab_in[..., 1:], atol=1.5)  # a, b in -127..127
    flat = np.full((32, 32, 3), 0.5, np.float32)
    assert np.ptp(B.clahe(flat)) < 1e-6


@pytest.mark.parametrize("scale,brighter", [(0.15, True), (1.0, False)])
def test_auto_gamma_puts_the_mean_luma_at_one_half(scale, brighter):
    grey = synthetic_scene(40, 50, seed=4)[..., :1] * scale
    img = np.repeat(grey, 3, axis=2)
    if not brighter:
        img = 1 - (1 - img) * 0.2  # over-exposed
    out = B.auto_gamma(img)
    # For grey pixels luma(out) = luma(in) ** g exactly, so the rule is checkable by hand.
    assert out[..., 0].mean() == pytest.approx(0.5, abs=1e-4)
    g = B.gamma_for_mean(img)
    assert (g < 1) if brighter else (g > 1)
    np.testing.assert_allclose(out, np.power(img, np.float32(g)), atol=1e-6)
    assert B.gamma_for_mean(np.zeros((4, 4, 3), np.float32)) == 1.0


def _dense_lime_system(t_hat, alpha=B.LIME_ALPHA, eps=B.LIME_EPS):
    """Eq. 19 of LIME built densely from explicit difference matrices (independent of the banded
    construction in the module)."""
    h, w = t_hat.shape
    n = h * w
    idx = np.arange(n).reshape(h, w)
    dx = np.zeros((n, n))
    dy = np.zeros((n, n))
    for i in range(h):
        for j in range(w):
            if j + 1 < w:
                dx[idx[i, j], idx[i, j + 1]], dx[idx[i, j], idx[i, j]] = 1, -1
            if i + 1 < h:
                dy[idx[i, j], idx[i + 1, j]], dy[idx[i, j], idx[i, j]] = 1, -1
    t = t_hat.ravel()
    gdx, gdy = (dx @ t).reshape(h, w), (dy @ t).reshape(h, w)
    g = cv2.getGaussianKernel(B.LIME_KSIZE, B.LIME_SIGMA)
    smooth = [cv2.sepFilter2D(d, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT) for d in (gdx, gdy)]
    wx = (alpha / ((np.abs(smooth[0]) + eps) * (np.abs(gdx) + eps))).ravel()
    wy = (alpha / ((np.abs(smooth[1]) + eps) * (np.abs(gdy) + eps))).ravel()
    a = np.eye(n) + dx.T @ np.diag(wx) @ dx + dy.T @ np.diag(wy) @ dy
    return np.linalg.solve(a, t).reshape(h, w)


def test_lime_illumination_solves_the_sped_up_system():
    t_hat = synthetic_scene(9, 11, seed=5).max(axis=2).astype(np.float64)
    np.testing.assert_allclose(B.lime_illumination(t_hat), _dense_lime_system(t_hat), atol=1e-8)


def test_lime_of_a_constant_image_is_the_hand_computed_value():
    # Constant t_hat has no gradients: T = t_hat = c, so R = c / c**0.8 = c**0.2.
    img = np.full((20, 30, 3), 0.1, np.float32)
    np.testing.assert_allclose(B.lime(img), 0.1**0.2, atol=1e-5)


def test_lime_brightens_dark_images_and_keeps_structure():
    img = synthetic_scene(48, 64, seed=6) * 0.2
    out = B.lime(img)
    assert out.mean() > 2 * img.mean()
    assert np.corrcoef(out[..., 1].ravel(), img[..., 1].ravel())[0, 1] > 0.8
    # Solving on a down-scaled illumination is close to the full-size solve.
    full = B.lime(img, solve_side=None)
    small = B.lime(img, solve_side=32)
    assert np.abs(full - small).mean() < 0.03


def test_msrcr_saturates_about_one_percent_at_each_end():
    img = synthetic_scene(64, 64, seed=7) * 0.3
    out = B.msrcr(img)
    for c in range(3):
        assert 0.005 <= (out[..., c] <= 0).mean() <= 0.03
        assert 0.005 <= (out[..., c] >= 1).mean() <= 0.03
