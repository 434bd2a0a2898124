"""The loss layers of the original SICE release, as kornia-style function + ``nn.Module`` pairs.

Each function reproduces the forward value and the backward of the authors' Caffe layer
(``ssim_loss_layer``, ``regularization_layer``, ``L1_loss_layer``) or of Caffe's
``EuclideanLoss``, including their normalisation by the batch size ``N`` only (not by the number
of pixels). :func:`build_loss` composes weighted terms by name for training.

Tensors are ``(B, C, H, W)`` (any shape with the batch first for the pixel-wise losses), images
in [0, 1]. Every loss returns a 0-d tensor.

References
----------
.. [1] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE Trans. Image Processing 27(4):2049-2062, 2018; Caffe layers in
   the authors' release.
.. [2] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image Quality Assessment: From
   Error Visibility to Structural Similarity", IEEE Trans. Image Processing 13(4):600-612, 2004.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "LOSS_NAMES",
    "REGULARIZATION_DEFAULTS",
    "CombinedLoss",
    "EuclideanLoss",
    "L1Loss",
    "RegularizationLoss",
    "SSIMLoss",
    "build_loss",
    "euclidean_loss",
    "l1_loss",
    "regularization_loss",
    "ssim_loss",
]


# -- SSIM ---------------------------------------------------------------------------------------
def _gaussian_window(kernel_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The layer's window: exp(-((h-k/2)^2 + (w-k/2)^2) / (2 sigma^2)), sigma = 2k/12, sum 1.

    Centred at k/2 = 4.0 for k = 8, i.e. half a pixel off the window's centre, as in the release.
    """
    sigma = 2 * kernel_size / 12.0
    pos = torch.arange(kernel_size, dtype=torch.float64) - kernel_size / 2.0
    g1 = torch.exp(-pos**2 / (2 * sigma**2))
    g = torch.outer(g1, g1)  # the 2-D Gaussian is separable; normalising the product is the same
    return (g / g.sum()).to(dtype=dtype, device=device)


def _n_windows(size: int, kernel_size: int, stride: int) -> int:
    # Caffe's pooled size: ceil((size - k) / s) + 1, the last window truncated at the border.
    return max(1, math.ceil((size - kernel_size) / stride) + 1)


def _check_pair(pred: torch.Tensor, target: torch.Tensor, *, ndim: int | None = None) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"pred and target must be tensors, got {type(pred)} and {type(target)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if ndim is not None and pred.ndim != ndim:
        raise ValueError(f"pred must be (B, C, H, W), got shape {tuple(pred.shape)}")
    if pred.ndim == 0 or pred.shape[0] == 0:
        raise ValueError(f"pred must have a non-empty batch axis, got shape {tuple(pred.shape)}")


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, *, kernel_size: int = 8, stride: int = 8,
              c1: float = 1e-4, c2: float = 1e-3) -> torch.Tensor:
    """SSIM loss of the release's ``SSIMLoss`` Caffe layer: sum over windows of (1 - SSIM) / N.

    Windows of ``kernel_size`` with top-left corners at ``(stride i, stride j)``; windows that
    cross the bottom or right border are truncated and NOT renormalised (their weights sum to
    less than 1). Means, variances and the covariance are weighted by the layer's Gaussian
    window, per channel; SSIM = l * cs [2]_ with
    ``l = (2 mx my + c1) / (mx^2 + my^2 + c1)``, ``cs = (2 sxy + c2) / (sx^2 + sy^2 + c2)``.

    Parameters
    ----------
    pred : (B, C, H, W) tensor
        Prediction in [0, 1]; receives the gradient.
    target : (B, C, H, W) tensor
        Reference in [0, 1]; detached (the layer back-propagates to the prediction only).
    kernel_size, stride : int, keyword-only
        Window size and step (release: 8 and 8). The Gaussian's sigma is ``2 kernel_size / 12``.
    c1, c2 : float, keyword-only
        Stabilisers (release README: 1e-4 and 1e-3).

    Returns
    -------
    loss : 0-d tensor
        ``sum_{b, c, windows} (1 - SSIM) / B``; 0 for identical images.

    Raises
    ------
    ValueError
        For mismatched or non-4-D shapes or non-positive parameters.
    """
    _check_pair(pred, target, ndim=4)
    if kernel_size < 1 or stride < 1:
        raise ValueError(f"kernel_size and stride must be >= 1, got {kernel_size} and {stride}")
    if not (c1 > 0 and c2 > 0):
        raise ValueError(f"c1 and c2 must be > 0, got {c1} and {c2}")
    b, c, h, w = pred.shape
    x, y = pred, target.detach()
    nh, nw = _n_windows(h, kernel_size, stride), _n_windows(w, kernel_size, stride)
    # Zero padding at the bottom/right is exactly the truncation without renormalisation.
    pad_h = (nh - 1) * stride + kernel_size - h
    pad_w = (nw - 1) * stride + kernel_size - w
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    stack = F.pad(stack, (0, max(pad_w, 0), 0, max(pad_h, 0)))
    window = _gaussian_window(kernel_size, pred.dtype, pred.device)
    weight = window.expand(5 * c, 1, kernel_size, kernel_size)
    moments = F.conv2d(stack, weight, stride=stride, groups=5 * c)[..., :nh, :nw]
    mx, my, exx, eyy, exy = moments.split(c, dim=1)
    sxx = exx - mx * mx
    syy = eyy - my * my
    sxy = exy - mx * my
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return (1 - lum * cs).sum() / b


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss` (the release's ``SSIMLoss`` layer)."""

    def __init__(self, *, kernel_size: int = 8, stride: int = 8, c1: float = 1e-4,
                 c2: float = 1e-3):
        super().__init__()
        self.kernel_size, self.stride, self.c1, self.c2 = kernel_size, stride, c1, c2

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ssim_loss(pred, target, kernel_size=self.kernel_size, stride=self.stride,
                         c1=self.c1, c2=self.c2)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, c1={self.c1}, c2={self.c2}"


# -- Regularization -----------------------------------------------------------------------------
# The layer's caffe.proto leaves every level and value at 0. Defaults here: equal-width tone bins
# over [0, 1], each pulling towards its centre (2, 4 or 8 bins for One, Two, Three).
REGULARIZATION_DEFAULTS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "one": ((0.5,), (0.25, 0.75)),
    "two": ((0.25, 0.5, 0.75), (0.125, 0.375, 0.625, 0.875)),
    "three": (tuple(k / 8 for k in range(1, 8)), tuple((2 * k + 1) / 16 for k in range(8))),
}
_REG_MODES = ("zero", "one", "two", "three")
_REG_NORMS = ("l2", "l1")


def _check_reg_args(mode: str, norm: str) -> None:
    if mode not in _REG_MODES:
        raise ValueError(f"mode must be one of {_REG_MODES}, got {mode!r}")
    if norm not in _REG_NORMS:
        raise ValueError(f"norm must be one of {_REG_NORMS}, got {norm!r}")


def _regularization_target(x: torch.Tensor, mode: str, levels: Sequence[float] | None,
                           values: Sequence[float] | None, regular: float) -> torch.Tensor:
    """T(x) of the layer, without gradient: x < 0 -> 0, x > 1 -> 1, bins in between."""
    if mode == "zero":
        return torch.full_like(x, regular)
    default_levels, default_values = REGULARIZATION_DEFAULTS[mode]
    levels = tuple(default_levels if levels is None else levels)
    values = tuple(default_values if values is None else values)
    n_bins = len(default_values)
    if len(levels) != n_bins - 1 or len(values) != n_bins:
        raise ValueError(f"mode {mode!r} needs {n_bins - 1} levels and {n_bins} values, got "
                         f"{len(levels)} and {len(values)}")
    if list(levels) != sorted(levels):
        raise ValueError(f"levels must be increasing, got {levels}")
    xd = x.detach()
    lv = torch.tensor(levels, dtype=xd.dtype, device=xd.device)
    vv = torch.tensor(values, dtype=xd.dtype, device=xd.device)
    # Bin k holds level_k <= x < level_{k+1}; the last bin is closed at 1 ("<= 1" in the layer).
    target = vv[torch.bucketize(xd, lv, right=True)]
    target = torch.where(xd < 0, torch.zeros_like(xd), target)
    return torch.where(xd > 1, torch.ones_like(xd), target)


class _FaithfulL1(torch.autograd.Function):
    """The release's L1 regularization: forward sum|d| / (2N), backward d / N (not sign(d) / N)."""

    @staticmethod
    def forward(ctx, diff: torch.Tensor, n: int) -> torch.Tensor:
        ctx.save_for_backward(diff)
        ctx.n = n
        return diff.abs().sum() / (2 * n)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (diff,) = ctx.saved_tensors
        return grad_out * diff / ctx.n, None


def regularization_loss(x: torch.Tensor, mode: str = "zero", *,
                        levels: Sequence[float] | None = None,
                        values: Sequence[float] | None = None, regular: float = 0.5,
                        norm: str = "l2", faithful_l1_bug: bool = True) -> torch.Tensor:
    """Distance of ``x`` to a tone target ``T(x)``: the release's ``Regularization`` Caffe layer.

    ``T`` carries no gradient. ``"zero"``: ``T = regular`` everywhere. ``"one"``, ``"two"``,
    ``"three"``: piecewise-constant targets with 2, 4, 8 bins: ``T = values[k]`` for
    ``levels[k-1] <= x < levels[k]``, the last bin closed at 1, ``T = 0`` for ``x < 0`` and
    ``T = 1`` for ``x > 1``.

    Parameters
    ----------
    x : (B, ...) tensor
        Network output, batch first.
    mode : {"zero", "one", "two", "three"}
    levels, values : sequence of float, keyword-only
        Bin edges (1, 3 or 7, increasing) and targets (2, 4 or 8). Default
        :data:`REGULARIZATION_DEFAULTS`: equal-width bins over [0, 1] with their centres as
        targets (the release's caffe.proto leaves them all 0).
    regular : float, keyword-only
        Target of ``"zero"`` (caffe.proto default 0.5).
    norm : {"l2", "l1"}, keyword-only
        ``"l2"``: ``sum d^2 / (2N)``, gradient ``d / N``. ``"l1"``: see ``faithful_l1_bug``.
    faithful_l1_bug : bool, keyword-only
        With ``norm="l1"``: True (default) reproduces the release exactly, forward
        ``sum |d| / (2N)`` and backward ``d / N`` (the layer overwrites the sign it computed
        with the difference, so it trains like L2 while reporting half an L1). False gives a
        consistent L1: forward ``sum |d| / N``, gradient ``sign(d) / N``.

    Returns
    -------
    loss : 0-d tensor

    Raises
    ------
    ValueError
        For an unknown mode or norm, or levels/values of the wrong length or order.
    """
    _check_reg_args(mode, norm)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x must have a non-empty batch axis, got shape {tuple(x.shape)}")
    n = x.shape[0]
    diff = x - _regularization_target(x, mode, levels, values, regular)
    if norm == "l2":
        return (diff * diff).sum() / (2 * n)
    if faithful_l1_bug:
        return _FaithfulL1.apply(diff, n)
    return diff.abs().sum() / n


class RegularizationLoss(nn.Module):
    """Module form of :func:`regularization_loss` (the release's ``Regularization`` layer)."""

    def __init__(self, mode: str = "zero", *, levels: Sequence[float] | None = None,
                 values: Sequence[float] | None = None, regular: float = 0.5, norm: str = "l2",
                 faithful_l1_bug: bool = True):
        super().__init__()
        _check_reg_args(mode, norm)
        self.mode, self.levels, self.values = mode, levels, values
        self.regular, self.norm, self.faithful_l1_bug = regular, norm, faithful_l1_bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return regularization_loss(x, self.mode, levels=self.levels, values=self.values,
                                   regular=self.regular, norm=self.norm,
                                   faithful_l1_bug=self.faithful_l1_bug)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, norm={self.norm!r}, faithful_l1_bug={self.faithful_l1_bug}"


# -- pixel losses -------------------------------------------------------------------------------
def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The release's ``L1Loss`` layer: ``sum |pred - target| / N`` (N = batch size).

    Both inputs receive gradients (``+-sign(d) / N``), as in the layer.

    Parameters
    ----------
    pred, target : (B, ...) tensors of the same shape

    Returns
    -------
    loss : 0-d tensor
    """
    _check_pair(pred, target)
    return (pred - target).abs().sum() / pred.shape[0]


def euclidean_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Caffe's ``EuclideanLoss``, which trained all three released models: ``sum d^2 / (2N)``.

    Parameters
    ----------
    pred, target : (B, ...) tensors of the same shape

    Returns
    -------
    loss : 0-d tensor
    """
    _check_pair(pred, target)
    d = pred - target
    return (d * d).sum() / (2 * pred.shape[0])


class L1Loss(nn.Module):
    """Module form of :func:`l1_loss`."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return l1_loss(pred, target)


class EuclideanLoss(nn.Module):
    """Module form of :func:`euclidean_loss`."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return euclidean_loss(pred, target)


# -- composition --------------------------------------------------------------------------------
def _reg(mode: str, norm: str) -> Callable[[], nn.Module]:
    return lambda: RegularizationLoss(mode, norm=norm)


# name -> (builder, takes a target). The "_l1" regularizers keep the release's L1 backward bug.
_LOSSES: dict[str, tuple[Callable[[], nn.Module], bool]] = {
    "l2": (EuclideanLoss, True),
    "l1": (L1Loss, True),
    "ssim": (SSIMLoss, True),
    **{f"reg_{m}": (_reg(m, "l2"), False) for m in _REG_MODES},
    **{f"reg_{m}_l1": (_reg(m, "l1"), False) for m in _REG_MODES},
}
LOSS_NAMES: tuple[str, ...] = tuple(_LOSSES)


class CombinedLoss(nn.Module):
    """Weighted sum of named loss terms; see :func:`build_loss`.

    Attributes
    ----------
    weights : dict[str, float]
        Term name -> weight, in the order given.
    terms : nn.ModuleDict
        Term name -> loss module.
    """

    def __init__(self, spec: dict[str, float]):
        super().__init__()
        if not spec:
            raise ValueError("loss spec must name at least one term, got {}")
        for name, weight in spec.items():
            if name not in _LOSSES:
                raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSS_NAMES)}")
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                raise ValueError(f"weight of loss {name!r} must be a finite number >= 0, "
                                 f"got {weight!r}")
        self.weights = {name: float(w) for name, w in spec.items()}
        self.terms = nn.ModuleDict({name: _LOSSES[name][0]() for name in spec})

    def forward_terms(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted value of every term (for logging)."""
        return {name: (term(pred, target) if _LOSSES[name][1] else term(pred))
                for name, term in self.terms.items()}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = self.forward_terms(pred, target)
        return sum(self.weights[name] * value for name, value in parts.items())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.weights.items())


def build_loss(spec: dict[str, float]) -> CombinedLoss:
    """Compose weighted loss terms by name: ``build_loss({"l2": 1.0, "ssim": 0.1})``.

    Names (:data:`LOSS_NAMES`):

    - ``"l2"``: :func:`euclidean_loss` (the released models' training loss);
    - ``"l1"``: :func:`l1_loss`;
    - ``"ssim"``: :func:`ssim_loss` with the release's parameters (8, 8, 1e-4, 1e-3);
    - ``"reg_zero"``, ``"reg_one"``, ``"reg_two"``, ``"reg_three"``: :func:`regularization_loss`
      of the prediction alone, L2 norm, default levels/values;
    - the same with suffix ``"_l1"`` (``"reg_zero_l1"``, ...): L1 norm with the release's
      backward (``faithful_l1_bug=True``).

    Parameters
    ----------
    spec : dict[str, float]
        Term name -> weight (finite, >= 0).

    Returns
    -------
    loss : CombinedLoss
        ``loss(pred, target)`` -> 0-d tensor ``sum_k weight_k * term_k``;
        ``loss.forward_terms(pred, target)`` gives the unweighted terms.

    Raises
    ------
    ValueError
        For an empty spec, an unknown name or a bad weight.
    """
    return CombinedLoss(spec)
