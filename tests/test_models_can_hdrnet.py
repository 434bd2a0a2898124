"""CAN32 and HDRNet (sice.models.can, sice.models.hdrnet) and the shared bilateral slicing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sice.enhancement import Enhancer, tiled_apply
from sice.models import count_parameters, create_model, list_models, model_config
from sice.models._bilateral import apply_affine, bilateral_slice
from sice.models.can import CAN, dilations, receptive_radius
from sice.tensorops import image_to_tensor, tensor_to_image


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against each other and
    these small models run ~15x slower (measured: 35 s vs 2 s for ten training steps)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Slicing against a slow reference
# --------------------------------------------------------------------------------------------
def _slice_reference(grid: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """Per-pixel trilinear interpolation written out corner by corner (float64, no torch).

    Spatial coordinates are cell-centred and pixel-centre aligned, clamped at the border cells;
    depth coordinate guide * (D - 1) over D nodes.
    """
    b_, c_, d_, gh, gw = grid.shape
    h, w = guide.shape[-2:]
    out = np.zeros((b_, c_, h, w))
    for b in range(b_):
        for y in range(h):
            gy = min(max((y + 0.5) * gh / h - 0.5, 0.0), gh - 1)
            y0 = int(np.floor(gy)); y1 = min(y0 + 1, gh - 1); wy = gy - y0
            for x in range(w):
                gx = min(max((x + 0.5) * gw / w - 0.5, 0.0), gw - 1)
                x0 = int(np.floor(gx)); x1 = min(x0 + 1, gw - 1); wx = gx - x0
                gz = guide[b, 0, y, x] * (d_ - 1)
                z0 = min(int(np.floor(gz)), d_ - 1); z1 = min(z0 + 1, d_ - 1); wz = gz - z0
                acc = np.zeros(c_)
                for zi, fz in ((z0, 1 - wz), (z1, wz)):
                    for yi, fy in ((y0, 1 - wy), (y1, wy)):
                        for xi, fx in ((x0, 1 - wx), (x1, wx)):
                            acc += fz * fy * fx * grid[b, :, zi, yi, xi]
                out[b, :, y, x] = acc
    return out


@pytest.mark.parametrize("grid_shape,size", [((2, 3, 5, 4, 3), (11, 13)),   # upsampling, odd ratio
                                             ((1, 12, 8, 16, 16), (9, 7)),  # fewer pixels than cells
                                             ((1, 2, 2, 1, 1), (3, 4))])    # one cell, two levels
@pytest.mark.parametrize("method", ["levels", "grid_sample"])
def test_bilateral_slice_equals_per_pixel_trilinear_reference(grid_shape, size, method):
    rng = np.random.default_rng(0)
    grid = rng.normal(size=grid_shape)
    guide = rng.random((grid_shape[0], 1) + size)
    guide.flat[:4] = [0.0, 1.0, 0.5, 1 / (grid_shape[2] - 1)]  # ends and knots exactly
    got = bilateral_slice(torch.from_numpy(grid), torch.from_numpy(guide), method=method).numpy()
    np.testing.assert_allclose(got, _slice_reference(grid, guide), rtol=1e-10, atol=1e-12)


def test_bilateral_slice_follows_the_guide_in_depth():
    # grid value = depth index: slicing must return guide * (D - 1) wherever the guide is
    grid = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(1, 1, 5, 3, 3)
    guide = torch.rand(1, 1, 8, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bilateral_slice(grid, guide), guide * 4)


def test_bilateral_slice_rejects_bad_shapes():
    with pytest.raises(ValueError, match="grid must be"):
        bilateral_slice(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="guide must be"):
        bilateral_slice(torch.zeros(2, 3, 4, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="method must be"):
        bilateral_slice(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 1, 4, 4), method="nearest")


def _gaingrid_slice_before_sharing(model, grid, x):
    """GainGrid.slice as it was written before it called bilateral_slice (commit f2e8da2)."""
    h, w = x.shape[-2:]
    pos = model.guide(x) * (model.bins - 1)
    out = None
    for d in range(model.bins):
        level = F.interpolate(grid[:, :, d], size=(h, w), mode="bilinear", align_corners=False)
        term = level * F.relu(1.0 - (pos - d).abs())
        out = term if out is None else out + term
    return out


def test_gaingrid_slice_is_unchanged_by_sharing_the_code():
    torch.manual_seed(0)
    model = create_model("gaingrid").eval()
    with torch.no_grad():
        model.to_grid.weight.normal_(0, 0.1)  # a non-identity grid, so the test can fail
        x = torch.rand(2, 3, 37, 51)
        grid = model.grid(model.thumbnail(x))
        assert grid.abs().max() > 0.1
        assert torch.equal(model.slice(grid, x), _gaingrid_slice_before_sharing(model, grid, x))


def test_apply_affine_is_a_3x4_matrix_per_pixel():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 3, 4, 5, 6))
    x = rng.random((2, 3, 5, 6))
    expected = np.einsum("boihw,bihw->bohw", a[:, :, :3], x) + a[:, :, 3]
    got = apply_affine(torch.from_numpy(a.reshape(2, 12, 5, 6)), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Registry, sizes, parameter counts
# --------------------------------------------------------------------------------------------
def test_both_models_are_registered_with_how_to_feed_them():
    assert {"can32", "hdrnet"} <= set(list_models())
    can, hdr = model_config("can32"), model_config("hdrnet")
    assert can.fully_convolutional and can.receptive_radius == 128
    assert not hdr.fully_convolutional


def test_can_dilations_and_receptive_radius_follow_the_paper():
    # Chen et al. 2017, Sec. 3: r_s = 2^(s-1) for s <= d-2, r_{d-1} = 1, then a 1x1 layer
    assert dilations(9) == [1, 2, 4, 8, 16, 32, 64, 1]
    assert receptive_radius(9) == 1 + 2 + 4 + 8 + 16 + 32 + 64 + 1
    model = create_model("can32")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1, 2, 4, 8, 16, 32, 64, 1, 1]
    assert [c.kernel_size[0] for c in convs] == [3] * 8 + [1]


def test_can32_parameter_count():
    # Hand-evaluated from the paper's architecture (d = 9, 32 channels): it states no count.
    # 3x3 convs 3->32 and 7x 32->32 with bias, 1x1 32->3 with bias, 8 adaptive norms of
    # lambda, mu and BatchNorm's gamma, beta (2 x 32).
    convs = (3 * 32 * 9 + 32) + 7 * (32 * 32 * 9 + 32) + (32 * 3 + 3)
    norms = 8 * (2 + 2 * 32)
    assert count_parameters(create_model("can32")) == convs + norms == 66_259


def test_hdrnet_parameter_count():
    # Hand-evaluated from the layer list of the authors' HDRNetCurves (luma_bins 8, spatial_bin
    # 16, channel_multiplier 1, no batch norm); the paper gives no count for this configuration.
    splat = (3 * 8 + 8 * 16 + 16 * 32 + 32 * 64) * 9 + (8 + 16 + 32 + 64)
    global_conv = 2 * (64 * 64 * 9 + 64)
    fc = (1024 * 256 + 256) + (256 * 128 + 128) + (128 * 64 + 64)
    local = (64 * 64 * 9 + 64) + 64 * 64 * 9  # second conv has no bias
    predict = 64 * 96 + 96
    guide = (9 + 3) + 2 * 3 * 16 + (3 + 1)  # ccm + bias, shifts + slopes, 1x1 mix
    assert count_parameters(create_model("hdrnet")) == splat + global_conv + fc + local + predict + guide == 482_080


@pytest.mark.parametrize("name", ["can32", "hdrnet"])
@pytest.mark.parametrize("size", [(1, 1), (17, 23), (64, 48)])
def test_output_keeps_the_input_size(name, size):
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size)


def test_hdrnet_grid_is_12_coefficients_by_8_bins_by_16x16():
    model = create_model("hdrnet")
    assert model.coefficients(torch.rand(2, 3, 256, 256)).shape == (2, 12, 8, 16, 16)


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------
def test_hdrnet_starts_as_the_identity_and_guide_as_mean_rgb():
    model = create_model("hdrnet").eval()
    x = torch.rand(1, 3, 30, 41)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x, rtol=0, atol=1e-6)
        torch.testing.assert_close(model.guide(x), x.mean(1, keepdim=True), rtol=0, atol=1e-6)


def test_hdrnet_guide_curve_is_the_papers_piecewise_linear_sum():
    guide = create_model("hdrnet").guide
    with torch.no_grad():
        guide.slopes.copy_(torch.linspace(-0.5, 1.0, 48).view(3, 16))
        guide.mix.weight.copy_(torch.tensor([0.5, 0.3, 0.2]).view(1, 3, 1, 1))
        x = torch.rand(1, 3, 4, 5, dtype=torch.float32)
        got = guide(x)
    # g = b + sum_c w_c sum_i a_ci max(x_c - t_ci, 0) with M = identity (eq. 4)
    a, t = guide.slopes.detach().numpy(), guide.shifts.detach().numpy()
    xs = x[0].numpy()
    rho = np.stack([(a[c][:, None, None] * np.maximum(xs[c][None] - t[c][:, None, None], 0)).sum(0)
                    for c in range(3)])
    expected = np.clip(0.5 * rho[0] + 0.3 * rho[1] + 0.2 * rho[2], 0, 1)
    np.testing.assert_allclose(got[0, 0].numpy(), expected, atol=1e-6)


def test_can_starts_near_the_identity_and_every_channel_can_learn():
    torch.manual_seed(0)
    model = create_model("can32")
    x = torch.rand(2, 3, 24, 24)
    out = model(x)
    assert (out - x).abs().max() < 0.05
    ((out - x.sqrt()) ** 2).mean().backward()
    first = model.body[0].weight.grad
    # channels 3..31 start (almost) at zero: the symmetry-breaking noise must let them learn
    assert (first[3:].abs().flatten(1).amax(1) > 0).all()


# --------------------------------------------------------------------------------------------
# Receptive field and tiling (CAN)
# --------------------------------------------------------------------------------------------
def _randomised_can(seed=0):
    torch.manual_seed(seed)
    model = CAN(width=8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                # std 1/sqrt(fan-in): outputs stay O(1) through the 9 layers
                m.weight.normal_(0, m.weight[0].numel() ** -0.5)
                m.bias.normal_(0, 0.1)
    model.train()
    with torch.no_grad():  # nontrivial running statistics for eval-mode BatchNorm
        for _ in range(3):
            model(torch.rand(4, 3, 16, 16))
        for m in model.modules():
            if hasattr(m, "mu"):
                m.mu.fill_(0.5)
    return model.eval()


def test_can_receptive_radius_is_exact():
    model = _randomised_can().double()
    x = torch.rand(1, 3, 1, 301, dtype=torch.float64)
    y = x.clone()
    y[..., 150] += 1.0
    with torch.no_grad():
        diff = (model(y) - model(x)).abs().amax(dim=(0, 1, 2))
    changed = torch.nonzero(diff > 0).flatten()
    r = receptive_radius()
    assert changed.min().item() == 150 - r and changed.max().item() == 150 + r


def test_can_tiled_equals_untiled_in_eval_mode():
    model = _randomised_can(1).double()  # float64: only the tiling can make a difference
    img = np.random.default_rng(2).random((4, 400, 3))

    def fn(block):
        with torch.no_grad():
            return model(torch.from_numpy(block.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)

    whole = fn(img)
    assert np.abs(whole).max() < 50
    tiled = tiled_apply(img, fn, tile=96, overlap=receptive_radius(), out_channels=3)
    np.testing.assert_allclose(tiled, whole, rtol=1e-6, atol=1e-6)  # tiled_apply returns float32
    short = tiled_apply(img, fn, tile=96, overlap=receptive_radius() // 2, out_channels=3)
    assert np.abs(short - whole).max() > 1e-3  # too little overlap differs: the test can fail


def test_enhancer_runs_both_models_and_keeps_size():
    img = np.random.default_rng(3).random((33, 45, 3)).astype(np.float32)
    for name in ("can32", "hdrnet"):
        model = create_model(name)
        out = Enhancer(model, backend="torch").enhance_rgb(img)
        assert out.shape == img.shape
        np.testing.assert_allclose(out, img, atol=0.05 if name == "can32" else 1e-5)


def _trained_looking_hdrnet(seed=0):
    torch.manual_seed(seed)
    model = create_model("hdrnet").eval()
    with torch.no_grad():  # off the identity start: coefficients vary over the grid
        model.predict.weight.normal_(0, 0.02)
    return model


def test_hdrnet_photo_path_equals_full_resolution_slicing_up_to_its_work_size():
    # Up to work_size the gain transfer (log_gain, applied by the shared apply_log2_gain) must give
    # forward()'s output, but for the ratio's 1e-3 floor (|error| <= 1e-3 |x - y| / x) and the
    # -8 stop bound (an output clipped to 0 becomes x / 256). The 256x256 copy is the one the
    # photo path makes (OpenCV INTER_AREA; torch's area mode weighs fractional pixels differently).
    from sice.enhancement import gain_inputs

    model = _trained_looking_hdrnet()
    img = np.random.default_rng(4).uniform(0.1, 0.9, (120, 150, 3)).astype(np.float32)
    with torch.no_grad():
        thumb = image_to_tensor(gain_inputs(img, model.work_size)[0])
        ref = tensor_to_image(model._sliced_affine(model.coefficients(thumb), image_to_tensor(img)).clamp(0, 1))
    got = Enhancer(model, backend="torch").enhance_rgb(img)
    assert np.abs(ref - img).mean() > 0.02  # the model changes the image: the test can fail
    bound = 1e-3 * np.abs(img - ref) / img + img / 256 * (ref == 0) + 1e-5
    assert (np.abs(got - ref) <= bound).all()
    # above work_size, gains are interpolated between working pixels: on a smooth photo close to
    # the full-resolution slicing, not equal
    import cv2

    smooth = cv2.resize(np.random.default_rng(6).uniform(0.1, 0.9, (6, 8, 3)).astype(np.float32), (150, 120),
                        interpolation=cv2.INTER_CUBIC).clip(0, 1)
    with torch.no_grad():
        thumb = image_to_tensor(gain_inputs(smooth, model.work_size)[0])
        ref = tensor_to_image(model._sliced_affine(model.coefficients(thumb), image_to_tensor(smooth)).clamp(0, 1))
    model.work_size = 64
    far = Enhancer(model, backend="torch").enhance_rgb(smooth)
    assert 1e-4 < np.abs(far - ref).mean() < 0.01


def test_hdrnet_exports_to_onnx_and_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from sice.models.onnx_export import export_onnx

    model = _trained_looking_hdrnet(1)
    export_onnx(model, tmp_path / "h.onnx")
    img = np.random.default_rng(5).random((90, 130, 3)).astype(np.float32)
    a = Enhancer(model, backend="torch").enhance_rgb(img)
    b = Enhancer(str(tmp_path / "h.onnx")).enhance_rgb(img)
    assert np.abs(a - img).mean() > 0.02
    assert np.abs(a - b).max() <= 1 / 255


# --------------------------------------------------------------------------------------------
# Gradients and a short training run
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["can32", "hdrnet"])
def test_every_parameter_gets_a_finite_nonzero_gradient(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    with torch.no_grad():  # move off the identity start, where some gradients are zero by design
        if name == "hdrnet":
            model.predict.weight.normal_(0, 0.01)
        else:
            for m in model.modules():
                if hasattr(m, "mu"):
                    m.mu.fill_(0.1)
    x = torch.rand(2, 3, 40, 40) * 0.6 + 0.2  # inside every guide-curve segment's support
    ((model(x) - x.sqrt()) ** 2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().max() > 0, pname


@pytest.mark.parametrize("name,steps", [("can32", 25), ("hdrnet", 25)])
def test_short_training_lowers_the_loss(name, steps):
    # A brightening tone curve (a gamma of 0.5) with a colour shift: both models can express it.
    torch.manual_seed(0)
    model = create_model(name).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.rand(4, 3, 24, 24, generator=gen) * 0.5
        target = torch.stack([x[:, 0].sqrt(), x[:, 1].sqrt() * 0.9, x[:, 2].sqrt() * 0.8], 1)
        loss = F.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:3]), losses
