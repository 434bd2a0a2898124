"""Photographic finishing of labels (sice.dataset.finishing) and the build-dataset --finish option."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sice.dataset.finishing import finish_curve, photo_finish
from sice.imageops import luminance


def _ramp(lo: float, hi: float, n: int = 4096) -> np.ndarray:
    v = np.linspace(lo, hi, n, dtype=np.float32).reshape(64, 64)
    return np.repeat(v[..., None], 3, axis=2)


def test_levels_map_the_percentiles_to_black_and_white_and_keep_the_median():
    img = _ramp(0.15, 0.85)  # a flat fusion: no black, no white, median 0.5
    black, white, gamma = finish_curve(luminance(img))
    # linear percentiles of an even ramp: 0.15 + 0.7 * 0.005 and 0.15 + 0.7 * 0.995
    assert black == pytest.approx(0.1535, abs=1e-3)
    assert white == pytest.approx(0.8465, abs=1e-3)
    # stretched median (0.5 - 0.1535) / 0.693 = 0.5 -> gamma log(0.5) / log(0.5) = 1
    assert gamma == pytest.approx(1.0, abs=0.01)
    out = photo_finish(img)
    assert out.min() == pytest.approx(0.0, abs=1e-6) and out.max() == pytest.approx(1.0, abs=1e-6)
    assert np.median(luminance(out)) == pytest.approx(0.5, abs=0.01)


def test_gamma_puts_the_median_back_and_the_curve_is_monotone_and_pinned():
    rng = np.random.default_rng(0)
    img = np.clip(rng.beta(2, 5, (64, 64, 1)) * 0.7 + 0.1, 0, 1).repeat(3, axis=2).astype(np.float32)
    black, white, gamma = finish_curve(luminance(img))
    median = float(np.median(luminance(img)))
    assert ((median - black) / (white - black)) ** gamma == pytest.approx(median, abs=1e-4)
    out = photo_finish(img)
    order = np.argsort(img[..., 0].ravel())
    assert np.all(np.diff(out[..., 0].ravel()[order]) >= -1e-6)  # monotone in the input


def test_contrast_gain_is_bounded_for_a_scene_without_highlights():
    img = _ramp(0.30, 0.45)  # very flat: stretching fully would be 6.7x
    black, white, _ = finish_curve(luminance(img), max_stretch=1.6)
    assert 1 / (white - black) == pytest.approx(1.6, rel=1e-4)
    assert black == pytest.approx(0.30 + 0.15 * 0.005, abs=1e-3)  # the black end is still set


def test_pixels_clipped_in_the_darkest_frame_become_white():
    fused = np.full((32, 32, 3), 0.6, np.float32)
    fused[:, :16] = 0.3
    fused[:8] = 0.9  # a bright wall: the white point
    fused[12:24, 20:28] = 0.75  # a light source the fusion painted light grey
    darkest = np.full((32, 32, 3), 0.05, np.float32)
    darkest[12:24, 20:28] = 1.0
    out = photo_finish(fused, darkest)
    assert out[14:22, 22:26].min() > 0.99
    without = photo_finish(fused)
    assert without[14:22, 22:26].max() < 0.95  # levels alone leave it grey
    with pytest.raises(ValueError, match="darkest must have"):
        photo_finish(fused, darkest[:10])


def test_build_dataset_finishes_labels_and_refinishes_without_fusing_again(tmp_path):
    from sice.dataset.build import BuildOptions, build_dataset
    from sice.fusion import mertens
    from sice.io import read_rgb, write_image
    from support.helpers import synthetic_scene

    seqs = tmp_path / "seqs" / "001"
    seqs.mkdir(parents=True)
    base = synthetic_scene(48, 64)
    for k, ev in enumerate((-2, 0, 2), start=1):
        write_image(seqs / f"{k}.png", np.clip(base * 2.0 ** ev, 0, 1))
    out = tmp_path / "ds"
    plain = BuildOptions(generators=(("mertens", mertens),), align=False, finish="none")
    build_dataset(tmp_path / "seqs", out, plain)
    candidate = read_rgb(out / "candidates" / "001" / "mertens.png")
    assert np.array_equal(read_rgb(out / "Label" / "001.png"), candidate)
    entry = json.loads((out / ".manifest" / "001.json").read_text())
    assert entry["label"]["finish"] == "none"
    seconds = entry["generators"]["mertens"]["seconds"]

    result = build_dataset(tmp_path / "seqs", out, BuildOptions(generators=plain.generators, align=False))
    assert result.refinished == ["001"] and result.built == []
    label = read_rgb(out / "Label" / "001.png")
    expected = photo_finish(candidate, read_rgb(out / "001" / "1.png"))
    assert np.abs(label - expected).max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    entry = json.loads((out / ".manifest" / "001.json").read_text())
    assert entry["label"]["finish"] == "photo"
    assert entry["generators"]["mertens"]["seconds"] == seconds  # not fused again
    assert json.loads((out / "manifest.json").read_text())["options"]["finish"] == "photo"
