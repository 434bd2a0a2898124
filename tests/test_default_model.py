"""The shipped default model: loads offline, ONNX and torch agree, it brightens dark photos and
darkens over-exposed ones, and `sice export` round-trips it."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sice.enhancement import Enhancer
from sice.imageops import luminance, to_float32
from sice.samples import render_sample


@pytest.fixture(scope="module")
def onnx_enhancer():
    pytest.importorskip("onnxruntime")
    return Enhancer()


def test_default_uses_onnxruntime_and_matches_torch(onnx_enhancer):
    assert onnx_enhancer.backend == "onnxruntime"
    img = render_sample(300, 450)
    a = onnx_enhancer.enhance_pixels(img)
    b = Enhancer("default", backend="torch").enhance_pixels(img)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # within 1/255


@pytest.mark.parametrize("ev,direction", [(-3.5, "brighter"), (2.5, "darker")])
def test_moves_exposure_the_right_way(onnx_enhancer, ev, direction):
    img = render_sample(300, 450, ev=ev)
    before = luminance(to_float32(img)).mean()
    after = luminance(to_float32(onnx_enhancer.enhance_pixels(img))).mean()
    if direction == "brighter":
        assert after > before + 0.1, (before, after)
    else:
        assert after < before - 0.03, (before, after)


def test_export_command_round_trip(tmp_path, onnx_enhancer):
    r = subprocess.run([sys.executable, "-m", "sice", "export", "default", "-o", str(tmp_path / "g.onnx")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    img = render_sample(200, 300)
    ours = Enhancer(str(tmp_path / "g.onnx")).enhance_pixels(img)
    np.testing.assert_array_equal(ours, onnx_enhancer.enhance_pixels(img))


def test_readme_main_command_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sice", "enhance", "--sample", "-o", str(tmp_path / "enhanced")],
                       capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                       "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "enhanced" / "sample-underexposed.jpg").is_file()
    # the sample's input is shown next to its output (README command 1 has something to compare)
    from sice.io import read_image

    before_after = read_image(tmp_path / "enhanced" / "sample-underexposed-compare.jpg").pixels
    assert before_after.shape[1] == 1200 and before_after.shape[0] > 1600  # two 1200x800 panels, stacked
    assert r.stdout.splitlines() == [str(tmp_path / "enhanced" / "sample-underexposed.jpg")]
