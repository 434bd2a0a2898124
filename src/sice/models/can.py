"""``can32``: the context aggregation network (CAN) of Chen, Xu and Koltun [1]_.

A fully convolutional network at full resolution whose 3x3 convolutions are dilated by
1, 2, 4, ..., 2^(d-3) (Yu and Koltun [2]_), so the receptive field grows exponentially with depth
at a constant cost per pixel. The paper uses it to approximate image operators (tone mapping,
style, dehazing); Cai et al. [3]_ compare against it trained on SICE, as we do.

Following [1]_, Sec. 3, with layers L^0 (input) ... L^d (output):

* L^s, 1 <= s <= d - 1 (eq. 1): ``L^s_i = Phi(Psi^s(b^s_i + sum_j L^{s-1}_j *_{r_s} K^s_ij))``
  with 3x3 kernels K, dilation ``r_s = 2^(s-1)`` for s <= d - 2 and ``r_{d-1} = 1``;
* ``Psi^s(x) = lambda_s x + mu_s BN(x)`` (eq. 2, "adaptive normalisation"), lambda_s and mu_s
  scalars learned with the network, BN batch normalisation [4]_;
* ``Phi(x) = max(0.2 x, x)``, the leaky ReLU;
* L^d: a 1x1 convolution to 3 channels, no normalisation or non-linearity.

With d = 9 and 32 channels this is the paper's recommended CAN32. Every output pixel depends on
the input within radius ``sum_s r_s = (2^(d-2) - 1) + 1 = 2^(d-2)`` (128 for d = 9); in eval mode
BatchNorm is a fixed per-channel affine map, so the network is translation-equivariant and
:mod:`sice.enhancement` tiles it exactly with that overlap (a 20 MP photo is never held as one
32-channel activation).

Deviations from [1]_, and why:

* Identity initialisation: the paper initialises every layer to the identity (Sec. 3, after
  [2]_). A pure identity over 32 channels leaves channels 3..31 at zero with zero gradient
  forever (the 1x1 output layer reads only channels 0..2, so nothing ever flows back into the
  others); we add N(0, 1e-3^2) noise to every kernel, as [2]_, Sec. 3, does for the same reason.
  The output still starts within ~1e-2 of the input.
* The 1x1 output layer is identity-initialised too (on channels 0..2), so training starts from
  "output = input", which matters for short CPU budgets.
* BN keeps its own per-channel affine (gamma, beta); the paper's equation does not say whether
  it does. It adds 2 x 32 parameters per layer and nothing at inference (folded into the affine).

References
----------
.. [1] Q. Chen, J. Xu, V. Koltun, "Fast Image Processing with Fully-Convolutional Networks",
   ICCV 2017.
.. [2] F. Yu, V. Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016.
.. [3] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE TIP 27(4), 2018.
.. [4] S. Ioffe, C. Szegedy, "Batch Normalization", ICML 2015.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ._registry import ModelConfig, register_model

#: Paper's depth d (layers after the input, the 1x1 output layer included).
DEPTH = 9
#: Slope of the leaky ReLU for negative inputs ([1]_, Sec. 3).
LRELU_SLOPE = 0.2
#: Std of the symmetry-breaking noise added to the identity initialisation.
INIT_NOISE = 1e-3


def dilations(depth: int) -> list[int]:
    """Dilation of each 3x3 layer: 1, 2, 4, ..., 2^(depth-3), then 1 (``depth - 1`` layers)."""
    if depth < 3:
        raise ValueError(f"depth must be >= 3 (two 3x3 layers and the 1x1 output), got {depth}")
    return [2 ** s for s in range(depth - 2)] + [1]


def receptive_radius(depth: int = DEPTH) -> int:
    """Pixels of context each side of an output pixel: the sum of the 3x3 layers' dilations."""
    return sum(dilations(depth))


class AdaptiveNorm(nn.Module):
    """``lambda * x + mu * BN(x)`` ([1]_, eq. 2); lambda starts at 1, mu at 0.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.lam = nn.Parameter(torch.ones(()))
        self.mu = nn.Parameter(torch.zeros(()))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + self.mu * self.bn(x)


def _identity_(conv: nn.Conv2d, noise: float) -> None:
    """Identity kernel (centre tap 1 on the diagonal of min(c_in, c_out) channels) + noise."""
    with torch.no_grad():
        w = conv.weight
        w.normal_(0.0, noise)
        c = w.shape[-1] // 2
        n = min(w.shape[0], w.shape[1])
        idx = torch.arange(n)
        w[idx, idx, c, c] += 1.0
        if conv.bias is not None:
            conv.bias.zero_()


class CAN(nn.Module):
    """Context aggregation network (see the module docstring for equations and deviations).

    Parameters
    ----------
    depth : int
        d of the paper: ``depth - 1`` dilated 3x3 layers plus the 1x1 output layer.
    width : int
        Feature channels of every hidden layer (32 for CAN32).

    Notes
    -----
    ``forward(x)``: (B, 3, H, W) RGB in [0, 1], any H and W -> (B, 3, H, W), unclipped (the
    enhancer and validation clip). Zero padding equal to each layer's dilation keeps the size.
    """

    def __init__(self, depth: int = DEPTH, width: int = 32):
        super().__init__()
        if width < 3:
            raise ValueError(f"width must be >= 3, got {width}")
        self.depth, self.width = depth, width
        layers = []
        cin = 3
        for r in dilations(depth):
            conv = nn.Conv2d(cin, width, 3, padding=r, dilation=r)
            _identity_(conv, INIT_NOISE)
            layers += [conv, AdaptiveNorm(width), nn.LeakyReLU(LRELU_SLOPE, inplace=True)]
            cin = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, 3, 1)
        _identity_(self.out, INIT_NOISE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (B, 3, H, W), got {tuple(x.shape)}")
        return self.out(self.body(x))


@register_model(ModelConfig(
    name="can32",
    description="CAN32 (Chen, Xu, Koltun 2017): 9-layer dilated context aggregation network, "
                "32 channels, full resolution",
    fully_convolutional=True,
    receptive_radius=receptive_radius(DEPTH),
    paper="Q. Chen, J. Xu, V. Koltun, Fast Image Processing with Fully-Convolutional Networks, ICCV 2017",
))
def can32(width: int = 32) -> CAN:
    # depth is fixed: the registered receptive_radius (tile overlap) is computed for DEPTH
    return CAN(depth=DEPTH, width=width)
