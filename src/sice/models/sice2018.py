"""The three networks of the original SICE release (Cai, Gu, Zhang, TIP 2018), layer for layer.

Every attribute is named after the Caffe layer it re-creates (``conv_gA1`` ... ``conv_g17``,
``RIR``), so a ``.caffemodel`` ports by name: the blobs of layer ``X`` become ``X.weight`` and
``X.bias`` (see :mod:`sice.models.caffe`). All convolutions are 3x3, stride 1, padding 1, without
BatchNorm, initialised as Caffe's ``msra`` filler (He normal, fan-in) with zero bias, which is
what the released prototxts use.

=====================  =========  ===============================  ============================
registry name          params     input                            output
=====================  =========  ===============================  ============================
``sice2018``           560,323    rgb, aux = cat(L, D)             rgb + residual (Model 2)
``sice2018-residual``  557,443    rgb                              rgb + residual (Model 1)
``sice2018-perpixel``  655,408    rgb, aux = cat(L, D); H, W % 4   gain * rgb (Model 3)
=====================  =========  ===============================  ============================

``L`` and ``D`` are the luminance and detail layers of :func:`sice.decomposition.aux_tensor`.
No output is clipped: the release does not clip either.

References
----------
.. [1] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE Trans. Image Processing 27(4):2049-2062, 2018.
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Delving Deep into Rectifiers", ICCV 2015 (MSRA init).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import ModelConfig, register_model

PAPER = ("J. Cai, S. Gu, L. Zhang, Learning a Deep Single Image Contrast Enhancer from "
         "Multi-Exposure Images, IEEE TIP 27(4):2049-2062, 2018")

#: Block size of Model 3's space-to-depth ("Dtow" layers in the release).
PERPIXEL_BLOCK = 4


def _conv(cin: int, cout: int) -> nn.Conv2d:
    """3x3 / stride 1 / pad 1 convolution with Caffe ``msra`` init (std sqrt(2 / fan_in)), zero bias."""
    conv = nn.Conv2d(cin, cout, 3, stride=1, padding=1)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


def _check_inputs(rgb: torch.Tensor, aux: torch.Tensor | None, multiple: int = 1) -> None:
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must be (B, 3, H, W), got {tuple(rgb.shape)}")
    if aux is not None and (aux.ndim != 4 or aux.shape[1] != 2 or aux.shape[0] != rgb.shape[0]
                            or aux.shape[2:] != rgb.shape[2:]):
        raise ValueError(f"aux must be (B, 2, H, W) = cat(L, D) matching rgb {tuple(rgb.shape)}, "
                         f"got {tuple(aux.shape)}")
    if multiple > 1 and (rgb.shape[2] % multiple or rgb.shape[3] % multiple):
        raise ValueError(f"height and width must be multiples of {multiple}, got "
                         f"{rgb.shape[2]}x{rgb.shape[3]}")


class SICEResidual(nn.Module):
    """Model 1 "residual": 17 convolutions on RGB plus a global residual.

    ``conv_gA1`` 3->64 +ReLU, ``conv_gA2..gA4`` 64->64 +ReLU, ``conv_gA5`` 64->64 linear,
    ``conv_g6..g16`` 64->64 +ReLU, ``conv_g17`` 64->3, output = input + ``conv_g17``.
    (The linear ``conv_gA5`` is the fourth of the fifteen 64->64 layers: the release built it
    from Model 2's branch A, whose last layer has no ReLU.)

    Shapes: ``forward(rgb)`` with rgb (B, 3, H, W) in [0, 1], any H, W -> (B, 3, H, W), unclipped.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        self.conv_gA1 = _conv(3, width)
        for i in range(2, 6):
            setattr(self, f"conv_gA{i}", _conv(width, width))
        for i in range(6, 17):
            setattr(self, f"conv_g{i}", _conv(width, width))
        self.conv_g17 = _conv(width, 3)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        _check_inputs(rgb, None)
        x = rgb
        for i in range(1, 5):
            x = F.relu(getattr(self, f"conv_gA{i}")(x))
        x = self.conv_gA5(x)  # linear in the release
        for i in range(6, 17):
            x = F.relu(getattr(self, f"conv_g{i}")(x))
        return rgb + self.conv_g17(x)


class _TwoBranchTrunk(nn.Module):
    """What Models 2 and 3 share: two 5-conv branches, a concat, and a 6-conv trunk.

    Branch A (``conv_gA1..gA5``) and branch B (``conv_gB1..gB5``): first conv ``in_ch``->64
    +ReLU, three 64->64 +ReLU, one 64->64 linear. Concat (128) -> ``conv_g6`` 128->64 linear ->
    ``conv_g7..g11`` 64->64 +ReLU. The head (``conv_g12`` or ``RIR``) belongs to the subclass.
    """

    def __init__(self, in_ch: int, width: int = 64):
        super().__init__()
        for b in "AB":
            setattr(self, f"conv_g{b}1", _conv(in_ch, width))
            for i in range(2, 6):
                setattr(self, f"conv_g{b}{i}", _conv(width, width))
        self.conv_g6 = _conv(2 * width, width)
        for i in range(7, 12):
            setattr(self, f"conv_g{i}", _conv(width, width))

    def _branch(self, x: torch.Tensor, b: str) -> torch.Tensor:
        for i in range(1, 5):
            x = F.relu(getattr(self, f"conv_g{b}{i}")(x))
        return getattr(self, f"conv_g{b}5")(x)

    def trunk(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        x = self.conv_g6(torch.cat([self._branch(xa, "A"), self._branch(xb, "B")], dim=1))
        for i in range(7, 12):
            x = F.relu(getattr(self, f"conv_g{i}")(x))
        return x


class SICETwoStage(_TwoBranchTrunk):
    """Model 2 "Twostage", the paper's network: luminance and detail branches, fused trunk.

    Branch A sees cat(RGB, L), branch B cat(RGB, D) (4 channels each); ``conv_g12`` 64->3;
    output = RGB + ``conv_g12``.

    Shapes: ``forward(rgb, aux)`` with rgb (B, 3, H, W) in [0, 1] and aux (B, 2, H, W) =
    cat(L, D) -> (B, 3, H, W), unclipped. Any H, W.
    """

    def __init__(self, width: int = 64):
        super().__init__(4, width)
        self.conv_g12 = _conv(width, 3)

    def forward(self, rgb: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        _check_inputs(rgb, aux)
        x = self.trunk(torch.cat([rgb, aux[:, 0:1]], 1), torch.cat([rgb, aux[:, 1:2]], 1))
        return rgb + self.conv_g12(x)


class SICEPerPixel(_TwoBranchTrunk):
    """Model 3 "Perpixel": Model 2's body at 1/4 resolution predicting a per-pixel gain.

    cat(RGB, L) and cat(RGB, D) go through a 4x space-to-depth (4 -> 64 channels at H/4, W/4;
    channel ``c * 16 + dy * 4 + dx`` as :func:`torch.nn.functional.pixel_unshuffle`), the two
    branches and trunk of Model 2, ``RIR`` 64->48, a depth-to-space back to 3 channels at full
    resolution (:func:`~torch.nn.functional.pixel_shuffle`), and output = gain * RGB.

    The release's own channel order of its "Dtow" layers is unpublished; :mod:`sice.models.caffe`
    permutes the imported weights into the order used here (see docs/caffe-port.md).

    Shapes: ``forward(rgb, aux)``, rgb (B, 3, H, W) in [0, 1], aux (B, 2, H, W), H and W
    multiples of 4 -> (B, 3, H, W), unclipped.
    """

    def __init__(self, width: int = 64):
        block2 = PERPIXEL_BLOCK * PERPIXEL_BLOCK
        super().__init__(4 * block2, width)
        self.RIR = _conv(width, 3 * block2)

    def gain(self, rgb: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """The per-pixel, per-channel gain (B, 3, H, W) that :meth:`forward` multiplies with."""
        _check_inputs(rgb, aux, PERPIXEL_BLOCK)
        xa = F.pixel_unshuffle(torch.cat([rgb, aux[:, 0:1]], 1), PERPIXEL_BLOCK)
        xb = F.pixel_unshuffle(torch.cat([rgb, aux[:, 1:2]], 1), PERPIXEL_BLOCK)
        return F.pixel_shuffle(self.RIR(self.trunk(xa, xb)), PERPIXEL_BLOCK)

    def forward(self, rgb: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        return self.gain(rgb, aux) * rgb


# Receptive radius = number of stacked 3x3 convs (each adds one pixel of context per side).
# Model 3 runs them at 1/4 resolution: 12 convs = 48 px, plus up to 3 px for the position of a
# pixel inside its 4x4 block.
@register_model(ModelConfig(
    name="sice2018",
    description="SICE Model 2 'Twostage' (the paper's network): luminance/detail branches, RGB residual",
    aux="luminance_detail", receptive_radius=12, paper=PAPER))
def sice2018(**kwargs) -> nn.Module:
    return SICETwoStage(**kwargs)


@register_model(ModelConfig(
    name="sice2018-residual",
    description="SICE Model 1 'residual': 17 convs on RGB with a global residual",
    receptive_radius=17, paper=PAPER))
def sice2018_residual(**kwargs) -> nn.Module:
    return SICEResidual(**kwargs)


@register_model(ModelConfig(
    name="sice2018-perpixel",
    description="SICE Model 3 'Perpixel': Model 2 at 1/4 resolution predicting a per-pixel gain",
    aux="luminance_detail", receptive_radius=12 * PERPIXEL_BLOCK + PERPIXEL_BLOCK - 1,
    size_multiple=PERPIXEL_BLOCK, paper=PAPER))
def sice2018_perpixel(**kwargs) -> nn.Module:
    return SICEPerPixel(**kwargs)
