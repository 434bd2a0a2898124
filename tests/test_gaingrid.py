"""gaingrid's exposure-adaptive variant: the normalisation, the guide, checkpoints of both layouts."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sice.models import create_model
from sice.models.checkpoint import load_checkpoint, save_checkpoint


@pytest.mark.parametrize("luma", [0.02, 0.1, 0.3, 0.5, 0.8])
def test_normalisation_maps_the_mean_to_one_half(luma):
    # Left half black, right half grey `luma`: white = luma, mean(luma / white) = 0.5 (the
    # black half is clamped to 1e-4 before the power, as the guide does).
    model = create_model("gaingrid", adaptive=True)
    thumb = torch.zeros((1, 3, 256, 256))
    thumb[..., 128:] = luma
    white, a = (float(t) for t in model.exposure_normalisation(thumb))
    assert white == pytest.approx(luma, rel=1e-5)
    assert a == pytest.approx(1.0, rel=1e-5)  # mean of luma / white is already 0.5
    # a uniform grey frame: luma / white == 1 everywhere -> mean clamped to 0.99, exponent
    # log 0.5 / log 0.99 = 69 clamped to 8
    white, a = (float(t) for t in model.exposure_normalisation(torch.full((1, 3, 256, 256), luma)))
    assert a == 8.0


def test_normalisation_stays_finite_on_black_and_white_frames():
    model = create_model("gaingrid", adaptive=True)
    for value in (0.0, 1.0):
        white, a = model.exposure_normalisation(torch.full((1, 3, 256, 256), value))
        assert float(white) == pytest.approx(max(value, 0.01)) and 1 / 8 <= float(a) <= 8


def test_adaptive_guide_spreads_a_dark_photo_over_the_intensity_levels():
    # A dark photo (luma a ramp over [0, 0.1]): the v1 sqrt guide keeps it below
    # sqrt(0.1) = 0.32, i.e. in the lowest 3 of 8 levels; the adaptive guide spans [0, 1]
    # with its median at the middle (luma / white is the uniform ramp over [0, 1]: exponent 1).
    ramp = torch.linspace(0, 0.1, 256).view(1, 1, 1, 256).expand(1, 3, 256, 256).contiguous()
    fixed, adaptive = create_model("gaingrid"), create_model("gaingrid", adaptive=True)
    with torch.no_grad():
        g_fixed = fixed.guide(ramp)
        g_adaptive = adaptive.guide(ramp, adaptive.exposure_normalisation(ramp))
    assert float(g_fixed.max()) <= math.sqrt(0.1) + 1e-5
    assert float(g_adaptive.max()) == pytest.approx(1.0, abs=1e-5)
    assert float(g_adaptive.min()) < 0.01
    assert float(g_adaptive.median()) == pytest.approx(0.5, abs=0.01)


def test_adaptive_guide_needs_the_exponent():
    model = create_model("gaingrid", adaptive=True)
    with pytest.raises(ValueError, match="normalisation"):
        model.guide(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("adaptive", [False, True])
def test_checkpoint_round_trip_keeps_the_layout(tmp_path, adaptive):
    torch.manual_seed(0)
    model = create_model("gaingrid", adaptive=adaptive).eval()
    with torch.no_grad():
        model.to_grid.weight.normal_(0, 0.3)
    save_checkpoint(tmp_path / "g.pt", model)
    loaded = load_checkpoint(tmp_path / "g.pt").eval()
    assert loaded.splat[0].in_channels == (6 if adaptive else 3)
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 64, 96)).astype(np.float32)) * 0.3
    with torch.no_grad():
        out = loaded(x)
        assert torch.equal(out, model(x))
    assert float((out - x).abs().mean()) > 1e-3  # not the identity start
