"""sice.decomposition: release grey conversion, exact WLS, fast WLS, L/D split."""
from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from support.helpers import synthetic_scene
from sice import decomposition as dec
from sice.decomposition import aux_tensor, decompose, release_gray, wls_smooth, wls_smooth_fast

# Documented in docs/decomposition.md (measured on real SICE frames): the fast filter's mean
# absolute difference to the exact luminance stays below this on every image measured.
FAST_MEAN_ABS_TOL = 0.03


# -- release_gray -------------------------------------------------------------------------------
def test_release_gray_matches_hand_computed_matlab_rounding():
    # White first, so max(I) = 255 and gray * 255 gives the uint8 rgb2gray values.
    px = np.array([[[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30],
                    [0, 3, 217]]], np.uint8)
    # 255 R = 76.2287 -> 76; 255 G = 149.696 -> 150; 255 B = 29.075 -> 29;
    # 10 R + 20 G + 30 B = 2.98936 + 11.74086 + 3.42063 = 18.151 -> 18;
    # (0, 3, 217): 1.76113 + 24.74254 = 26.5037 -> 27 with MATLAB's full coefficients (the
    # documented 4-digit ones give 26.499 -> 26: the release uses the full ones).
    expected = np.array([[255, 76, 150, 29, 18, 27]]) / 255.0
    np.testing.assert_allclose(release_gray(px), expected, rtol=0, atol=1e-7)


def test_release_gray_divides_by_max_and_quantises_float_like_im2uint8():
    # 0.5 * 255 = 127.5 -> im2uint8 rounds half up to 128; 0.25 -> 63.75 -> 64. Grey of a grey
    # pixel k is k (the coefficients sum to 1 within 1e-15), so max = 128.
    px = np.array([[[0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [0.0, 0.0, 0.0]]], np.float32)
    np.testing.assert_allclose(release_gray(px), [[1.0, 64 / 128, 0.0]], atol=1e-7)
    assert release_gray(px).dtype == np.float32


def test_release_gray_uint16_and_black():
    px16 = np.array([[[65535, 65535, 65535], [257 * 100, 257 * 100, 257 * 100]]], np.uint16)
    np.testing.assert_allclose(release_gray(px16), [[1.0, 100 / 255]], atol=1e-7)
    black = np.zeros((4, 5, 3), np.uint8)
    out = release_gray(black)
    assert out.shape == (4, 5) and not out.any()


def test_release_gray_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"rgb must have shape \(H, W, 3\)"):
        release_gray(np.zeros((4, 5), np.uint8))


# -- exact WLS ----------------------------------------------------------------------------------
def _dense_wls(gray, lam, alpha, small=1e-4):
    """The same system written differently: column-major (MATLAB) pixel order, assembled edge by
    edge as a weighted graph Laplacian, solved densely."""
    h, w = gray.shape
    log_i = np.log(gray.astype(np.float64) + np.finfo(np.float64).eps)
    n = h * w
    a = np.eye(n)

    def idx(y, x):
        return x * h + y

    for x in range(w):
        for y in range(h):
            for yy, xx in ((y + 1, x), (y, x + 1)):
                if yy < h and xx < w:
                    wt = lam / (abs(log_i[yy, xx] - log_i[y, x]) ** alpha + small)
                    p, q = idx(y, x), idx(yy, xx)
                    a[p, p] += wt
                    a[q, q] += wt
                    a[p, q] -= wt
                    a[q, p] -= wt
    b = gray.astype(np.float64).ravel(order="F")
    return np.linalg.solve(a, b).reshape((h, w), order="F")


@pytest.mark.parametrize("shape,lam,alpha", [((6, 9), 2.0, 2.0), ((6, 9), 0.7, 1.2),
                                             ((1, 7), 2.0, 2.0), ((7, 1), 2.0, 2.0)])
def test_wls_matches_dense_solve(shape, lam, alpha):
    rng = np.random.default_rng(1)
    gray = rng.random(shape) * 0.9
    gray.flat[3] = 0.0  # a black pixel: log(eps) guidance, as in the release
    ours = wls_smooth(gray, lam, alpha)
    ref = _dense_wls(gray, lam, alpha)
    assert ours.dtype == np.float32 and ours.shape == gray.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6)


def test_wls_constant_image_stays_constant():
    for value in (0.0, 0.37, 1.0):
        out = wls_smooth(np.full((12, 17), value))
        np.testing.assert_allclose(out, value, atol=1e-6)


def test_wls_smooths_noise_but_keeps_step_edge():
    rng = np.random.default_rng(0)
    h, w = 32, 40
    clean = np.where(np.arange(w)[None, :] < w // 2, 0.2, 0.8) * np.ones((h, 1))
    noisy = np.clip(clean + rng.normal(0, 0.01, clean.shape), 0, 1)
    out = wls_smooth(noisy)
    left, right = out[:, : w // 2], out[:, w // 2:]
    # Measured: noise std 0.01 -> 0.0016 (left) and 0.0002 (right): flat-region weights ~2e4.
    assert left.std() < 0.2 * noisy[:, : w // 2].std()
    assert right.std() < 0.2 * noisy[:, w // 2:].std()
    # The edge stays one pixel wide: measured 0.537 of the 0.6 step between the two columns
    # beside it (the halves drift ~0.03 towards each other on so small an image). A Gaussian
    # blur that removes as much noise (sigma 2) keeps only 0.12 there.
    step = out[:, w // 2].mean() - out[:, w // 2 - 1].mean()
    assert step > 0.5
    blurred = gaussian_filter(noisy, 2.0, mode="nearest")
    assert blurred[:, w // 2].mean() - blurred[:, w // 2 - 1].mean() < 0.2
    np.testing.assert_allclose(out.mean(axis=0)[[0, w - 1]], [0.2, 0.8], atol=0.05)


def test_wls_warns_on_images_too_large_for_the_exact_solve(monkeypatch):
    monkeypatch.setattr(dec, "EXACT_WARN_PIXELS", 20)
    with pytest.warns(UserWarning, match="use wls_smooth_fast"):
        wls_smooth(np.full((5, 6), 0.5))


def test_wls_rejects_bad_input():
    with pytest.raises(ValueError, match="gray must have shape"):
        wls_smooth(np.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        wls_smooth(np.full((3, 4), -0.1))
    with pytest.raises(ValueError, match="lam must be > 0"):
        wls_smooth(np.zeros((3, 4)), lam=0)


# -- fast WLS -----------------------------------------------------------------------------------
def test_fast_wls_constant_and_close_to_exact_on_synthetic_scene():
    np.testing.assert_allclose(wls_smooth_fast(np.full((20, 30), 0.6)), 0.6, atol=1e-5)
    gray = release_gray(synthetic_scene(64, 80))
    exact, fast = wls_smooth(gray), wls_smooth_fast(gray)
    assert fast.dtype == np.float32 and fast.shape == gray.shape
    assert np.abs(fast - exact).mean() < FAST_MEAN_ABS_TOL


@pytest.mark.realdata
def test_fast_wls_within_documented_tolerance_on_real_frame(shared_data):
    from sice.io import read_image

    px = read_image(shared_data / "sice512" / "010" / "2.jpg").pixels[128:384, 128:384]
    gray = release_gray(px)
    err = np.abs(wls_smooth_fast(gray) - wls_smooth(gray))
    assert err.mean() < FAST_MEAN_ABS_TOL


# -- decompose / aux_tensor ---------------------------------------------------------------------
def test_decompose_layers_and_aux_tensor(scene):
    gray, lum, detail = decompose(scene, "exact")
    for layer in (gray, lum, detail):
        assert layer.shape == scene.shape[:2] and layer.dtype == np.float32
    np.testing.assert_array_equal(gray, release_gray(scene))
    np.testing.assert_array_equal(lum, wls_smooth(gray))
    np.testing.assert_array_equal(detail, gray - lum)
    aux = aux_tensor(scene, "exact")
    assert aux.shape == (2,) + scene.shape[:2] and aux.dtype == np.float32
    np.testing.assert_array_equal(aux, np.stack([lum, detail]))


def test_decompose_auto_switches_to_fast_above_threshold(scene, monkeypatch):
    gray = release_gray(scene)
    np.testing.assert_array_equal(decompose(scene)[1], wls_smooth(gray))
    monkeypatch.setattr(dec, "AUTO_EXACT_MAX_PIXELS", gray.size - 1)
    np.testing.assert_array_equal(decompose(scene)[1], wls_smooth_fast(gray))


def test_decompose_rejects_unknown_method(scene):
    with pytest.raises(ValueError, match="method must be one of"):
        decompose(scene, "approx")


# -- measurement behind docs/decomposition.md ---------------------------------------------------
def _psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


@pytest.mark.slow
@pytest.mark.realdata
def test_measure_fast_vs_exact(shared_data):
    """Prints the table of docs/decomposition.md (run with -s); images not used for the fit."""
    from sice.io import read_image

    items = []
    for seq in ("002", "040", "070", "100", "140", "180"):
        folder = shared_data / "sice512" / seq
        if folder.is_dir():
            frames = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem))
            for frame in (frames[0], frames[len(frames) // 2], frames[-1]):
                items.append((f"sice512/{seq}/{frame.name}", read_image(frame).pixels))
    for name in ("0.JPG", "2.JPG", "134.JPG", "352.JPG", "68.JPG"):
        px = read_image(shared_data / "sice-fullres" / name).pixels
        h, w = px.shape[:2]
        items.append((f"sice-fullres/{name} centre 512", px[h // 2 - 256:h // 2 + 256,
                                                            w // 2 - 256:w // 2 + 256]))
    print(f"\n| image | max abs | mean abs | PSNR (dB) | mean abs D |")
    print("| --- | --- | --- | --- | --- |")
    means = []
    for name, px in items:
        gray = release_gray(px)
        exact, fast = wls_smooth(gray), wls_smooth_fast(gray)
        err = np.abs(fast - exact)
        means.append(err.mean())
        print(f"| {name} | {err.max():.3f} | {err.mean():.4f} | {_psnr(fast, exact):.1f} | "
              f"{np.abs(gray - exact).mean():.4f} |")
    print(f"mean of mean abs: {np.mean(means):.4f}, worst: {np.max(means):.4f}")
    assert max(means) < FAST_MEAN_ABS_TOL

    # Cost of the exact solve at 1 MP (1000 x 1000 centre crop) and of the fast one on a whole
    # 24 MP frame: wall and CPU seconds (the development machine is shared, so CPU time is the
    # steadier figure; both filters run on one core).
    px = read_image(shared_data / "sice-fullres" / "9.JPG").pixels
    h, w = px.shape[:2]
    for label, gray, fn in (
        ("exact 1000x1000", release_gray(px[h // 2 - 500:h // 2 + 500, w // 2 - 500:w // 2 + 500]),
         wls_smooth),
        (f"fast {w}x{h}", release_gray(px), wls_smooth_fast),
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(gray)
        print(f"{label}: {time.perf_counter() - wall:.1f} s wall, "
              f"{time.process_time() - cpu:.1f} s CPU")
