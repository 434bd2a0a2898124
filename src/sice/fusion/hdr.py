"""Stack-based HDR: camera-response recovery and radiance merge through OpenCV's photo module.

Debevec and Malik 1997: the inverse camera response g (one curve per channel) is the
least-squares fit of log g on sampled pixels with a smoothness term; the radiance is the
hat-weighted mean of ``log g(Z) - log t`` over the frames [1]_.

OpenCV's Robertson et al. [2]_ pair (``CalibrateRobertson`` + ``MergeRobertson``) is not used:
calibration iterates over all pixels (10 s for seven 512x512 frames on this machine's loaded
cores), and the merge leaves coloured specks where the channels' weights differ (seen on
sice512/001 even with the Debevec response). The Robertson method is still among the
generators through ``pfshdrcalibrate`` (module :mod:`sice.fusion.external`).

The radiance map of a stack is shared inside :func:`sice.fusion.shared_radiance`: every
tone-mapping generator of the same stack reuses it.

References
----------
.. [1] P. E. Debevec, J. Malik, "Recovering high dynamic range radiance maps from photographs",
   SIGGRAPH 1997, pp. 369-378. doi:10.1145/258734.258884
.. [2] M. A. Robertson, S. Borman, R. L. Stevenson, "Estimation-theoretic approach to dynamic
   range enhancement using multiple exposures", J. Electronic Imaging 12(2):219-228, 2003.
   doi:10.1117/1.1557695
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ._common import radiance_map, stack_key, to_u8_bgr


def _normalised_times(exposure_times: np.ndarray) -> np.ndarray:
    """Relative times scaled to a geometric mean of 1 (any scale is accepted as input)."""
    t = np.asarray(exposure_times, dtype=np.float64)
    return (t / np.exp(np.mean(np.log(t)))).astype(np.float32)


def _merge(frames: Sequence[np.ndarray], exposure_times: np.ndarray) -> np.ndarray:
    frames8 = [to_u8_bgr(f) for f in frames]
    times = _normalised_times(exposure_times)

    def compute() -> np.ndarray:
        from threadpoolctl import threadpool_limits

        # OpenCV solves for the response with its bundled OpenBLAS, whose sums change with the
        # number of threads (up to 6/255 in candidates): one thread makes a scene's candidates
        # the same on a laptop, in a worker process and on a cluster node
        with threadpool_limits(limits=1, user_api="blas"):
            crf = cv2.createCalibrateDebevec().process(frames8, times)
        hdr = cv2.createMergeDebevec().process(frames8, times, crf)
        hdr = np.nan_to_num(hdr[..., ::-1].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return np.ascontiguousarray(np.maximum(hdr, 0.0))

    return radiance_map(stack_key("debevec", frames8, times), compute)


def debevec_radiance(frames: Sequence[np.ndarray], exposure_times: np.ndarray) -> np.ndarray:
    """Relative scene radiance by Debevec and Malik 1997 (CRF recovery + merge).

    Parameters
    ----------
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        Aligned RGB frames (quantised to 8 bits, as the method models 8-bit pixel values).
    exposure_times : (N,) ndarray
        Relative exposure times, any positive scale.

    Returns
    -------
    (H, W, 3) float32 ndarray >= 0, read-only (shared through the cache), linear RGB radiance
    up to an unknown scale.
    """
    return _merge(frames, exposure_times)
