"""sice.stack.exposure: EXIF parsing, sRGB curves against the IEC formula, and exposure estimation on
brackets with known exposures (synthetic, and rendered from the CC0 HDR panoramas)."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from sice.imageops import linear_to_srgb, srgb_to_linear
from sice.stack.exposure import ExifExposure, estimate_exposures, exif_exposure_values, exposure_from_exif

from support.helpers import synthetic_scene


def exif_block(time=None, f_number=None, iso=None) -> bytes:
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    if time is not None:
        ifd[0x829A] = time
    if f_number is not None:
        ifd[0x829D] = f_number
    if iso is not None:
        ifd[0x8827] = iso
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "JPEG", exif=exif)
    return Image.open(buf).getexif().tobytes()


def test_exif_exposure_read_and_combined():
    settings = exposure_from_exif(exif_block(1 / 125, 4.0, 200))
    assert settings.exposure_time == pytest.approx(1 / 125)
    assert settings.f_number == pytest.approx(4.0) and settings.iso == pytest.approx(200)
    assert exposure_from_exif(exif_block(f_number=2.8)) is None  # no exposure time
    assert exposure_from_exif(None) is None and exposure_from_exif(b"garbage") is None
    # Brightness ~ t * ISO / N^2: (1/60, f/4, ISO 100) vs (1/125, f/2.8, ISO 400) by hand:
    # log2((1/125 * 400 / 2.8^2) / (1/60 * 100 / 16)) = log2(0.40816 / 0.104167) = 1.9703
    ev = exif_exposure_values([ExifExposure(1 / 60, 4.0, 100), ExifExposure(1 / 125, 2.8, 400)])
    np.testing.assert_allclose(ev, [0.0, 1.9703], atol=1e-4)
    # Aperture ignored unless every frame records it; a frame without EXIF -> no EXIF exposures.
    np.testing.assert_allclose(exif_exposure_values([ExifExposure(0.5), ExifExposure(2.0, 4.0)]), [0, 2])
    assert exif_exposure_values([ExifExposure(0.5), None]) is None


def render(linear: np.ndarray, evs, *, rng, response=linear_to_srgb, noise=0.01, quality=90) -> list[np.ndarray]:
    """A camera: exposure 2**ev, signal-dependent noise, clipping, response, 8 bit, JPEG."""
    frames = []
    for ev in evs:
        lin = linear * 2.0 ** ev
        sigma = np.sqrt(noise ** 2 * 0.1 + noise ** 2 * np.clip(lin, 0, 1))
        lin = np.clip(lin + rng.normal(0, 1, lin.shape) * sigma, 0, 1)
        u8 = np.clip(response(lin.astype(np.float32)) * 255 + 0.5, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255)
    return frames


@pytest.mark.parametrize("evs", [(-1.0, 0.0, 1.0), (2.0, -2.0, 0.0, 4.0)])
def test_estimate_synthetic_bracket_any_order(evs):
    rng = np.random.default_rng(0)
    linear = srgb_to_linear(synthetic_scene(96, 128)) * 0.5
    est = estimate_exposures(render(linear, evs, rng=rng))
    np.testing.assert_allclose(est.ev, np.array(evs) - evs[0], atol=0.1)
    np.testing.assert_allclose(est.times / est.times.min(), 2.0 ** (np.array(evs) - min(evs)), rtol=0.08)
    assert est.residual < 0.1 and est.weak == []


def test_estimate_uses_a_given_response_table():
    # A gamma-1.8 camera: with the right lookup table the estimate is right; assuming sRGB is not.
    rng = np.random.default_rng(1)
    linear = srgb_to_linear(synthetic_scene(96, 128)) * 0.5
    frames = render(linear, (0.0, 1.5), rng=rng, response=lambda x: x ** (1 / 1.8), noise=0.002)
    lut = np.linspace(0, 1, 256) ** 1.8 + 1e-6
    assert estimate_exposures(frames, response=lut).ev[1] == pytest.approx(1.5, abs=0.05)
    assert estimate_exposures(frames, response=1.8).ev[1] == pytest.approx(1.5, abs=0.05)
    assert abs(estimate_exposures(frames).ev[1] - 1.5) > 0.1


def test_frames_without_common_well_exposed_pixels_are_linked_weakly():
    flat = np.full((32, 32, 3), 0.5, np.float32)
    black = np.full((32, 32, 3), 0.02, np.float32)
    est = estimate_exposures([black, flat])
    assert est.weak == [0, 1]
    assert est.ev[1] > 0  # ordered by mean linear value


def test_bad_arguments():
    frame = synthetic_scene()
    with pytest.raises(ValueError, match="at least 2"):
        estimate_exposures([frame])
    with pytest.raises(ValueError, match="one size"):
        estimate_exposures([frame, frame[:10]])
    with pytest.raises(ValueError, match="well_exposed"):
        estimate_exposures([frame, frame], well_exposed=(0.9, 0.1))
    with pytest.raises(ValueError, match="lookup table"):
        estimate_exposures([frame, frame], response=np.ones(10))


@pytest.mark.realdata
def test_estimate_on_brackets_rendered_from_cc0_hdr(shared_data):
    """Brackets rendered from true radiance through the sRGB camera response, noise and JPEG:
    every frame's estimated exposure is within 0.1 EV of the truth (steps of 0.5 to 3 EV)."""
    openexr = pytest.importorskip("OpenEXR", reason="reading the CC0 .exr panoramas needs the OpenEXR package")
    paths = sorted((shared_data / "hdri-cc0").glob("*.exr"))
    assert len(paths) == 8
    rng = np.random.default_rng(0)
    worst = 0.0
    for path in paths:
        with openexr.File(str(path)) as f:
            radiance = np.asarray(f.channels()["RGB"].pixels, np.float32)
        # Half size keeps the test fast; the estimate works on a 256-px reduction anyway.
        radiance = cv2.resize(radiance, (radiance.shape[1] // 2, radiance.shape[0] // 2), interpolation=cv2.INTER_AREA)
        radiance = radiance * (0.18 / np.median(radiance.mean(-1)))  # middle grey at 0 EV
        # SICE's brackets step by 0.5 to 3 EV (DESIGN.md): 5 frames at 0.5 and 1 EV, 3 at 2 and 3.
        for evs in ([-1, -0.5, 0, 0.5, 1], [-2, -1, 0, 1, 2], [-2, 0, 2], [-3, 0, 3]):
            evs = np.array(evs, dtype=np.float64)
            est = estimate_exposures(render(radiance, evs, rng=rng))
            worst = max(worst, float(np.abs(est.ev - (evs - evs[0])).max()))
    assert worst <= 0.1
