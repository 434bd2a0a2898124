"""sice.training.losses against slow NumPy evaluations written straight from the Caffe layers' formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sice.training.losses import (
    LOSS_NAMES,
    REGULARIZATION_DEFAULTS,
    EuclideanLoss,
    L1Loss,
    RegularizationLoss,
    SSIMLoss,
    build_loss,
    euclidean_loss,
    l1_loss,
    regularization_loss,
    ssim_loss,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: on a shared 2-core machine intra-op threads only add overhead
    (measured 10x slower per call with 2 threads under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pair(shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    y = (0.7 * x + 0.3 * torch.rand(shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


# -- independent references (loops over windows / pixels, float64) -----------------------------
def _np_gauss(k):
    sigma = 2 * k / 12
    g = np.empty((k, k))
    for h in range(k):
        for w in range(k):
            g[h, w] = np.exp(-((h - k / 2.0) ** 2 + (w - k / 2.0) ** 2) / (2 * sigma * sigma))
    return g / g.sum()


def _np_windows(size, k, s):
    # Caffe: pooled = ceil((size - k) / s) + 1 windows starting at s * i.
    n = int(np.ceil((size - k) / s)) + 1
    return [(i * s, min(i * s + k, size)) for i in range(n)]


def _np_ssim_loss_and_grad(x, y, k=8, s=8, c1=1e-4, c2=1e-3):
    """The layer's Forward_cpu and Backward_cpu, loop for loop."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    b, c, h, w = x.shape
    g = _np_gauss(k)
    total, grad = 0.0, np.zeros_like(x)
    for n in range(b):
        for ch in range(c):
            for hs, he in _np_windows(h, k, s):
                for ws, we in _np_windows(w, k, s):
                    gw = g[: he - hs, : we - ws]  # truncated, not renormalised
                    xw, yw = x[n, ch, hs:he, ws:we], y[n, ch, hs:he, ws:we]
                    ux, uy = (gw * xw).sum(), (gw * yw).sum()
                    sx2 = (gw * xw * xw).sum() - ux * ux
                    sy2 = (gw * yw * yw).sum() - uy * uy
                    sxy = (gw * xw * yw).sum() - ux * uy
                    lp = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1)
                    cs = (2 * sxy + c2) / (sx2 + sy2 + c2)
                    total += 1 - lp * cs
                    d1 = 2 * cs * (uy - ux * lp) / (ux * ux + uy * uy + c1)
                    d2 = 2 * lp / (sx2 + sy2 + c2)
                    grad[n, ch, hs:he, ws:we] += gw * (d1 + d2 * ((yw - uy) - cs * (xw - ux)))
    return total / b, -grad / b


# -- SSIM ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 21, 13), (1, 1, 16, 16), (3, 2, 5, 9)])
def test_ssim_loss_matches_loop_reference_including_truncated_windows(shape):
    x, y = _pair(shape, seed=1)
    x.requires_grad_(True)
    loss = ssim_loss(x, y)
    ref_loss, ref_grad = _np_ssim_loss_and_grad(x.detach().numpy(), y.numpy())
    assert loss.item() == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
    loss.backward()
    # Autograd of our forward equals the layer's hand-written Backward_cpu.
    np.testing.assert_allclose(x.grad.numpy(), ref_grad, rtol=1e-9, atol=1e-12)


def test_ssim_loss_window_count_and_scale():
    # 21 x 13 -> 3 x 2 windows per channel (tops 0, 8, 16; lefts 0, 8), 3 channels, batch 2.
    # Hand-derived for x = 0, y = 1: a window whose truncated weights sum to W has ux = 0,
    # uy = W, sy2 = W - W^2, sxy = 0, so l = c1 / (W^2 + c1) and cs = c2 / (W - W^2 + c2).
    x = torch.zeros(2, 3, 21, 13, dtype=torch.float64)
    y = torch.ones_like(x)
    loss = ssim_loss(x, y).item()
    g = _np_gauss(8)
    expected = 0.0
    for hs, he in _np_windows(21, 8, 8):
        for ws, we in _np_windows(13, 8, 8):
            wsum = g[: he - hs, : we - ws].sum()
            lp = 1e-4 / (wsum**2 + 1e-4)
            cs = 1e-3 / ((wsum - wsum**2) + 1e-3)
            expected += 1 - lp * cs
    assert loss == pytest.approx(expected * 3 * 2 / 2, rel=1e-12)
    assert len(_np_windows(21, 8, 8)) == 3 and len(_np_windows(13, 8, 8)) == 2


def test_ssim_loss_zero_for_identical_images_and_target_gets_no_gradient():
    x, _ = _pair((2, 3, 21, 13), seed=2)
    assert ssim_loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)
    pred, target = _pair((1, 3, 12, 10), seed=3)
    pred.requires_grad_(True)
    target.requires_grad_(True)
    ssim_loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None


def test_ssim_loss_gradcheck():
    x, y = _pair((1, 1, 10, 9), seed=4)  # 10 x 9: truncated windows too
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ssim_loss(a, y), (x,))


def test_ssim_module_equals_function_and_float32_non_contiguous():
    x, y = _pair((2, 3, 13, 21), seed=5, dtype=torch.float32)
    xt, yt = x.transpose(2, 3), y.transpose(2, 3)  # non-contiguous (2, 3, 21, 13)
    assert not xt.is_contiguous()
    module = SSIMLoss(kernel_size=8, stride=8, c1=1e-4, c2=1e-3)
    assert module(xt, yt).item() == ssim_loss(xt, yt).item()
    ref, _ = _np_ssim_loss_and_grad(xt.numpy(), yt.numpy())
    assert ssim_loss(xt, yt).item() == pytest.approx(ref, rel=1e-4)


def test_ssim_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        ssim_loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssim_loss(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


# -- Regularization -----------------------------------------------------------------------------
def _np_target(x, mode, levels=None, values=None, regular=0.5):
    out = np.empty_like(x)
    if mode != "zero":
        dl, dv = REGULARIZATION_DEFAULTS[mode]
        levels, values = levels or dl, values or dv
    for i, v in np.ndenumerate(x):  # the layer's if/else chain, element by element
        if mode == "zero":
            out[i] = regular
        elif v < 0:
            out[i] = 0
        elif v > 1:
            out[i] = 1
        else:
            k = 0
            while k < len(levels) and v >= levels[k]:
                k += 1
            out[i] = values[k]
    return out


def _reg_input(seed=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 2, 5, 7, generator=g, dtype=torch.float64) * 1.4 - 0.2  # some < 0, > 1
    x[0, 0, 0, :4] = torch.tensor([0.5, 0.25, 1.0, 0.0], dtype=torch.float64)  # on bin edges
    return x


@pytest.mark.parametrize("mode", ["zero", "one", "two", "three"])
def test_regularization_l2_matches_reference_and_gradient(mode):
    x = _reg_input().requires_grad_(True)
    d = x.detach().numpy() - _np_target(x.detach().numpy(), mode)
    loss = regularization_loss(x, mode, norm="l2")
    assert loss.item() == pytest.approx((d**2).sum() / (2 * 3), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), d / 3, rtol=1e-12)


def test_regularization_custom_levels_and_edges():
    x = torch.tensor([[-0.1, 0.0, 0.29, 0.3, 0.99, 1.0, 1.2]], dtype=torch.float64)
    loss = regularization_loss(x, "one", levels=[0.3], values=[0.1, 0.6], norm="l2")
    # Targets: 0 (x<0), 0.1, 0.1, 0.6 (x == level), 0.6, 0.6 (x == 1 is in the last bin), 1.
    t = np.array([0, 0.1, 0.1, 0.6, 0.6, 0.6, 1.0])
    assert loss.item() == pytest.approx(((x.numpy()[0] - t) ** 2).sum() / 2, rel=1e-12)
    with pytest.raises(ValueError, match="needs 3 levels and 4 values"):
        regularization_loss(x, "two", levels=[0.5], values=[0.2, 0.7])
    with pytest.raises(ValueError, match="mode must be one of"):
        regularization_loss(x, "four")


@pytest.mark.parametrize("mode", ["zero", "two"])
def test_regularization_faithful_l1_forward_and_buggy_backward(mode):
    x = _reg_input(7).requires_grad_(True)
    d = x.detach().numpy() - _np_target(x.detach().numpy(), mode)
    loss = regularization_loss(x, mode, norm="l1")  # faithful_l1_bug=True by default
    # forward: the layer's scale_L1 = 1 / num / 2
    assert loss.item() == pytest.approx(np.abs(d).sum() / (2 * 3), rel=1e-12)
    (2.5 * loss).backward()
    # backward: d / N times the top gradient, NOT sign(d) / N
    np.testing.assert_allclose(x.grad.numpy(), 2.5 * d / 3, rtol=1e-12)


def test_regularization_corrected_l1_and_gradchecks():
    x = _reg_input(8).requires_grad_(True)
    d = x.detach().numpy() - _np_target(x.detach().numpy(), "three")
    loss = regularization_loss(x, "three", norm="l1", faithful_l1_bug=False)
    assert loss.item() == pytest.approx(np.abs(d).sum() / 3, rel=1e-12)
    # Away from bin edges and kinks T(x) is locally constant, so finite differences apply.
    xs = torch.tensor([[0.11, 0.33, 0.58, 0.93], [0.2, 0.45, 0.7, 0.82]], dtype=torch.float64,
                      requires_grad=True)
    for kw in ({"norm": "l2"}, {"norm": "l1", "faithful_l1_bug": False}):
        for mode in ("zero", "one", "two", "three"):
            assert torch.autograd.gradcheck(lambda a: regularization_loss(a, mode, **kw), (xs,))


def test_regularization_module_equals_function():
    x = _reg_input(9)
    for kw in ({"norm": "l2"}, {"norm": "l1"}, {"norm": "l1", "faithful_l1_bug": False}):
        assert RegularizationLoss("two", **kw)(x).item() == regularization_loss(x, "two", **kw).item()


# -- L1 / Euclidean -----------------------------------------------------------------------------
def test_l1_and_euclidean_match_reference_and_gradients():
    x, y = _pair((4, 3, 5, 6), seed=10)
    x.requires_grad_(True)
    y.requires_grad_(True)
    d = (x - y).detach().numpy()
    l1 = l1_loss(x, y)
    assert l1.item() == pytest.approx(np.abs(d).sum() / 4, rel=1e-12)
    l1.backward()
    np.testing.assert_allclose(x.grad.numpy(), np.sign(d) / 4)
    np.testing.assert_allclose(y.grad.numpy(), -np.sign(d) / 4)
    x.grad = y.grad = None
    l2 = euclidean_loss(x, y)
    assert l2.item() == pytest.approx((d**2).sum() / (2 * 4), rel=1e-12)
    l2.backward()
    np.testing.assert_allclose(x.grad.numpy(), d / 4, rtol=1e-12)
    assert L1Loss()(x, y).item() == l1.item() and EuclideanLoss()(x, y).item() == l2.item()
    assert torch.autograd.gradcheck(euclidean_loss, (x.detach().requires_grad_(), y.detach()))
    assert torch.autograd.gradcheck(l1_loss, (x.detach().requires_grad_(), y.detach()))


# -- build_loss ---------------------------------------------------------------------------------
def test_build_loss_composes_weighted_terms():
    x, y = _pair((2, 3, 16, 16), seed=11)
    loss = build_loss({"l2": 1.0, "ssim": 0.5, "reg_zero": 0.1})
    expected = euclidean_loss(x, y) + 0.5 * ssim_loss(x, y) + 0.1 * regularization_loss(x)
    assert loss(x, y).item() == pytest.approx(expected.item(), rel=1e-12)
    parts = loss.forward_terms(x, y)
    assert set(parts) == {"l2", "ssim", "reg_zero"}
    assert parts["ssim"].item() == pytest.approx(ssim_loss(x, y).item(), rel=1e-12)
    for name in LOSS_NAMES:  # every advertised name builds and gives a finite scalar
        value = build_loss({name: 1.0})(x, y)
        assert value.ndim == 0 and torch.isfinite(value)


def test_build_loss_rejects_bad_specs():
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        build_loss({"l3": 1.0})
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        build_loss({"l2": -1.0})
    with pytest.raises(ValueError, match="at least one term"):
        build_loss({})
