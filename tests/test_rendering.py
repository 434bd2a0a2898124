"""Rendered test photos (sice.dataset.rendering, `sice render`): exposure, noise, views, reproducibility."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from sice.imageops import srgb_to_linear
from sice.dataset.rendering import expose, horizon_views, render_set


def _write_exr(path, rgb: np.ndarray) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"RGB": np.ascontiguousarray(rgb, dtype=np.float32)}) as f:
        f.write(str(path))


def test_expose_puts_the_median_at_middle_grey_times_two_to_the_ev():
    rng = np.random.default_rng(0)
    radiance = (rng.lognormal(0.0, 1.0, (60, 90, 1)) * np.array([1.0, 0.8, 0.6])).astype(np.float32)
    for ev in (-3.0, 0.0, 1.0):
        out = expose(radiance, ev, noise=False)
        assert out.dtype == np.uint8
        linear = srgb_to_linear(out.astype(np.float32) / 255).mean(axis=2)
        # median of the mean of R, G, B -> 0.18 * 2**ev (8-bit sRGB rounding: a few %)
        assert np.median(linear) == pytest.approx(0.18 * 2.0 ** ev, rel=0.04)


def test_noise_is_seeded_and_grows_like_shot_noise():
    flat = np.full((64, 64, 3), 1.0, np.float32)
    a, b = expose(flat, -4, seed=1), expose(flat, -4, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, expose(flat, -4, seed=2))
    assert np.array_equal(expose(flat, -4, noise=False), np.full_like(a, expose(flat, -4, noise=False)[0, 0, 0]))
    assert a.std() > 0.5  # visible noise in a dark flat field


def test_views_keep_3_to_2_at_the_asked_width():
    pano = np.zeros((64, 128, 3), np.float32)
    pano[:, :8] = 1.0  # a bright stripe at the seam (x = 0)
    views = horizon_views(pano, 2, width=30)
    assert all(v.shape == (20, 30, 3) for v in views)
    with pytest.raises(ValueError, match="views"):
        horizon_views(pano, 0)


def test_render_set_and_cli_write_the_same_files_twice(tmp_path):
    rng = np.random.default_rng(3)
    exr = tmp_path / "scene.exr"
    _write_exr(exr, rng.lognormal(0, 1.2, (64, 128, 3)))
    first = render_set([exr], tmp_path / "a", under=(-2,), over=(1.5,), views=2)
    assert sorted(p.relative_to(tmp_path / "a").as_posix() for p in first) == [
        "over/scene-1_ev+1.5.jpg", "over/scene-2_ev+1.5.jpg", "under/scene-1_ev-2.jpg", "under/scene-2_ev-2.jpg"]
    from sice.cli.render import command

    result = CliRunner().invoke(command, [str(tmp_path), "-o", str(tmp_path / "b"), "--under=-2", "--over",
                                          "1.5", "--views", "2"])
    assert result.exit_code == 0, result.output
    for p in first:
        assert (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes() == p.read_bytes()
    with pytest.raises(ValueError, match="under EVs must be < 0"):
        render_set([exr], tmp_path / "c", under=(1.0,))
    bad = CliRunner().invoke(command, [str(exr), "-o", str(tmp_path / "d"), "--over=-1"])
    assert bad.exit_code == 2 and "over EVs" in bad.output


def test_read_radiance_refuses_non_finite_and_bad_files(tmp_path):
    from sice.errors import ImageReadError
    from sice.io import read_radiance

    nan = np.ones((8, 8, 3), np.float32)
    nan[2, 2, 1] = np.nan
    _write_exr(tmp_path / "nan.exr", nan)
    with pytest.raises(ImageReadError, match="nan.exr: radiance has NaN"):
        read_radiance(tmp_path / "nan.exr")
    (tmp_path / "junk.exr").write_bytes(b"not an exr")
    with pytest.raises(ImageReadError, match="junk.exr: cannot read as OpenEXR"):
        read_radiance(tmp_path / "junk.exr")
