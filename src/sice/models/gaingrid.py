"""``gaingrid``: sice's default enhancer until 2026-11-30 (now :mod:`sice.models.tonegrid`), built for
20+ MP photos on a laptop CPU.

A small network looks at a 256x256 thumbnail of the whole photo and predicts a *bilateral grid of
per-channel log2 gains*: a coarse 16x16 spatial grid whose cells each hold a tone curve sampled
at 8 intensity levels, for each of R, G and B. The grid is sliced at the photo's own resolution
with an intensity guide, so gains follow edges (no halos across a bright window frame) and the
network's cost does not grow with the photo's size.

Why gains, in log2: one model must brighten under-exposed and darken over-exposed inputs
(the paper needed two models); a log gain is symmetric in both directions, exactly 0 at
initialisation (identity), and multiplying the input keeps its texture and noise floor (the
network never has to re-synthesise detail, unlike the original Models 1/2). Model 3 of the
original release (per-pixel gains) points the same way; the grid and slicing follow HDRNet
(Gharbi et al., SIGGRAPH 2017) with affine matrices replaced by gains, and Zero-DCE++'s
observation that exposure correction can be predicted from a down-scaled input.

References
----------
.. [1] M. Gharbi, J. Chen, J. T. Barron, S. W. Hasinoff, F. Durand, "Deep Bilateral Learning for
   Real-Time Image Enhancement", ACM TOG 36(4), 2017.
.. [2] C. Li, C. Guo, C. C. Loy, "Learning to Enhance Low-Light Image via Zero-Reference Deep
   Curve Estimation" (Zero-DCE++), TPAMI 2021.
.. [3] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", TIP 27(4), 2018.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..imageops import REC601
from ..tensorops import luminance
from ._bilateral import bilateral_slice
from ._registry import ModelConfig, create_model, register_model

_EPS = 1e-4  # floor before a fractional power (its gradient at 0 is infinite)
THUMB = 256  # side of the square thumbnail the grid network sees
MAX_STOPS = 4.0  # gains are bounded to 2**[-4, 4]: enough for -4 EV .. +4 EV inputs
MAX_OFFSET = 0.25  # offsets (``offset=True``) are bounded to +-0.25 of the full scale


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class GainGrid(nn.Module):
    """Bilateral grid of per-channel log2 gains predicted from a thumbnail.

    Parameters
    ----------
    grid_size : int
        Spatial cells of the grid per side (the thumbnail is reduced by 256 / grid_size).
    bins : int
        Intensity levels per cell (the tone curve's knots).
    width : int
        Feature channels.
    work_size : int
        Long side at which :meth:`log_gain` / :meth:`gain_offset` are evaluated when enhancing
        a large photo; the fields are then upsampled bilinearly (they are smooth) and applied
        at full resolution.
    adaptive : bool
        Exposure-adaptive guide and input (tried, not shipped: docs/gaingrid.md). A dark
        photo's luma fills only the lowest few of the ``bins`` intensity levels, so its tone
        curve had 2-3 knots to bend with. With ``adaptive``, the thumbnail's white point and the exponent that
        maps its mean to 0.5 are computed in the graph (:meth:`exposure_normalisation`), the
        guide becomes ``(luma / white) ** a`` (the levels spread over the photo's own tones, dark
        or bright) and the network sees the normalised thumbnail beside the raw one
        (exposure-normalised features, plus the raw thumbnail so it still knows how far off the
        exposure is). False (the previous default) keeps the sqrt guide and 3 input channels.
    offset : bool or {"rgb", "grey"}
        Each cell also holds an offset (bounded to +-``MAX_OFFSET``): output =
        ``x * 2**gain + offset``; ``True``/``"rgb"``: one per channel, ``"grey"``: one for all
        three. A gain cannot lift a pixel that is (nearly) black, and the fused labels lift
        shadows more than a pure gain does on a noisy dark frame: offsets give +0.7 dB at
        level -2, near what HDRNet's affine transforms do, but alone cost 0.2-1.3 dB on
        over-exposed inputs (docs/gaingrid.md), so the previous default averaged a grey-offset grid with a
        gain-only one (:class:`GainGridEnsemble`). Grey, because per-channel offsets tinted
        the dark parts of over-exposed photos green; one offset can lift but not tint. For
        photos, gains and offsets are both sliced at the working resolution and applied per
        pixel (:meth:`gain_offset`).

    Notes
    -----
    ``forward(x)`` maps (B, 3, H, W) RGB in [0, 1] to the enhanced image, for training at any
    size. Inference on photos uses :meth:`grid` on a thumbnail and :meth:`slice` at the working
    resolution (what :mod:`sice.enhancement` and the ONNX export do).
    """

    def __init__(self, grid_size: int = 16, bins: int = 8, width: int = 64, work_size: int = 1024,
                 adaptive: bool = False, offset: bool | str = False):
        super().__init__()
        # the global path halves the grid twice, so 4 cells per side is the least it can take
        if grid_size < 4 or THUMB % grid_size or (THUMB // grid_size) & (THUMB // grid_size - 1):
            raise ValueError(f"grid_size must be >= 4 and divide {THUMB} by a power of two, got {grid_size}")
        self.grid_size, self.bins, self.width, self.work_size = grid_size, bins, width, work_size
        offsets = {False: 0, "none": 0, True: 3, "rgb": 3, "grey": 1}
        if offset not in offsets:
            raise ValueError(f"offset must be False, True, 'rgb' or 'grey', got {offset!r}")
        self.adaptive, self.n_offsets = bool(adaptive), offsets[offset]
        self.offset = self.n_offsets > 0
        n_down = (THUMB // grid_size).bit_length() - 1
        chans = [6 if self.adaptive else 3] + [min(width, 16 * 2 ** i) for i in range(n_down)]
        chans[-1] = width
        self.splat = nn.Sequential(*[m for i in range(n_down)
                                     for m in (_conv(chans[i], chans[i + 1], 2), nn.ReLU(inplace=True))])
        self.local = nn.Sequential(_conv(width, width), nn.ReLU(inplace=True), _conv(width, width))
        self.global_conv = nn.Sequential(_conv(width, width, 2), nn.ReLU(inplace=True),
                                         _conv(width, width, 2), nn.ReLU(inplace=True))
        g = grid_size // 4
        self.global_fc = nn.Sequential(nn.Flatten(), nn.Linear(width * g * g, 256), nn.ReLU(inplace=True),
                                       nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, width))
        self.to_grid = nn.Conv2d(width, (3 + self.n_offsets) * bins, 1)
        # Guide: a learned mix of sqrt-RGB (sqrt spreads the dark tones that under-exposed
        # photos are made of over more intensity bins), initialised to Rec. 601 luma.
        self.guide_weight = nn.Parameter(torch.tensor(REC601))
        self.guide_bias = nn.Parameter(torch.zeros(1))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.to_grid.weight)  # identity at start: every gain is 2**0

    # -- pieces --------------------------------------------------------------------------------
    def exposure_normalisation(self, thumb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, h, w) thumbnail -> ``(white, exponent)``, each (B, 1, 1, 1).

        ``white`` is the thumbnail's brightest Rec. 601 luma (an area-averaged 256x256 copy, so
        a few hot pixels do not set it) and ``exponent`` maps the mean of ``luma / white`` to 0.5:
        ``(luma / white) ** exponent`` spans the intensity levels whatever the exposure. Clamps
        (white >= 0.01, mean in [0.01, 0.99], exponent in [1/8, 8]) keep a black or white frame
        finite.
        """
        luma = luminance(thumb.clamp(0, 1))
        white = luma.amax(dim=(2, 3), keepdim=True).clamp_min(0.01)
        mean = (luma / white).mean(dim=(2, 3), keepdim=True).clamp(0.01, 0.99)
        return white, (math.log(0.5) / torch.log(mean)).clamp(1 / 8, 8)

    @staticmethod
    def normalise(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``(x / white) ** exponent``, clamped to [1e-4, 1] first (a fractional power's slope
        at 0 is infinite)."""
        white, exponent = norm
        return (x / white).clamp(_EPS, 1) ** exponent

    def grid(self, thumb: torch.Tensor) -> torch.Tensor:
        """(B, 3, 256, 256) thumbnail -> (B, 3, bins, G, G) log2 gains; with ``offset``
        (B, 3 + n, bins, G, G): log2 gains, then the n = 3 (rgb) or 1 (grey) offsets."""
        if self.adaptive:
            thumb = torch.cat([thumb, self.normalise(thumb, self.exposure_normalisation(thumb))], dim=1)
        f = self.splat(thumb)
        glob = self.global_fc(self.global_conv(f))
        fused = F.relu(self.local(f) + glob[:, :, None, None])
        z = self.to_grid(fused)
        b, c, gh, gw = z.shape
        z = z.view(b, c // self.bins, self.bins, gh, gw)
        if not self.offset:
            return MAX_STOPS * torch.tanh(z / MAX_STOPS)
        return torch.cat([MAX_STOPS * torch.tanh(z[:, :3] / MAX_STOPS),
                          MAX_OFFSET * torch.tanh(z[:, 3:] / MAX_OFFSET)], dim=1)

    def guide(self, x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1, H, W) intensity guide in [0, 1].

        Default: a learned mix of sqrt-RGB. Adaptive: the learned mix of RGB, normalised by the
        thumbnail's ``norm = (white, exponent)`` (:meth:`exposure_normalisation`).
        """
        w = self.guide_weight.view(1, 3, 1, 1)
        if self.adaptive:
            if norm is None:
                raise ValueError("an adaptive gaingrid's guide needs the thumbnail's normalisation")
            g = self.normalise((x.clamp(0, 1) * w).sum(1, keepdim=True), norm)
        else:
            g = (x.clamp(0, 1).sqrt() * w).sum(1, keepdim=True)
        return (g + self.guide_bias).clamp(0, 1)

    def slice(self, grid: torch.Tensor, x: torch.Tensor,
              norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Trilinear slicing of ``grid`` at ``x``'s pixels -> (B, C, H, W) (C = 3 log2 gains, or
        3 + n = gains then offsets with ``offset``).

        Shared with ``hdrnet``: see :func:`sice.models._bilateral.bilateral_slice` (bilinear
        upsampling of each intensity level + hat weights over levels == trilinear; plain ONNX ops).
        """
        return bilateral_slice(grid, self.guide(x, norm))

    @staticmethod
    def thumbnail(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(THUMB, THUMB), mode="area") if x.shape[-2:] != (THUMB, THUMB) else x

    def _enhance(self, thumb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self.offset:
            return (x * _exp2(self.log_gain(thumb, x))).clamp(0, 1)
        log_gain, offset = self.gain_offset(thumb, x)
        return (x * _exp2(log_gain) + offset).clamp(0, 1)

    def log_gain(self, thumb: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
        """Inference entry shared by the torch and ONNX paths: the caller makes the thumbnail
        (OpenCV INTER_AREA), so both backends see identical inputs. Offset grids hand over
        gains *and* offsets: :meth:`gain_offset`."""
        norm = self.exposure_normalisation(thumb) if self.adaptive else None
        return self.slice(self.grid(thumb), work, norm)[:, :3]

    def gain_offset(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log2 gains, offsets)``, each (B, 3, h, w) at ``work``: output = work * 2**g + o.

        Photos get both fields upsampled from the working resolution (they are smooth) and
        applied per pixel (:func:`sice.enhancement.apply_log2_gain`), so a lift stays a lift:
        handing it over as a gain ratio instead multiplied the noise of near-black pixels.
        """
        norm = self.exposure_normalisation(thumb) if self.adaptive else None
        sliced = self.slice(self.grid(thumb), work, norm)
        log_gain = sliced[:, :3]
        if not self.offset:
            return log_gain, torch.zeros_like(log_gain)
        return log_gain, sliced[:, 3:].expand_as(log_gain)

    def photo_fields(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What photos get (photo path ``"gain"``): ``(log2 gains, offsets)`` when the model has
        offsets, else ``(log2 gains,)``; each (B, 3, h, w) at ``work``."""
        return self.gain_offset(thumb, work) if self.offset else (self.log_gain(thumb, work),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._enhance(self.thumbnail(x), x)


def _exp2(t: torch.Tensor) -> torch.Tensor:
    return torch.exp(t * math.log(2.0))  # aten::exp2 has no ONNX export


class PhotoFieldsOnnx(nn.Module):
    """Export wrapper of the grid models: (thumbnail 1x3x256x256, working image 1x3xHxW) -> the
    model's ``photo_fields``: (luma gain, chroma gain: 1x1xHxW each) of tone models, (log2 gains
    [, offsets]: 1x3xHxW each) of gain models."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, thumb: torch.Tensor, work: torch.Tensor):
        return self.model.photo_fields(thumb, work)


@register_model(ModelConfig(
    name="gaingrid",
    description="bilateral grid of per-channel gains from a 256-px thumbnail (a member of the previous default), "
                "applied at full resolution (under- and over-exposure, any size, fast on CPU)",
    fully_convolutional=False,
    photo_path="gain",
    paper="this package; after HDRNet (Gharbi et al. 2017) and SICE Model 3 (Cai et al. 2018)",
))
def gaingrid(**kwargs) -> GainGrid:
    return GainGrid(**kwargs)


class GainGridEnsemble(nn.Module):
    """The mean of several :class:`GainGrid` outputs, handed to photos as one gain and offset.

    Why: the gain-only grid is best on over-exposed inputs, the offset grid on the darkest ones
    (+0.7 to +1.2 dB at level -2); their average is above both at six of the eight
    (split, level) cells of the validation and test scenes and within 0.1 dB of the better one
    at the other two (docs/gaingrid.md). Each member sees the same thumbnail; only the
    thumbnail networks and the slicing at the working resolution are repeated, so the
    full-resolution cost (one strip-wise gain and offset) does not grow with the members.

    Parameters
    ----------
    members : list of dict
        Keyword arguments of each member's :class:`GainGrid`.
    work_size : int
        Working resolution of :meth:`gain_offset` (as :class:`GainGrid`). 768 rather than a
        single grid's 1024: each member slices its grid there, so two members at 1024 took
        128 ms per photo in onnxruntime (one gain-only grid: 58 ms), at 768 62 ms; the fields
        handed to a large photo lose 1.4 dB of fidelity to per-pixel slicing (38.2 -> 36.8 dB
        on a 5 MP SICE frame, docs/gaingrid.md).

    Notes
    -----
    ``forward(x)`` is ``clip(x * G + O)`` with the members' mean gain ``G`` and mean offset ``O``
    (the mean of their unclipped outputs); photos get ``G`` and ``O`` from the working
    resolution through :meth:`gain_offset`.
    """

    def __init__(self, members: list[dict] | tuple[dict, ...] = ({}, {"offset": "grey"}), work_size: int = 768):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.work_size = int(work_size)
        self.members = nn.ModuleList(GainGrid(**{**dict(kw), "work_size": self.work_size}) for kw in members)
        self.offset = any(m.offset for m in self.members)  # hand photos offsets too

    def gain_offset(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' mean as one affine map: ``mean_k(x * 2**g_k + o_k) = x * G + O`` with
        ``G`` the mean gain and ``O`` the mean offset -> ``(log2 G, O)``, each (B, 3, h, w)."""
        gain = offset = None
        for member in self.members:
            g, o = member.gain_offset(thumb, work)
            g = _exp2(g)
            gain, offset = (g, o) if gain is None else (gain + g, offset + o)
        n = len(self.members)
        return torch.log2(gain / n), offset / n

    def log_gain(self, thumb: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
        """log2 of the mean gain; the whole map (with the offsets) is :meth:`gain_offset`."""
        return self.gain_offset(thumb, work)[0]

    def _enhance(self, thumb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_gain, offset = self.gain_offset(thumb, x)
        return (x * _exp2(log_gain) + offset).clamp(0, 1)

    def photo_fields(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What photos get (photo path ``"gain"``): ``(log2 gains, offsets)`` when the model has
        offsets, else ``(log2 gains,)``; each (B, 3, h, w) at ``work``."""
        return self.gain_offset(thumb, work) if self.offset else (self.log_gain(thumb, work),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._enhance(GainGrid.thumbnail(x), x)


@register_model(ModelConfig(
    name="gaingrid-ensemble",
    description="the mean of several gaingrids (the default until 2026-11-30: gain-only + grey-offset), "
                "applied to the photo as one gain and offset",
    fully_convolutional=False,
    photo_path="gain",
    paper="this package",
))
def gaingrid_ensemble(**kwargs) -> GainGridEnsemble:
    return GainGridEnsemble(**kwargs)


def ensemble_of(models: list[GainGrid], *, work_size: int = 768) -> GainGridEnsemble:
    """A registered ``gaingrid-ensemble`` holding copies of trained ``gaingrid`` models' weights."""
    return members_copied_into("gaingrid-ensemble", models, GainGrid, work_size=work_size,
                               caller="ensemble_of", family="gaingrid")


def members_copied_into(ensemble_name: str, models: list, member_type: type, *, work_size: int,
                        caller: str, family: str) -> nn.Module:
    """The registered ensemble ``ensemble_name`` built with the members' own kwargs and a copy of
    each trained member's weights (the gain and tone grid ensembles alike)."""
    if not models or any(not isinstance(m, member_type) for m in models):
        raise ValueError(f"{caller} takes one or more {family} models")
    members = [{k: v for k, v in getattr(m, "sice_kwargs", {}).items() if k != "work_size"} for m in models]
    ensemble = create_model(ensemble_name, members=members, work_size=work_size)
    for target, source in zip(ensemble.members, models):
        target.load_state_dict(source.state_dict())
    return ensemble.eval()
