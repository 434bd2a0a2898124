"""Metrics against independent references: scikit-image, hand-evaluated formulas, brute force."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.signal
from skimage.metrics import structural_similarity

from support.helpers import synthetic_scene
from sice.evaluation import metrics as M


def _noisy(img, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------ PSNR / MAE

def test_psnr_and_mae_match_hand_formulas():
    ref = np.full((8, 9, 3), 0.5, np.float32)
    out = ref + np.float32(0.1)  # every value off by 0.1: MSE = 0.01, MAE = 0.1
    assert M.psnr(out, ref) == pytest.approx(10 * math.log10(1 / 0.01), abs=1e-4)
    assert M.mae(out, ref) == pytest.approx(0.1, abs=1e-6)
    assert M.psnr(ref, ref) == math.inf


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(np.zeros((4, 4, 3), np.float32), np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="float"):
        M.mae(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="non-finite"):
        M.mae(np.full((4, 4, 3), np.nan, np.float32), np.zeros((4, 4, 3), np.float32))


# ------------------------------------------------------------------------------------ SSIM

@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("sigma", [0.02, 0.1])
def test_ssim_agrees_with_scikit_image(grey, sigma):
    ref = synthetic_scene(40, 52, seed=1)
    out = _noisy(ref * 0.8, sigma)
    if grey:
        ref, out = ref[..., 1], out[..., 1]
    ours = M.ssim(out, ref)
    theirs = structural_similarity(
        out.astype(np.float64), ref.astype(np.float64), data_range=1.0, gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False, channel_axis=None if grey else -1)
    assert abs(ours - theirs) < 1e-4
    assert M.ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------------ FSIM

def _matlab_same_average(x, f):
    """conv2(x, ones(f)/f^2, 'same') of MATLAB: centre part of the full convolution, starting
    at index floor(f/2) (0-based), then x(1:f:end, 1:f:end)."""
    full = scipy.signal.convolve2d(x, np.ones((f, f)) / f**2, mode="full")
    o = f // 2
    return full[o:o + x.shape[0], o:o + x.shape[1]][::f, ::f]


@pytest.mark.parametrize("f", [1, 2, 3, 4])
def test_fsim_downsampling_is_matlab_conv2_same(f):
    x = np.random.default_rng(f).random((13, 17))
    np.testing.assert_allclose(M._fsim_downsample(x, f), _matlab_same_average(x, f), atol=1e-12)


def test_matlab_rounding_of_the_downsampling_factor():
    # FeatureSIM.m: F = max(1, round(min(H, W) / 256)); MATLAB rounds 2.5 up, Python would not.
    assert M._matlab_round(2.5) == 3 and M._matlab_round(1.5) == 2 and M._matlab_round(0.49) == 0


def test_fsim_of_identical_images_is_one():
    img = synthetic_scene(64, 80, seed=2)
    assert M.feature_similarity(img, img) == (pytest.approx(1.0, abs=1e-12),) * 2


def test_fsim_decreases_with_distortion():
    ref = synthetic_scene(96, 128, seed=3)
    noise = [M.fsim(_noisy(ref, s), ref) for s in (0.01, 0.03, 0.08, 0.2)]
    assert all(a > b for a, b in zip(noise, noise[1:])), noise
    blur = [M.fsim(cv2.GaussianBlur(ref, (0, 0), s), ref) for s in (0.7, 1.5, 3.0)]
    assert all(a > b for a, b in zip(blur, blur[1:])), blur
    assert 0 < noise[-1] < 1


def test_fsim_is_symmetric():
    ref = synthetic_scene(48, 64, seed=4)
    out = _noisy(ref, 0.05)
    assert M.feature_similarity(out, ref) == pytest.approx(M.feature_similarity(ref, out), abs=1e-12)


def test_fsimc_of_a_pure_chroma_shift_is_the_hand_computed_value():
    # A grey texture has I = Q = 0 (the YIQ rows of FeatureSIM.m sum to 0). Adding a constant
    # RGB offset v with zero luma leaves Y (so FSIM = 1, PC and gradients) unchanged, and makes
    # I2, Q2 constants, so FSIMc = (200 / (I2^2 + 200) * 200 / (Q2^2 + 200)) ** 0.03 exactly
    # (min side < 384, so F = 1 and no border effect of the averaging).
    g = synthetic_scene(64, 80, seed=5)[..., 1:2] * 0.5 + 0.25
    grey = np.repeat(g, 3, axis=2).astype(np.float64)
    v = np.array([0.05, -0.02, 0.05 * -0.299 / 0.114 + 0.02 * 0.587 / 0.114])  # luma(v) = 0
    assert abs(v @ [0.299, 0.587, 0.114]) < 1e-12
    shifted = grey + v
    assert shifted.min() >= 0 and shifted.max() <= 1
    i2 = 255 * (0.596 * v[0] - 0.274 * v[1] - 0.322 * v[2])
    q2 = 255 * (0.211 * v[0] - 0.523 * v[1] + 0.312 * v[2])
    expected = (200 / (i2**2 + 200) * 200 / (q2**2 + 200)) ** 0.03
    f, fc = M.feature_similarity(shifted, grey)
    assert f == pytest.approx(1.0, abs=1e-9)
    assert fc == pytest.approx(expected, abs=1e-9)
    assert fc < 1


def test_fsim_grey_input_gives_fsimc_equal_fsim():
    ref = synthetic_scene(48, 64, seed=6)[..., 0]
    out = _noisy(ref, 0.05)
    f, fc = M.feature_similarity(out, ref)
    assert f == fc


def test_phase_congruency_is_contrast_and_offset_invariant_and_peaks_at_edges():
    x = np.zeros((128, 256))
    x[:, 128:] = 1.0  # a vertical step edge (and the periodic wrap-around edge at column 0)
    x += np.random.default_rng(0).normal(0, 0.01, x.shape)
    pc = M.phase_congruency(x)
    assert pc.min() >= 0 and pc.max() <= 1
    cols = pc.mean(axis=0)
    assert cols[127:129].mean() > 0.7 and cols[0] > 0.7  # at the two edges
    assert cols[32:96].mean() < 0.45 and cols[160:224].mean() < 0.45  # noise only
    # Offsets never reach the filters (zero DC); scaling is exact up to phasecong2's fixed
    # epsilon of 1e-4 in the energy normalisation.
    np.testing.assert_allclose(M.phase_congruency(x + 7.0), pc, atol=1e-9)
    np.testing.assert_allclose(M.phase_congruency(3.0 * x), pc, atol=5e-3)
    np.testing.assert_allclose(M.phase_congruency(3000.0 * x), M.phase_congruency(1000.0 * x), atol=1e-5)


def test_fsim_of_two_flat_images_is_nan():
    flat = np.full((32, 32, 3), 0.4, np.float32)
    assert all(math.isnan(v) for v in M.feature_similarity(flat, flat))


# ------------------------------------------------------------------------------------- LOE

def _loe_brute_force(enh, orig, step):
    le = np.floor(enh.max(2) * 255 + 0.5)[step - 1::step, step - 1::step].ravel()
    lo = np.floor(orig.max(2) * 255 + 0.5)[step - 1::step, step - 1::step].ravel()
    flips = (lo[None, :] >= lo[:, None]) != (le[None, :] >= le[:, None])
    return flips.sum(1).mean()


@pytest.mark.parametrize("shape,step", [((30, 41, 3), 1), ((250, 230, 3), 2)])
def test_loe_matches_brute_force_pair_count(shape, step):
    rng = np.random.default_rng(0)
    orig = rng.random(shape).astype(np.float32)
    enh = np.clip(orig**0.5 + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
    assert M.loe(enh, orig) == pytest.approx(_loe_brute_force(enh, orig, step), abs=1e-9)


def test_loe_is_zero_for_order_preserving_maps_and_large_for_inversion():
    orig = np.round(synthetic_scene(40, 50, seed=7) * 0.5 * 255) / 255  # on the 8-bit grid
    assert M.loe(orig, orig) == 0
    assert M.loe(orig + np.float32(40 / 255), orig) == 0  # integer shift keeps every order
    assert M.loe(1 - orig, orig) > 0.3 * 40 * 50


# ------------------------------------------------------------------------------ the table

def test_compute_metrics_reports_what_it_cannot_compute():
    ref = synthetic_scene(32, 40, seed=8)
    out = _noisy(ref, 0.05)
    s = M.compute_metrics(out, ["psnr", "fsim", "fsimc", "loe"], reference=None, original=ref)
    assert s["psnr"] == "no reference" and s["fsim"] == "no reference"
    assert isinstance(s["loe"], float)
    s = M.compute_metrics(out, ["fsim", "fsimc", "ssim"], reference=ref)
    assert (s["fsim"], s["fsimc"]) == M.feature_similarity(out, ref)
    assert s["ssim"] == M.ssim(out, ref)
    memo: dict = {}  # the reference's features are shared between outputs, results unchanged
    for o in (out, _noisy(ref, 0.1)):
        s = M.compute_metrics(o, ["fsim", "fsimc"], reference=ref, memo=memo)
        assert (s["fsim"], s["fsimc"]) == M.feature_similarity(o, ref)
    assert "fsim" in memo
    assert list(memo["fsim-filters"]) == [(32, 40)]  # one filter bank for the one (downsampled) size
    other = synthetic_scene(32, 40, seed=9)  # a new reference invalidates the memo
    s = M.compute_metrics(out, ["fsim", "ssim"], reference=other, memo=memo)
    assert s["fsim"] == M.fsim(out, other) and s["ssim"] == pytest.approx(M.ssim(out, other), abs=1e-12)
    with pytest.raises(ValueError, match="unknown metric"):
        M.compute_metrics(out, ["nope"], reference=ref)


def test_phase_congruency_with_kept_filter_banks_is_unchanged():
    x = synthetic_scene(40, 48, seed=3) @ [0.299, 0.587, 0.114]
    banks: dict = {}
    first = M.phase_congruency(x, filter_banks=banks)
    held = banks[40, 48]
    np.testing.assert_array_equal(M.phase_congruency(x, filter_banks=banks), first)
    assert banks[40, 48] is held and len(banks) == 1
    np.testing.assert_array_equal(M.phase_congruency(x), first)


def test_mef_ssim_of_a_stack_of_copies_is_one():
    img = synthetic_scene(48, 64, seed=9)
    assert M.mef_ssim(img, [img, img, img]) == pytest.approx(1.0, abs=1e-6)


def test_mef_ssim_is_the_dataset_scoring_one_with_the_image_first():
    from sice.dataset import scoring

    frames = [np.clip(synthetic_scene(48, 64, seed=9) * g, 0, 1) for g in (0.5, 1.0, 1.6)]
    out = np.mean(frames, axis=0)
    # the fused image first in both modules; swapped arguments fail on a list of frames
    assert M.mef_ssim(out, frames) == scoring.mef_ssim(out, frames) == scoring.MefSsimReference(frames).score(out)
    with pytest.raises(ValueError):
        M.mef_ssim(frames, out)


def test_compute_metrics_keeps_the_stack_side_of_mef_ssim_per_frames_object():
    from sice.dataset import scoring

    frames = [np.clip(synthetic_scene(48, 64, seed=9) * g, 0, 1) for g in (0.5, 1.0, 1.6)]
    others = [np.clip(synthetic_scene(48, 64, seed=4) * g, 0, 1) for g in (0.5, 1.0, 1.6)]
    out_a, out_b = np.mean(frames, axis=0), frames[1]
    memo: dict = {}
    a = M.compute_metrics(out_a, ["mef-ssim"], frames=frames, memo=memo)["mef-ssim"]
    held = memo["mef-ssim"]
    b = M.compute_metrics(out_b, ["mef-ssim"], frames=frames, memo=memo)["mef-ssim"]
    assert memo["mef-ssim"] is held  # the second method reused the stack's part
    assert (a, b) == (scoring.mef_ssim(out_a, frames), scoring.mef_ssim(out_b, frames))
    # another stack with the same memo (no reference changed): scored against that stack
    c = M.compute_metrics(out_a, ["mef-ssim"], frames=others, memo=memo)["mef-ssim"]
    assert c == scoring.mef_ssim(out_a, others) and memo["mef-ssim"] is not held
