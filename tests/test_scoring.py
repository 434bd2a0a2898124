"""MEF-SSIM and image statistics (sice.dataset.scoring) against brute-force and hand-computed references."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sice.dataset import scoring


def _bracket(h=48, w=56, seed=0):
    """Three 8-bit-like exposures of a textured scene, dark to bright (gamma 2.2 camera)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rad = 2.0 ** (-4 + 6 * xx / (w - 1)) * (1 + 0.4 * np.sin(yy / 2.0) * np.cos(xx / 3.0))
    rad = rad[..., None] * np.array([1.0, 0.9, 0.8]) * rng.uniform(0.95, 1.05, (h, w, 3))
    return [np.clip(rad * t, 0, 1) ** (1 / 2.2) for t in (0.25, 1.0, 4.0)]


def _brute_force_scale(seq, fused):
    """Direct transcription of the window loops of mef_ssim.m (mef_ssim_scale), grey [0, 255]."""
    seq = [np.asarray(s, np.float64) @ [0.299, 0.587, 0.114] * 255 for s in seq]
    f = np.asarray(fused, np.float64) @ [0.299, 0.587, 0.114] * 255
    win = 11
    bd = win // 2
    g1 = cv2.getGaussianKernel(win, 1.5, cv2.CV_64F)
    window = (g1 @ g1.T).ravel()
    h, w = f.shape
    q = np.zeros((h - 2 * bd, w - 2 * bd))
    eps = np.finfo(float).eps
    for i in range(bd, h - bd):
        for j in range(bd, w - bd):
            vecs = np.stack([s[i - bd:i + bd + 1, j - bd:j + bd + 1].ravel() for s in seq], axis=1)
            mu = vecs.mean(axis=0)
            ed = np.sqrt(np.maximum(win * win * vecs.var(axis=0), 0)) + 0.001
            den = sum(np.linalg.norm(vecs[:, k] - mu[k]) for k in range(len(seq)))
            tot = vecs.sum(axis=1)
            r = (np.linalg.norm(tot - tot.mean()) + eps) / (den + eps)
            r = min(max(r, eps), 1 - eps)
            p = min(np.tan(np.pi / 2 * r), 10)
            wm = (ed / win) ** p + eps
            wm /= wm.sum()
            rb = sum(wm[k] * (vecs[:, k] - mu[k]) / ed[k] for k in range(len(seq)))
            if np.linalg.norm(rb) > 0:
                rb = rb / np.linalg.norm(rb) * ed.max()
            fv = f[i - bd:i + bd + 1, j - bd:j + bd + 1].ravel()
            m1, m2 = window @ rb, window @ fv
            s1 = window @ (rb - m1) ** 2
            s2 = window @ (fv - m2) ** 2
            s12 = window @ ((rb - m1) * (fv - m2))
            c = (0.03 * 255) ** 2
            q[i - bd, j - bd] = (2 * s12 + c) / (s1 + s2 + c)
    return q.mean()


def test_single_scale_matches_brute_force_transcription():
    seq = _bracket(24, 28)
    fused = np.mean(seq, axis=0)
    expected = _brute_force_scale(seq, fused)
    assert scoring.mef_ssim(fused, seq, levels=1) == pytest.approx(expected, abs=1e-9)


def test_identical_copies_score_one():
    x = _bracket()[1]
    assert scoring.mef_ssim(x, [x, x, x], levels=1) == pytest.approx(1.0, abs=1e-9)
    assert scoring.mef_ssim(x, [x, x]) == pytest.approx(1.0, abs=1e-9)


def test_well_exposed_source_beats_blurred_and_noisy_versions():
    seq = _bracket(64, 64)
    good = seq[1]
    blurred = cv2.GaussianBlur(good, (0, 0), 2.0)
    noisy = np.clip(good + np.random.default_rng(3).normal(0, 0.08, good.shape), 0, 1)
    s_good, s_blur, s_noise = (scoring.mef_ssim(im, seq) for im in (good, blurred, noisy))
    assert s_good > s_blur and s_good > s_noise
    assert s_good <= 1.0


def test_score_is_symmetric_in_frame_order_and_ignores_mean_brightness():
    seq = _bracket()
    fused = np.mean(seq, axis=0)
    a = scoring.mef_ssim(fused, seq)
    assert scoring.mef_ssim(fused, seq[::-1]) == pytest.approx(a, abs=1e-12)
    # The luminance term is left out: a constant offset of the fused image changes nothing
    # (away from clipping).
    assert scoring.mef_ssim(fused * 0.8 + 0.1, seq) == pytest.approx(
        scoring.mef_ssim(fused * 0.8, seq), abs=1e-9)


def test_reference_object_and_function_agree():
    seq = _bracket()
    ref = scoring.MefSsimReference(seq)
    fused = seq[2]
    assert ref.score(fused) == pytest.approx(scoring.mef_ssim(fused, seq), abs=1e-12)
    other = [np.clip(s * 0.9, 0, 1) for s in seq]
    assert scoring.mef_ssim(fused, other) != pytest.approx(ref.score(fused), abs=1e-6)


def test_stacks_alike_in_sums_and_every_7th_row_get_their_own_scores():
    """The stack cache this module once kept was keyed on each frame's sum and rows 0, 7, 14,
    ...: a second stack that matched those (rows 1 and 2 swapped) was given the first stack's
    score. Values on a 1/256 grid, so that the float sums are exact and equal."""
    seq = [np.round(s * 256) / 256 for s in _bracket(48, 56)]
    swapped = [s[[0, 2, 1, *range(3, s.shape[0])]] for s in seq]
    assert all(float(a.sum()) == float(b.sum()) for a, b in zip(seq, swapped))
    assert all(np.array_equal(a[::7], b[::7]) for a, b in zip(seq, swapped))
    fused = np.mean(seq, axis=0)
    first = scoring.mef_ssim(fused, seq)
    second = scoring.mef_ssim(fused, swapped)
    assert second == pytest.approx(scoring.MefSsimReference(swapped).score(fused), abs=1e-12)
    assert second != pytest.approx(first, abs=1e-6)


def test_max_side_scores_the_area_averaged_images():
    seq = _bracket(96, 128)
    fused = np.mean(seq, axis=0)
    shrink = lambda im: cv2.resize(im, (64, 48), interpolation=cv2.INTER_AREA)  # noqa: E731
    expected = scoring.mef_ssim(shrink(fused), [shrink(s) for s in seq])
    assert scoring.mef_ssim(fused, seq, max_side=64) == pytest.approx(expected, abs=1e-6)
    assert scoring.mef_ssim(fused, seq, max_side=500) == scoring.mef_ssim(fused, seq)


def test_downsample_matches_matlab_imfilter_symmetric():
    x = np.arange(15, dtype=np.float64).reshape(3, 5)
    # 2x2 block means; the odd last row/column is mirrored onto itself ('symmetric').
    expected = np.array([[(0 + 1 + 5 + 6) / 4, (2 + 3 + 7 + 8) / 4, (4 + 4 + 9 + 9) / 4],
                         [(10 + 11 + 10 + 11) / 4, (12 + 13 + 12 + 13) / 4, 14.0]])
    np.testing.assert_allclose(scoring._downsample(x), expected)


@pytest.mark.parametrize("frames, image, match", [
    ([np.zeros((48, 48, 3))], np.zeros((48, 48, 3)), "at least 2"),
    ([np.zeros((48, 48, 3)), np.zeros((48, 49, 3))], np.zeros((48, 48, 3)), "size"),
    ([np.zeros((48, 48, 3))] * 2, np.zeros((46, 48, 3)), "image has size"),
    ([np.zeros((40, 40, 3))] * 2, np.zeros((40, 40, 3)), "too small"),
    ([np.zeros((48, 48, 3))] * 2, np.full((48, 48, 3), np.nan), "non-finite"),
])
def test_bad_inputs(frames, image, match):
    with pytest.raises(ValueError, match=match):
        scoring.mef_ssim(image, frames)


def test_image_statistics_hand_computed():
    img = np.zeros((2, 2, 3), np.float32)
    img[0, 0] = [1.0, 0.0, 0.0]   # red
    img[0, 1] = [1.0, 1.0, 1.0]   # white
    img[1, 0] = [0.0, 0.0, 0.0]   # black
    img[1, 1] = [0.5, 0.5, 0.5]   # grey
    s = scoring.image_statistics(img)
    assert s["clipped_low"] == pytest.approx(5 / 12)
    assert s["clipped_high"] == pytest.approx(4 / 12)
    lum = np.array([0.299, 1.0, 0.0, 0.5])
    assert s["mean_brightness"] == pytest.approx(lum.mean(), rel=1e-6)
    assert s["contrast"] == pytest.approx(lum.std(), rel=1e-6)
    rg = np.array([255.0, 0, 0, 0])
    yb = np.array([127.5, 0, 0, 0])
    m = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    assert s["colourfulness"] == pytest.approx(m, rel=1e-6)
    assert scoring.image_statistics(np.full((4, 4, 3), 0.5))["colourfulness"] == 0.0
