"""Gradient-domain high dynamic range compression of Fattal, Lischinski and Werman (2002).

Large luminance gradients are attenuated, small ones kept or slightly enlarged, and the image is
rebuilt from the attenuated gradient field. On the log luminance ``H``, a Gaussian pyramid
``H_0 .. H_d`` gives the gradients ``grad H_k`` by central differences divided by ``2^(k+1)``; at
every level the scale factor ``phi_k = (alpha / |grad H_k|) (|grad H_k| / alpha)^beta``, with
``alpha`` 0.1 times the level's average gradient magnitude, is < 1 for gradients above ``alpha``
and > 1 below. The factors are propagated from the coarsest level down,
``Phi_k = upsample(Phi_(k+1)) phi_k``, and ``Phi_0`` multiplies the full-resolution forward
differences of ``H``; the compressed log luminance ``I`` solves the Poisson equation
``laplacian(I) = div(G)`` with Neumann boundaries. Colour: ``C_out = (C_in / L_in)^s L_out``
[1]_.

Choices: ``beta = 0.85`` and saturation ``s = 0.5`` (the paper recommends 0.8-0.9 and 0.4-0.6);
the coarsest level is the last whose shorter side is at least 32 pixels (as in the paper);
``|grad H_k|`` has ``1e-4`` added so that flat regions get a finite factor; the Poisson equation
is solved exactly by the discrete cosine transform
(:func:`sice.fusion.gradient.poisson_neumann`) where the paper uses a multigrid solver. The
result, defined up to a constant, has its 99.5th luminance percentile mapped to 1, then goes
through display gamma 2.2 and the common black/white-point stretch
(:func:`sice.fusion.tonemap.auto_levels`).

References
----------
.. [1] R. Fattal, D. Lischinski, M. Werman, "Gradient domain high dynamic range compression",
   ACM Trans. Graph. 21(3):249-256 (SIGGRAPH 2002). doi:10.1145/566654.566573
"""
from __future__ import annotations

import cv2
import numpy as np

from .gradient import poisson_neumann
from .tonemap import display_encode, radiance_and_luminance

#: Attenuation exponent, ``alpha`` as a fraction of the mean gradient magnitude, and colour
#: saturation exponent.
BETA = 0.85
ALPHA_FRACTION = 0.1
SATURATION = 0.5
#: The pyramid stops at the last level whose shorter side is at least this.
MIN_LEVEL_SIDE = 32
#: Added to gradient magnitudes, so that perfectly flat regions get a finite factor.
_GRAD_EPS = 1e-4


def attenuation(magnitude: np.ndarray, alpha: float, beta: float = BETA) -> np.ndarray:
    """The paper's scale factor ``phi = (alpha / |g|) (|g| / alpha)^beta`` for gradient magnitudes ``|g|``.

    Parameters
    ----------
    magnitude : ndarray
        Gradient magnitudes, > 0.
    alpha, beta : float
        Magnitude left unchanged, and the attenuation exponent.

    Returns
    -------
    ndarray of the same shape: 1 at ``alpha``, ``(|g| / alpha)^(beta - 1)`` elsewhere.
    """
    return (alpha / magnitude) * (magnitude / alpha) ** beta


def _central_gradient_magnitude(h: np.ndarray, level: int) -> np.ndarray:
    padded = np.pad(h, 1, mode="edge")
    gx = (padded[1:-1, 2:] - padded[1:-1, :-2]) / 2.0 ** (level + 1)
    gy = (padded[2:, 1:-1] - padded[:-2, 1:-1]) / 2.0 ** (level + 1)
    return np.sqrt(gx * gx + gy * gy) + _GRAD_EPS


def attenuation_map(log_lum: np.ndarray, beta: float = BETA) -> np.ndarray:
    """``Phi_0``: the full-resolution gradient scale factors, accumulated over the pyramid.

    Parameters
    ----------
    log_lum : (H, W) float ndarray
        Natural log of the luminance.
    beta : float
        Attenuation exponent (1 gives a map of ones: no compression).

    Returns
    -------
    (H, W) float64 ndarray > 0.
    """
    levels = [np.asarray(log_lum, dtype=np.float64)]
    while min(levels[-1].shape) // 2 >= MIN_LEVEL_SIDE:
        levels.append(cv2.pyrDown(levels[-1], borderType=cv2.BORDER_REFLECT))
    phi = None
    for k in range(len(levels) - 1, -1, -1):
        mag = _central_gradient_magnitude(levels[k], k)
        phi_k = attenuation(mag, ALPHA_FRACTION * float(mag.mean()), beta)
        if phi is not None:
            h, w = levels[k].shape
            phi_k = phi_k * cv2.resize(phi, (w, h), interpolation=cv2.INTER_LINEAR)
        phi = phi_k
    return phi


def compress_log_luminance(log_lum: np.ndarray, beta: float = BETA) -> np.ndarray:
    """The compressed log luminance ``I``: Poisson reconstruction of the attenuated gradients.

    Parameters
    ----------
    log_lum : (H, W) float ndarray
        Natural log of the luminance.
    beta : float
        Attenuation exponent.

    Returns
    -------
    (H, W) float64 ndarray, zero mean (the solution is defined up to a constant). With
    ``beta = 1`` it is ``log_lum`` minus its mean.
    """
    h = np.asarray(log_lum, dtype=np.float64)
    phi = attenuation_map(h, beta)
    gx = np.zeros_like(h)
    gy = np.zeros_like(h)
    gx[:, :-1] = np.diff(h, axis=1) * phi[:, :-1]
    gy[:-1, :] = np.diff(h, axis=0) * phi[:-1, :]
    # Divergence by backward differences, the adjoint of the forward differences above.
    div = gx.copy()
    div[:, 1:] -= gx[:, :-1]
    div += gy
    div[1:, :] -= gy[:-1, :]
    return poisson_neumann(div)


def fattal(radiance: np.ndarray) -> np.ndarray:
    """Fattal et al. 2002 gradient-domain compression [1]_, then gamma 2.2 and auto levels.

    Parameters
    ----------
    radiance : (H, W, 3) float32 ndarray >= 0
        Linear RGB radiance, any scale.

    Returns
    -------
    (H, W, 3) float32 ndarray, display-referred, in [0, 1].
    """
    rad, lum, floor = radiance_and_luminance(radiance)
    compressed = compress_log_luminance(np.log(lum))
    compressed -= np.percentile(compressed, 99.5)
    lum_out = np.exp(compressed).astype(np.float32)
    ratio = np.maximum(rad, floor) / lum[..., None]
    return display_encode(ratio ** SATURATION * lum_out[..., None])
