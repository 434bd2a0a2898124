"""``tonegrid``: a bilateral grid of monotone tone curves pinned at black and white.

The gain grid before it (:mod:`sice.models.gaingrid`) learned whatever its fused labels showed,
and they showed clipped skies as light grey and blacks as charcoal: a free gain per intensity
level happily darkens a blown-out sky to 200 and a grey offset lifts a black floor to 30. A
photographer's tools cannot do that by accident: "curves" are monotone and keep 0 at 0 and 255 at
255 unless told otherwise. ``tonegrid`` builds that into the model (docs/default-model.md):

* **Luma curves pinned at both ends.** Each of the 16x16 cells of the grid holds one monotone,
  piecewise-linear curve of the luma through ``knots`` points: ``knots - 1`` positive increments
  (a softmax) that sum to one, so black stays black and white stays white, whatever the network
  says. The knots are dense at both ends (:func:`knot_positions`): the shadows of an
  under-exposed photo and the highlights of an over-exposed one, where all their pixels are,
  get the same resolution. Between cells the curves are blended bilinearly, which keeps both
  properties. The curve starts as the identity.
* **Curves of the regions, gains for the pixels.** The curve is read at the *base* luma, an
  edge-preserving smoothing of the luma (a guided filter, :func:`base_luma`), and the pixel gets
  the curve's ratio there as a gain, ``g = f(Y_b) / Y_b`` (local tone mapping, Durand & Dorsey
  2002). Read at each pixel's own luma, the steep parts of a curve multiply the noise of the
  pixels they cover by their slope: next to a clipped sky (the shoulder that darkens an
  over-exposed photo with white pinned) that made speckles and hard contours, and just above
  black (the lift of a night scene's shadows) a salt-and-pepper dither, in the first trained
  tonegrids. Read at the base, a region is lifted or darkened as a whole, its edges stay
  sharp, and the noise within it is scaled by the gain, as by an exposure change.
* **A toe and a shoulder.** The first segment (black to 2/255) is held to a slope of
  :data:`TOE_SLOPE` and the next ones, up to 14/255, to slopes growing with the square root of
  their luma: a lifted shadow keeps its black level instead of turning noise and JPEG blocks
  into charcoal, and the lift grows smoothly from black instead of dithering a noisy night sky. The top segments (from 0.88 up) are held to :data:`SHOULDER_SLOPE`, so the
  little noise left in the base luma is not multiplied by a near-vertical shoulder either.
* **Colour follows the luma, with a bounded chroma gain.** ``out = Y' + s (x - Y)``: the luma
  ``Y`` goes to ``Y' = g Y``, and the chroma ``x - Y`` is scaled by ``s = min(g 2**c, MAX_CHROMA)``,
  ``c`` a learned per-cell saturation correction within +-``MAX_SATURATION`` stops. No per-channel
  gain means no tint can appear in a black or a white; ``MAX_CHROMA`` bounds how much a shadow
  lift amplifies chroma noise; the learned ``c`` lets darkened highlights get their colour back
  (a darkening gain alone would fade it) without neon.

For photos, :meth:`ToneGrid.tone_fields` evaluates the luma gain ``g`` and the chroma gain ``s`` at
a working resolution; they are smooth, so they are upsampled and applied at full resolution as
``out = s x + (g - s) Y`` (:func:`sice.enhancement.apply_tone`), never holding a full-size float
copy of the photo.

References
----------
.. [1] M. Gharbi, J. Chen, J. T. Barron, S. W. Hasinoff, F. Durand, "Deep Bilateral Learning for
   Real-Time Image Enhancement", ACM TOG 36(4), 2017 (grid and slicing).
.. [2] K. He, J. Sun, X. Tang, "Guided Image Filtering", IEEE TPAMI 35(6), 2013 (the base).
.. [3] F. Durand, J. Dorsey, "Fast Bilateral Filtering for the Display of High-Dynamic-Range
   Images", ACM TOG 21(3), 2002 (curve on the base, gain on the detail).
.. [4] C. Guo, C. Li, J. Guo, C. C. Loy, J. Hou, S. Kwong, R. Cong, "Zero-Reference Deep Curve
   Estimation for Low-Light Image Enhancement", CVPR 2020 (pixel-wise curves pinned at 0 and 1).
.. [5] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE TIP 27(4), 2018.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tensorops import luminance
from ._bilateral import bilateral_slice
from ._registry import ModelConfig, register_model
from .gaingrid import GainGrid, members_copied_into

#: Extra knots near black (2/255 and 8/255): the darkest photos need their shadows at 3-10/255
#: lifted several stops while black itself (the toe) is not; without them the level -2 frames
#: of the validation scenes lost 0.5 dB (docs/default-model.md).
DARK_KNOTS = (2 / 255, 8 / 255)
#: Largest slope of the first curve segment (black to 2/255): input black (luma <= 2/255)
#: stays at or below 10/255. Segments up to TOE_END are held to TOE_SLOPE x sqrt(their end /
#: 2/255): 7 up to 4/255, 10 up to 8/255, 13 up to 14/255.
TOE_SLOPE, TOE_END = 5.0, 0.06
#: Largest slope of the curve's top segments (those starting at SHOULDER_START = 0.88 and up):
#: an over-exposed photo can still be darkened a lot (0.88 down to 0.4) with white pinned,
#: but never with a cliff that would amplify the noise next to a clipped sky.
SHOULDER_SLOPE, SHOULDER_START = 5.0, 0.88
#: Guided filter of the base luma: window radius (pixels of the image the fields are computed
#: at: 256 in training, up to ``work_size`` for photos) and regulariser (an edge of luma contrast
#: well above sqrt(BASE_EPS) = 0.045 is kept, noise well below it is smoothed).
BASE_RADIUS, BASE_EPS = 2, 0.002
#: Pixels whose brightest channel is above CLIP_FROM get less of the learned saturation boost
#: (none at 1.0): near clipping, chroma is the camera's clipping error. From 0.9 (the first
#: trained value) the suppression also faded the colours of bright, unclipped skies and walls.
CLIP_FROM = 0.98
#: Bound of the learned saturation correction, in stops of chroma gain relative to luma gain.
#: Darkening an over-exposed photo by gain g scales its chroma by g too; a gamma of 2-3 scales
#: it by (1-1.6 stops) more than that, so +-1 stop left darkened highlights faded (colourfulness
#: 0.81x the input's on over-exposed CC0 renderings; 0.95x with 2 stops, docs/default-model.md).
MAX_SATURATION = 2.0
#: Largest chroma gain: a shadow lifted by more than 2 stops gets its colour lifted by 2 stops
#: only, so its chroma noise (and JPEG chroma blocks) are not multiplied by the full lift.
MAX_CHROMA = 4.0


def knot_positions(knots: int) -> torch.Tensor:
    """Luma of each knot: evenly spaced on the axis ``a(Y) = (sqrt(Y) + 1 - sqrt(1 - Y)) / 2``,
    which behaves like a square root at both ends (16 knots: 0, 0.017, 0.061, ..., 0.982, 1).

    The inverse of ``a`` has no closed form: bisection, in float64, once per model.
    """
    target = torch.linspace(0, 1, knots, dtype=torch.float64)
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = (mid.sqrt() + 1 - (1 - mid).sqrt()) / 2 < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    y = (lo + hi) / 2
    y[0], y[-1] = 0.0, 1.0
    return y.float()


def max_increments(knot_luma: torch.Tensor, toe_slope: float = TOE_SLOPE,
                   shoulder_slope: float = SHOULDER_SLOPE) -> torch.Tensor:
    """Largest increment of each curve segment: ``toe_slope`` x its width for the first (black
    to the first knot) and ``toe_slope`` x sqrt(its end / the first knot) x its width for the
    others ending at or below :data:`TOE_END`; ``shoulder_slope`` x its width for those starting
    at or above :data:`SHOULDER_START`; no limit (inf) for the others."""
    width = knot_luma[1:] - knot_luma[:-1]
    cap = torch.full_like(width, math.inf)
    # the toe: the first segment at toe_slope, the next ones up to TOE_END at toe_slope x
    # sqrt(their end / the first knot), so the lift grows smoothly from black (a sudden jump
    # from a held first segment to a free second one dithered the noise of night skies)
    toe = knot_luma[1:] <= TOE_END
    cap[toe] = toe_slope * (knot_luma[1:][toe] / knot_luma[1]).sqrt() * width[toe]
    top = knot_luma[:-1] >= SHOULDER_START
    cap[top] = shoulder_slope * width[top]
    return cap


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r + 1)^2 window, edge-replicated at the borders (ONNX: Pad + AveragePool;
    replicate, unlike reflect, works on images smaller than the window, down to 1x1)."""
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)


def base_luma(y: torch.Tensor, radius: int = BASE_RADIUS, eps: float = BASE_EPS) -> torch.Tensor:
    """Self-guided filter of He, Sun, Tang [2]_ of a (B, 1, H, W) luma: edge-preserving smoothing.

    Per window ``a = var / (var + eps)``, ``b = (1 - a) mean``; the output is ``mean(a) y +
    mean(b)``. A flat region (white sky, black floor) is returned as it is, a step much larger
    than ``sqrt(eps)`` stays a step, and fine noise is averaged away.
    """
    mean = _box(y, radius)
    var = (_box(y * y, radius) - mean * mean).clamp_min(0)
    a = var / (var + eps)
    return _box(a, radius) * y + _box((1 - a) * mean, radius)


class ToneGrid(GainGrid):
    """Bilateral grid of pinned monotone luma curves + a bounded chroma gain (module notes).

    Parameters
    ----------
    grid_size, width, work_size
        As :class:`~sice.models.gaingrid.GainGrid` (the same thumbnail network).
    knots : int
        Points of each cell's curve, ends included (``knots - 1`` segments), at
        :func:`knot_positions`.
    dark_knots : sequence of float
        Extra knots (luma) added near black, where an under-exposed photo's shadows need a lift
        that the toe must not give to black itself.
    toe_slope, shoulder_slope : float
        Largest slopes of the first segment and of the top ones (:func:`max_increments`).
    max_chroma : float
        Largest chroma gain.
    max_saturation : float
        Bound of the learned saturation correction, in stops.

    Notes
    -----
    ``forward(x)`` maps (B, 3, H, W) RGB in [0, 1] to the enhanced image at any size (training);
    :meth:`tone_fields` gives the two gain fields that photos get (inference, ONNX).
    """

    def __init__(self, grid_size: int = 16, knots: int = 16, width: int = 64, work_size: int = 1024,
                 dark_knots: tuple = DARK_KNOTS, toe_slope: float = TOE_SLOPE, shoulder_slope: float = SHOULDER_SLOPE,
                 max_chroma: float = MAX_CHROMA, max_saturation: float = MAX_SATURATION):
        if knots < 3:
            raise ValueError(f"knots must be >= 3, got {knots}")
        y = knot_positions(knots)
        if any(not 0 < float(d) < 0.1 or bool(torch.isclose(y, torch.tensor(float(d))).any())
               for d in dark_knots):
            raise ValueError(f"dark_knots must lie in (0, 0.1) apart from the other knots, got {list(dark_knots)}")
        y = torch.sort(torch.cat([y, torch.tensor([float(d) for d in dark_knots])])).values
        knots = len(y)
        if min(toe_slope, shoulder_slope) <= 1 or max_chroma < 1:
            raise ValueError(f"toe_slope and shoulder_slope must be > 1 and max_chroma >= 1, got "
                             f"{toe_slope}, {shoulder_slope}, {max_chroma}")
        super().__init__(grid_size=grid_size, bins=knots, width=width, work_size=work_size)
        self.knots = knots
        # derived from ``knots``: not saved in checkpoints
        self.register_buffer("knot_luma", y, persistent=False)
        self.first_knot = float(y[1])
        # the increments of the identity curve: the network's zero output starts there
        self.register_buffer("identity_logits", torch.log(y[1:] - y[:-1]), persistent=False)
        self.register_buffer("max_increment", max_increments(y, toe_slope, shoulder_slope), persistent=False)
        self.max_chroma = float(max_chroma)
        self.max_saturation = float(max_saturation)
        # knots - 1 curve increments, then knots saturation corrections (one per luma level)
        self.to_grid = nn.Conv2d(width, 2 * knots - 1, 1)
        nn.init.zeros_(self.to_grid.weight)  # identity curve, no saturation change
        nn.init.zeros_(self.to_grid.bias)
        del self.guide_weight, self.guide_bias  # the guide is the luma itself: fixed, not learned

    def grid(self, thumb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 256, 256) thumbnail -> ``(curves, saturation)``, each (B, 1, knots, G, G):
        the curves' values at the knots (0 first, 1 last, increasing) and the saturation
        correction in stops (within +-:data:`MAX_SATURATION`)."""
        f = self.splat(thumb)
        glob = self.global_fc(self.global_conv(f))
        z = self.to_grid(F.relu(self.local(f) + glob[:, :, None, None]))
        k = self.knots
        # increments: positive, summing to 1 (a softmax; zero logits give the identity curve)
        steps = torch.softmax(z[:, :k - 1] + self.identity_logits.view(1, -1, 1, 1), dim=1)
        # the toe and the shoulder: segments with a slope limit are held to it; what they lose
        # goes to the free ones in proportion to their increments (plus a trace of the
        # identity's, should they all be ~0): still increasing, still summing to 1
        cap = self.max_increment.view(1, -1, 1, 1)
        held = torch.minimum(steps, cap)
        free = torch.isinf(cap).to(steps.dtype)
        share = free * (steps + 1e-6 * torch.exp(self.identity_logits).view(1, -1, 1, 1))
        excess = (steps - held).sum(dim=1, keepdim=True)
        steps = held + excess * share / share.sum(dim=1, keepdim=True)
        ends = torch.zeros_like(steps[:, :1])
        # cumulative sums of positive steps: increasing; the last knot is exactly 1, not a
        # float sum that might land at 0.9999999
        curve = torch.cat([ends, torch.cumsum(steps[:, :-1], dim=1), ends + 1], dim=1)
        saturation = self.max_saturation * torch.tanh(z[:, k - 1:] / self.max_saturation)
        return curve[:, None], saturation[:, None]

    def knot_coordinate(self, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) luma -> the slicing coordinate in [0, 1]: knot ``k`` at ``k / (knots -
        1)``, linear in the luma between knots (so slicing is piecewise-linear in the luma)."""
        lo = self.knot_luma[:-1].view(1, -1, 1, 1)
        width = (self.knot_luma[1:] - self.knot_luma[:-1]).view(1, -1, 1, 1)
        return ((y - lo) / width).clamp(0, 1).sum(1, keepdim=True) / (self.knots - 1)

    def photo_fields(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What photos get (photo path ``"tone"``): :meth:`tone_fields`."""
        return self.tone_fields(thumb, work)

    def tone_fields(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(luma gain g, chroma gain s)``, each (B, 1, h, w) at ``work``'s pixels.

        The output is ``s * work + (g - s) * luminance(work)``: see the module notes.
        """
        curve, saturation = self.grid(thumb)
        work = work.clamp(0, 1)
        y = base_luma(luminance(work))
        # Below the first knot the curve is a straight line through 0, so its ratio to the
        # input is that of the first knot: evaluate at max(y, first knot), never divide by ~0.
        y_safe = y.clamp_min(self.first_knot)
        g = bilateral_slice(curve, self.knot_coordinate(y_safe)) / y_safe
        c = bilateral_slice(saturation, self.knot_coordinate(y.clamp(0, 1)))
        # No extra saturation where a channel is (nearly) clipped: its chroma is the camera's
        # clipping error (a blue sky whose blue clipped first reads cyan), not colour to restore.
        near_clip = ((work.amax(dim=1, keepdim=True) - CLIP_FROM) / (1 - CLIP_FROM)).clamp(0, 1)
        c = c - F.relu(c) * near_clip * near_clip * (3 - 2 * near_clip)
        s = torch.minimum(g * torch.exp(c * math.log(2.0)), torch.full_like(g, self.max_chroma))
        return g, s

    def log_gain(self, thumb: torch.Tensor, work: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError("tonegrid hands photos tone fields (tone_fields), not a gain")

    def gain_offset(self, thumb: torch.Tensor, work: torch.Tensor):  # pragma: no cover
        raise NotImplementedError("tonegrid hands photos tone fields (tone_fields), not a gain")

    def _enhance(self, thumb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g, s = self.tone_fields(thumb, x)
        return (s * x + (g - s) * luminance(x)).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._enhance(self.thumbnail(x), x)


@register_model(ModelConfig(
    name="tonegrid",
    description="bilateral grid of monotone luma curves pinned at black and white, bounded chroma "
                "gain; from a 256-px thumbnail, applied at full resolution",
    fully_convolutional=False,
    photo_path="tone",
    paper="this package; after HDRNet (Gharbi et al. 2017) and Zero-DCE's pinned curves (Guo et al. 2020)",
))
def tonegrid(**kwargs) -> ToneGrid:
    return ToneGrid(**kwargs)


class ToneGridEnsemble(nn.Module):
    """The mean of several :class:`ToneGrid` s, handed to photos as one luma gain and one chroma
    gain.

    Each member maps a pixel to ``s_k x + (g_k - s_k) Y``; their mean is ``s x + (g - s) Y``
    with ``g``, ``s`` the members' mean gains, so the ensemble costs the photo nothing more than
    one model (only the thumbnail networks and the fields at the working resolution repeat).
    The mean of monotone curves pinned at black and white is one too, and the mean chroma gain
    stays under the cap.

    Parameters
    ----------
    members : list of dict
        Keyword arguments of each member's :class:`ToneGrid`.
    work_size : int
        Working resolution of :meth:`tone_fields`.
    """

    def __init__(self, members: list[dict] | tuple[dict, ...] = ({}, {}), work_size: int = 1024):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.work_size = int(work_size)
        self.members = nn.ModuleList(ToneGrid(**{**dict(kw), "work_size": self.work_size}) for kw in members)

    def photo_fields(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What photos get (photo path ``"tone"``): :meth:`tone_fields`."""
        return self.tone_fields(thumb, work)

    def tone_fields(self, thumb: torch.Tensor, work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' mean ``(luma gain, chroma gain)``, each (B, 1, h, w)."""
        fields = [member.tone_fields(thumb, work) for member in self.members]
        n = len(fields)
        return sum(f[0] for f in fields) / n, sum(f[1] for f in fields) / n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, s = self.tone_fields(GainGrid.thumbnail(x), x)
        return (s * x + (g - s) * luminance(x)).clamp(0, 1)


@register_model(ModelConfig(
    name="tonegrid-ensemble",
    description="the mean of several tonegrids, applied to the photo as one luma gain and one chroma gain",
    fully_convolutional=False,
    photo_path="tone",
    paper="this package",
))
def tonegrid_ensemble(**kwargs) -> ToneGridEnsemble:
    return ToneGridEnsemble(**kwargs)


def tone_ensemble_of(models: list[ToneGrid], *, work_size: int = 1024) -> ToneGridEnsemble:
    """A registered ``tonegrid-ensemble`` holding copies of trained ``tonegrid`` models' weights."""
    return members_copied_into("tonegrid-ensemble", models, ToneGrid, work_size=work_size,
                               caller="tone_ensemble_of", family="tonegrid")
