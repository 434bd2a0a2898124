"""gaingrid's variants: the exposure-adaptive normalisation and guide, the offset term, checkpoints of every layout."""
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


@pytest.mark.parametrize("adaptive,offset", [(False, False), (True, False), (False, True), (False, "grey")])
def test_checkpoint_round_trip_keeps_the_layout(tmp_path, adaptive, offset):
    torch.manual_seed(0)
    model = create_model("gaingrid", adaptive=adaptive, offset=offset).eval()
    with torch.no_grad():
        model.to_grid.weight.normal_(0, 0.3)
    save_checkpoint(tmp_path / "g.pt", model)
    loaded = load_checkpoint(tmp_path / "g.pt").eval()
    assert loaded.splat[0].in_channels == (6 if adaptive else 3)
    assert loaded.to_grid.out_channels == {False: 3, True: 6, "grey": 4}[offset] * model.bins
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 64, 96)).astype(np.float32)) * 0.3
    with torch.no_grad():
        out = loaded(x)
        assert torch.equal(out, model(x))
    assert float((out - x).abs().mean()) > 1e-3  # not the identity start


def _constant_grid_model(log2_gain: float, offset: float):
    """An offset gaingrid whose every cell holds the same gain and offset (bias only)."""
    model = create_model("gaingrid", offset=True).eval()
    bins = model.bins
    with torch.no_grad():
        # grid() bounds the raw values by MAX * tanh(z / MAX): invert that for the bias
        from sice.models.gaingrid import MAX_OFFSET, MAX_STOPS
        model.to_grid.bias[: 3 * bins] = MAX_STOPS * math.atanh(log2_gain / MAX_STOPS)
        model.to_grid.bias[3 * bins:] = MAX_OFFSET * math.atanh(offset / MAX_OFFSET)
    return model


def test_offset_layout_is_gain_times_input_plus_offset():
    model = _constant_grid_model(1.0, 0.05)
    x = torch.rand((1, 3, 40, 56), generator=torch.Generator().manual_seed(3)) * 0.4
    with torch.no_grad():
        out = model(x)
    # a constant grid slices to that constant everywhere: out = 2 * x + 0.05, clipped
    torch.testing.assert_close(out, (2 * x + 0.05).clamp(0, 1), atol=1e-5, rtol=0)


def test_offset_layout_hands_over_its_gains_and_offsets():
    # Photos get the sliced gains and offsets themselves: applying them reproduces forward()
    # exactly, black pixels included (a gain ratio could not lift those).
    model = _constant_grid_model(0.5, 0.1)
    x = torch.rand((1, 3, 48, 64), generator=torch.Generator().manual_seed(4)) * 0.5
    x[..., :4, :4] = 0
    with torch.no_grad():
        out = model(x)
        log_gain, offset = model.gain_offset(model.thumbnail(x), x)
    torch.testing.assert_close((x * torch.exp2(log_gain) + offset).clamp(0, 1), out, atol=1e-6, rtol=0)
    assert float(out[..., :4, :4].min()) == pytest.approx(0.1, abs=1e-5)


def test_ensemble_is_the_mean_of_its_members_and_round_trips(tmp_path):
    from sice.models.gaingrid import ensemble_of
    torch.manual_seed(1)
    plain = create_model("gaingrid").eval()
    lifted = _constant_grid_model(0.5, 0.1)
    with torch.no_grad():
        plain.to_grid.weight.normal_(0, 0.3)
    ensemble = ensemble_of([plain, lifted])
    assert ensemble.sice_config.name == "gaingrid-ensemble"
    x = torch.rand((1, 3, 40, 64), generator=torch.Generator().manual_seed(5)) * 0.5 + 0.02
    with torch.no_grad():
        # the mean of the members' unclipped outputs, clipped once
        thumb = plain.thumbnail(x)
        unclipped = (x * torch.exp2(plain.log_gain(thumb, x)) + x * 2 ** 0.5 + 0.1) / 2
        torch.testing.assert_close(ensemble(x), unclipped.clamp(0, 1), atol=1e-5, rtol=0)
        assert float((unclipped - (plain(x) + lifted(x)) / 2).abs().max()) > 1e-3  # a member clips
        # photos get the mean gain and the mean offset
        log_gain, offset = ensemble.gain_offset(thumb, x)
        torch.testing.assert_close(x * torch.exp2(log_gain) + offset, unclipped, atol=1e-5, rtol=0)
        torch.testing.assert_close(offset, torch.full_like(offset, 0.05), atol=1e-6, rtol=0)
    save_checkpoint(tmp_path / "e.pt", ensemble)
    loaded = load_checkpoint(tmp_path / "e.pt")
    assert [m.offset for m in loaded.members] == [False, True]
    with torch.no_grad():
        assert torch.equal(loaded(x), ensemble(x))


def test_ensemble_of_refuses_other_models():
    from sice.models.gaingrid import ensemble_of
    with pytest.raises(ValueError, match="gaingrid"):
        ensemble_of([create_model("hdrnet")])
    with pytest.raises(ValueError, match="gaingrid"):
        ensemble_of([])


def test_grey_offsets_lift_all_channels_alike_and_bad_layouts_are_refused():
    model = create_model("gaingrid", offset="grey").eval()
    with torch.no_grad():
        model.to_grid.bias[3 * model.bins:] = 0.1  # the one offset channel; gains stay 2**0
    x = torch.rand((1, 3, 24, 32), generator=torch.Generator().manual_seed(6)) * 0.5
    with torch.no_grad():
        lift = model(x) - x
    from sice.models.gaingrid import MAX_OFFSET
    expected = MAX_OFFSET * math.tanh(0.1 / MAX_OFFSET)
    torch.testing.assert_close(lift, torch.full_like(lift, expected), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="offset"):
        create_model("gaingrid", offset="blue")


@pytest.mark.parametrize("name", ["gaingrid", "tonegrid"])
def test_grid_sizes_the_global_path_cannot_take_are_refused_at_construction(name):
    # 1 and 2 cells per side used to build, then fail on the first image in a matrix product
    for bad in (1, 2, 3, 12):
        with pytest.raises(ValueError, match="grid_size"):
            create_model(name, grid_size=bad)
    model = create_model(name, grid_size=4).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 40, 30, generator=torch.Generator().manual_seed(0)))
    assert y.shape == (1, 3, 40, 30) and bool(torch.isfinite(y).all())
