"""``hdrnet``: deep bilateral learning (HDRNet) of Gharbi et al. [1]_.

A small network looks at a fixed 256x256 copy of the image and predicts a bilateral grid of 3x4
affine colour transforms; a learned per-pixel *guidance map* computed from the full-resolution
image picks, by trilinear slicing, the transform each pixel gets. The cost at full resolution
is one slicing and one 3x4 matrix product per pixel. Cai et al. [3]_ compare against it.

Equations followed ([1]_, Sec. 3, with the sizes of its main configuration and of the authors'
released ``HDRNetCurves`` model):

* low-level features (eq. 1): n_S = 4 stride-2 3x3 convolutions + ReLU, 3 -> 8 -> 16 -> 32 -> 64
  channels, 256x256 -> 16x16;
* local path: two 3x3 convolutions, 64 channels, the second linear and without bias;
* global path: two stride-2 3x3 convolutions + ReLU (16 -> 4), then three fully connected layers
  1024 -> 256 -> 128 -> 64 (the last linear);
* fusion (eq. 2): ``F = ReLU(local + global)`` (the global vector broadcast over the 16x16 cells);
* linear prediction (eq. 3): a 1x1 convolution 64 -> 96 = 12 coefficients x 8 depth bins, read as
  a grid A of shape (12, 8, 16, 16);
* guidance map (eq. 4): ``g = b + sum_c rho_c(M_c . phi + b'_c)``, a 3x3 colour matrix M with
  bias, per-channel piecewise-linear curves ``rho_c(x) = sum_{i<16} a_ci max(x - t_ci, 0)`` with 16
  knots, and a 1x1 mix to one channel, clipped to [0, 1];
* slicing (eq. 5): trilinear interpolation of A at (x, y, g(x, y)), by
  :func:`~sice.models._bilateral.bilateral_slice` (shared with ``gaingrid``; its 5-D
  ``grid_sample`` form, which is ~5x faster than the per-level form ``gaingrid`` exports);
* output (eq. 6): ``O_c = A_c3 + sum_c' A_cc' I_c'``.

Deviations from [1]_, and why:

* The prediction layer starts with zero weights and a bias that is the identity transform in
  every cell (output = input at step 0). The paper starts from random weights and trains for
  days on a GPU; sice trains for minutes on a CPU, and the default model starts from identity
  too, so the comparison is fair.
* The grid's 8 depth levels are nodes at 0, 1/7, ..., 1 of the guide range rather than the
  authors' cell centres (see :func:`~sice.models._bilateral.bilateral_slice`).
* No batch normalisation: it is optional in the authors' code (``--batch_norm``) and their
  published training scripts turn it off; with the small batches a CPU allows it would hurt.
* The 256x256 copy is made by area averaging (``interpolate(mode="area")``): the paper only says
  the input is down-sampled; area averaging does not alias.
* Inference on photos (``sice enhance``, ``sice eval``) goes through :meth:`HDRNet.log_gain`:
  the network is applied at a working resolution (long side ``work_size`` = 1024) and its effect
  is handed to the full-resolution photo as a per-channel gain ``output / input``, which
  :func:`sice.enhancement.apply_log2_gain` upsamples and applies strip by strip in the photo's
  own dtype -- the default model's path, shared rather than written twice. Slicing at full
  resolution instead took 22 s and 2.3 GB at 20 MP on one thread (docs/can-hdrnet.md). Up to
  1024 px the working image *is* the photo and the result equals ``forward`` except where a gain is clamped (+-8 stops) or on near-black pixels (the
  ratio's ``1e-3`` floor: an offset cannot lift a pixel that is exactly 0). Above it, gains are
  interpolated between working pixels, as for ``gaingrid``. ``forward`` (training, and
  ``Enhancer`` on torch tensors through it) slices at full resolution as the paper does.

References
----------
.. [1] M. Gharbi, J. Chen, J. T. Barron, S. W. Hasinoff, F. Durand, "Deep Bilateral Learning for
   Real-Time Image Enhancement", ACM TOG 36(4) (SIGGRAPH), 2017.
.. [2] J. Chen, S. Paris, F. Durand, "Real-time Edge-aware Image Processing with the Bilateral
   Grid", ACM TOG 26(3), 2007.
.. [3] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE TIP 27(4), 2018.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._bilateral import apply_affine, bilateral_slice
from ._registry import ModelConfig, register_model

#: Side of the fixed low-resolution input ([1]_, Sec. 3.1).
LOWRES = 256
#: Affine colour transform per cell: 3 outputs x (3 inputs + offset).
N_COEFFS = 12
#: Knots of each guidance curve ([1]_, Sec. 3.4).
CURVE_KNOTS = 16
#: Floor added to both sides of the ``output / input`` ratio of :meth:`HDRNet.log_gain`: an
#: offset cannot be handed over as a gain on a pixel that is exactly 0, and noise in near-black
#: pixels must not become huge gains.
GAIN_EPS = 1e-3
#: Bound of the transferred log2 gains (stops).
GAIN_STOPS = 8.0


def _conv(cin: int, cout: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class GuideCurves(nn.Module):
    """Learned guidance map ([1]_, eq. 4): colour matrix, per-channel curves, 1x1 mix.

    Initialised as the authors' code: M = identity, curves = identity (first slope 1, knots at
    0, 1/16, ..., 15/16), mix weights 1/3, so the guide starts as the mean of R, G, B.

    Shapes: (B, 3, H, W) in [0, 1] -> (B, 1, H, W) in [0, 1].
    """

    def __init__(self, knots: int = CURVE_KNOTS):
        super().__init__()
        self.ccm = nn.Parameter(torch.eye(3))
        self.ccm_bias = nn.Parameter(torch.zeros(3))
        self.shifts = nn.Parameter(torch.arange(knots, dtype=torch.float32).div(knots).repeat(3, 1))
        slopes = torch.zeros(3, knots)
        slopes[:, 0] = 1.0
        self.slopes = nn.Parameter(slopes)
        self.mix = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.mix.weight.fill_(1.0 / 3.0)
            self.mix.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # M_c . phi + b'_c as a 1x1 convolution (one matrix product per pixel)
        y = F.conv2d(x, self.ccm[:, :, None, None], self.ccm_bias)
        # rho_c: sum over knots of a_ci * max(y_c - t_ci, 0), one knot at a time so that a
        # 20 MP image never holds (B, 3, 16, H, W) at once (3.8 GB)
        rho = None
        for i in range(self.slopes.shape[1]):
            term = self.slopes[:, i, None, None] * F.relu(y - self.shifts[:, i, None, None])
            rho = term if rho is None else rho + term
        return self.mix(rho).clamp(0.0, 1.0)


class HDRNet(nn.Module):
    """Deep bilateral learning (see the module docstring for equations and deviations).

    Parameters
    ----------
    luma_bins : int
        Depth levels of the grid (8 in [1]_).
    grid_size : int
        Spatial cells per side (16 in [1]_: 256 / 2^n_S with n_S = 4).
    channel_multiplier : int
        Scales every width (1 in [1]_; the authors' ``channel_multiplier``).
    work_size : int
        Long side of the working resolution of :meth:`log_gain` (photo inference).

    Notes
    -----
    ``forward(x)``: (B, 3, H, W) RGB in [0, 1], any H, W -> (B, 3, H, W), unclipped.
    :meth:`coefficients` and :meth:`guide` expose the two halves.
    """

    def __init__(self, luma_bins: int = 8, grid_size: int = 16, channel_multiplier: int = 1,
                 work_size: int = 1024):
        super().__init__()
        n_splat = (LOWRES // grid_size).bit_length() - 1
        if grid_size < 4 or LOWRES % grid_size or 2 ** n_splat != LOWRES // grid_size:
            raise ValueError(f"grid_size must be {LOWRES} / 2^k and >= 4, got {grid_size}")
        if luma_bins < 2:
            raise ValueError(f"luma_bins must be >= 2, got {luma_bins}")
        self.luma_bins, self.grid_size, self.work_size = luma_bins, grid_size, int(work_size)
        gd, cm = luma_bins, channel_multiplier
        width = 8 * cm * gd  # 64 in [1]_
        chans = [3] + [cm * gd * 2 ** i for i in range(n_splat)]
        self.splat = nn.Sequential(*[m for i in range(n_splat)
                                     for m in (_conv(chans[i], chans[i + 1], 2), nn.ReLU(inplace=True))])
        # global path: stride-2 convolutions down to 4x4 cells, then three FCs
        n_global = (grid_size // 4).bit_length() - 1
        gconv, c = [], chans[-1]
        for _ in range(n_global):
            gconv += [_conv(c, width, 2), nn.ReLU(inplace=True)]
            c = width
        self.global_conv = nn.Sequential(*gconv)
        self.global_fc = nn.Sequential(
            nn.Flatten(), nn.Linear(c * 16, 32 * cm * gd), nn.ReLU(inplace=True),
            nn.Linear(32 * cm * gd, 16 * cm * gd), nn.ReLU(inplace=True),
            nn.Linear(16 * cm * gd, width))
        self.local = nn.Sequential(_conv(chans[-1], width), nn.ReLU(inplace=True),
                                   _conv(width, width, bias=False))
        self.predict = nn.Conv2d(width, N_COEFFS * gd, 1)
        self.guide = GuideCurves()
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not self.guide.mix:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # identity transform in every cell at step 0 (deviation, see the module docstring)
        nn.init.zeros_(self.predict.weight)
        with torch.no_grad():
            eye = torch.eye(3, 4).reshape(N_COEFFS, 1).expand(N_COEFFS, gd)
            self.predict.bias.copy_(eye.reshape(-1))

    @staticmethod
    def lowres(x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, 256, 256) by area averaging (aspect not kept, as [1]_)."""
        return x if x.shape[-2:] == (LOWRES, LOWRES) else F.interpolate(x, size=(LOWRES, LOWRES), mode="area")

    def coefficients(self, lowres: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) -> bilateral grid (B, 12, luma_bins, G, G) of affine coefficients."""
        f = self.splat(lowres)
        glob = self.global_fc(self.global_conv(f))
        fused = F.relu(self.local(f) + glob[:, :, None, None])
        a = self.predict(fused)  # channel k = coefficient (k // bins) at depth (k % bins)
        b, _, gh, gw = a.shape
        return a.reshape(b, N_COEFFS, self.luma_bins, gh, gw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (B, 3, H, W), got {tuple(x.shape)}")
        return self._sliced_affine(self.coefficients(self.lowres(x)), x)

    def _sliced_affine(self, grid: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # grid_sample slicing: same values as the ONNX-friendly per-level form, ~5x faster
        # (bilateral_slice falls back to the per-level form under ONNX tracing)
        return apply_affine(bilateral_slice(grid, self.guide(x), method="grid_sample"), x)

    def log_gain(self, thumb: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
        """Photo inference: (B, 3, 256, 256) copy and (B, 3, h, w) working image -> log2 of the
        per-channel gain ``output / input`` at the working resolution (see the module notes)."""
        out = self._sliced_affine(self.coefficients(thumb), work).clamp(0, 1)
        return torch.log2((out + GAIN_EPS) / (work + GAIN_EPS)).clamp(-GAIN_STOPS, GAIN_STOPS)


    def photo_fields(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor]:
        """What photos get (photo path ``"gain"``): ``(log2 gains,)`` (:meth:`log_gain`)."""
        return (self.log_gain(thumb, work),)

@register_model(ModelConfig(
    name="hdrnet",
    description="HDRNet (Gharbi et al. 2017): bilateral grid of 3x4 affine colour transforms from a "
                "256-px copy, learned guide, sliced at full resolution",
    fully_convolutional=False,
    photo_path="gain",
    paper="M. Gharbi, J. Chen, J. T. Barron, S. W. Hasinoff, F. Durand, Deep Bilateral Learning for "
          "Real-Time Image Enhancement, ACM TOG 36(4), 2017",
))
def hdrnet(**kwargs) -> HDRNet:
    return HDRNet(**kwargs)
