"""Exposure fusion of Mertens, Kautz and Van Reeth (2007), through OpenCV's ``MergeMertens``.

Each pixel of each frame gets a weight, the product of its local contrast (absolute Laplacian of
the grey image), colour saturation (standard deviation of R, G, B) and well-exposedness
(Gaussian of the distance to 0.5, sigma 0.2), each raised to a power; the frames are then
blended in a Laplacian pyramid with the Gaussian pyramid of the normalised weights [1]_.

References
----------
.. [1] T. Mertens, J. Kautz, F. Van Reeth, "Exposure fusion", Pacific Graphics 2007,
   pp. 382-390. doi:10.1109/PG.2007.17
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ._common import bgr_to_rgb, to_u8_bgr


def mertens(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None = None, *,
            contrast_weight: float = 1.0, saturation_weight: float = 1.0,
            exposure_weight: float = 1.0) -> np.ndarray:
    """Mertens et al. 2007 exposure fusion (no exposure times needed).

    Parameters
    ----------
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        Aligned RGB frames.
    exposure_times : ignored
        Accepted for the common generator signature.
    contrast_weight, saturation_weight, exposure_weight : float
        Exponents of the three quality measures (1, 1, 1 in the paper).

    Returns
    -------
    (H, W, 3) float32 ndarray, unclipped (the pyramid blend can overshoot [0, 1] slightly).
    """
    # OpenCV's MergeMertens divides its input by 255 whatever the dtype, so it is fed 8-bit
    # frames (the sources are 8-bit photographs; also 2.5x faster than float input).
    merge = cv2.createMergeMertens(contrast_weight, saturation_weight, exposure_weight)
    return bgr_to_rgb(merge.process([to_u8_bgr(f) for f in frames]))


def mertens_exposedness(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None = None) -> np.ndarray:
    """Mertens et al. 2007 fusion weighted by well-exposedness and contrast only (no saturation term).

    The saturation measure favours the most colourful frame, which in SICE's bright outdoor
    scenes is often an under-exposed one; leaving it out gives a brighter, less saturated
    reference, a distinct candidate for the subjective choice (the paper's weights are a
    free parameter, section 3.1 of [1]_ in the module docstring).
    """
    return mertens(frames, contrast_weight=1.0, saturation_weight=0.0, exposure_weight=1.0)
