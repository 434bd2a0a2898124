"""sice.stack.alignment: known synthetic shifts are recovered (MTB, ECC), failed MTB shifts are
rejected, the intensity mapping undoes a known tone change despite outliers, and the ghost score
separates a static sequence from one with a moving object."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sice.stack.alignment import (align_frames, assess, estimate_shifts, ghost_score, intensity_mapping,
                            shift_image)
from sice.imageops import linear_to_srgb

TRUE_SHIFTS = [(0, 0), (3, -2), (-5, 4)]  # content displacement of each frame (dx, dy)
EVS = (-1.0, 0.0, 1.0)


def textured_linear(size=256, seed=3) -> np.ndarray:
    """Non-periodic texture (blurred noise) in linear light: no false matches for MTB."""
    rng = np.random.default_rng(seed)
    lin = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 3)
    lin = (lin - lin.min()) / (lin.max() - lin.min()) * 0.5 + 0.02
    return lin ** 2


def moved_bracket(shifts=TRUE_SHIFTS, evs=EVS) -> list[np.ndarray]:
    lin = textured_linear()
    return [shift_image(linear_to_srgb(lin * 2.0 ** ev), dx, dy) for (dx, dy), ev in zip(shifts, evs)]


def test_shift_image_moves_content():
    img = np.zeros((10, 12, 3), np.float32)
    img[4, 5] = 1
    moved = shift_image(img, 2, -3)
    assert moved[1, 7].tolist() == [1, 1, 1] and moved.sum() == 3


@pytest.mark.parametrize("reference", [0, 1])
def test_mtb_and_ecc_recover_known_shifts(reference):
    frames = moved_bracket()
    expected = -(np.array(TRUE_SHIFTS, float) - TRUE_SHIFTS[reference])  # undo each displacement
    mtb = estimate_shifts(frames, reference=reference)
    assert np.abs(mtb - expected).max() <= 1  # MTB is accurate to a pixel
    result = align_frames(frames, reference=reference, ecc=True)
    assert result.refined
    np.testing.assert_allclose(result.shifts, expected, atol=0.1)
    # The aligned frames agree with the reference where no border was filled in.
    ref = result.frames[reference]
    inner = (slice(8, -8), slice(8, -8))
    g = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[inner] for f in result.frames]
    for i in range(3):
        assert np.corrcoef(g[i].ravel(), cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY)[inner].ravel())[0, 1] > 0.98


def test_subpixel_shift_refined_by_ecc():
    frames = moved_bracket(shifts=[(0, 0), (1.5, -0.5), (0, 0)])
    result = align_frames(frames, reference=0, ecc=True)
    np.testing.assert_allclose(result.shifts[1], [-1.5, 0.5], atol=0.1)


def test_failed_mtb_on_a_featureless_frame_is_rejected():
    frames = moved_bracket()
    frames[2] = np.full_like(frames[2], 0.995)  # blown out: nothing to register
    shifts = estimate_shifts(frames, reference=1)
    assert shifts[2].tolist() == [0.0, 0.0]


def test_intensity_mapping_undoes_exposure_change_despite_outliers():
    rng = np.random.default_rng(0)
    a = (rng.random((64, 64)) ** 2 * 255).astype(np.uint8)
    curve = np.clip(255 * (np.arange(256) / 255) ** 0.6, 0, 255)  # a brighter exposure, by hand
    b = curve[a].round().astype(np.uint8)
    np.testing.assert_allclose(intensity_mapping(a, b)[a], b, atol=1)
    outliers = b.copy()
    outliers[:, :12] = 255 - outliers[:, :12]  # 19 % of the pixels are something else
    mapped = intensity_mapping(a, outliers)[a]
    np.testing.assert_allclose(mapped[:, 12:], b[:, 12:], atol=3)


def test_ghost_score_static_vs_moving_object():
    static = moved_bracket(shifts=[(0, 0)] * 3)
    score, per_pair = ghost_score(static)
    assert score < 0.01 and len(per_pair) == 2
    moving = [f.copy() for f in static]
    # A light object appears in the last frame, brighter than any of the texture there (<= 0.76).
    moving[2][60:140, 60:140] = 0.92
    score_moving, per_pair_moving = ghost_score(moving)
    # The square covers 80*80/256**2 ~ 9.8 % of the image, all judged pixels there disagree.
    assert 0.06 < score_moving < 0.15 and per_pair_moving[0] < 0.01
    flags = assess(align_frames(moving, ecc=False))["flags"]
    assert flags == ["ghosts"]


def test_motion_flag_on_large_shift():
    frames = moved_bracket(shifts=[(0, 0), (0, 0), (0, 12)])  # MTB reaches 15 px at 256 px
    report = assess(align_frames(frames, reference=0, ecc=False), max_shift_fraction=0.04)
    assert report["max_shift"] == pytest.approx(12, abs=1) and report["flags"] == ["motion"]
    assert assess(align_frames(frames, reference=0, ecc=False))["flags"] == []  # 0.06 * 256 > 12


def test_bad_arguments():
    frames = moved_bracket()
    with pytest.raises(ValueError, match="at least 2"):
        align_frames(frames[:1])
    with pytest.raises(ValueError, match="one shape"):
        align_frames([frames[0], frames[1][:100]])
    with pytest.raises(ValueError, match="reference"):
        estimate_shifts(frames, reference=5)
