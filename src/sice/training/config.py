"""Training configuration: typed sections, TOML files, ``--set key=value`` overrides.

A run is described by one :class:`TrainConfig`. Defaults are the released recipe of Cai et al.
[1]_ where it is known (plain L2, SGD with momentum 0.9 and weight decay 1e-4, batch 5, 320x320
patches) adapted to what a CPU can do; ``configs/*.toml`` hold named variants. The resolved
config (defaults + file + overrides) is written into the run folder as ``config.toml`` so
``sice train --config RUN/config.toml`` repeats the run.

References
----------
.. [1] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE Trans. Image Processing 27(4):2049-2062, 2018.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class ModelSection:
    #: Registry name (``sice models``).
    name: str = "sice2018"
    #: Builder keyword arguments, e.g. ``{width = 16}`` for a small variant.
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DataSection:
    #: ``"patches"``: random patch_size crops (fully convolutional models);
    #: ``"full"``: whole images shrunk to full_size on the long side (models that see the
    #: whole image, ``fully_convolutional == False``).
    mode: str = "patches"
    #: Which frames are inputs: ``"under"``, ``"over"`` or ``"both"`` (sice.dataset.layout.select_frames).
    direction: str = "under"
    under_max: float = 0.9
    over_min: float = 1.1
    #: Images are resized by this factor before anything else (released recipe: 1/3 of the
    #: 3000x2000..6000x4000 originals). 1.0 for the 512x512 ``sice512`` data.
    scale: float = 1.0
    patch_size: int = 128
    #: Random patches cut from each training pair per epoch.
    patches_per_image: int = 1
    #: ``"full"`` mode: images are shrunk (never enlarged) to this long side, aspect kept.
    full_size: int = 512
    #: Random horizontal/vertical flips and 90-degree rotations.
    augment: bool = True
    #: Random permutation of the RGB channels, the same for frame and label (6x the colour
    #: casts a small set of scenes shows; the frame-to-label relation is kept).
    colour_augment: bool = False
    #: Frames are re-exposed by 2**u stops, u uniform in [-jitter, jitter], in linear light
    #: (sRGB decoded, scaled, clipped, re-encoded); the label is kept. Teaches that the label
    #: does not depend on the exact exposure between two bracketed frames. 0: off.
    exposure_jitter: float = 0.0
    #: Per process; with DDP the global batch is batch_size * world size.
    batch_size: int = 5
    split_seed: int = 0
    ratios: list = dataclasses.field(default_factory=lambda: [0.7, 0.1, 0.2])
    official_test: bool = False
    #: Decomposition of models fed cat(L, D): "auto" (exact WLS up to 1 MP, as the enhancer
    #: does by default), "exact" or "fast" (an approximation, ~30x faster on a CPU).
    aux_method: str = "auto"
    #: Where computed cat(L, D) are kept for resumed and repeated runs: ``"run"`` (the run
    #: folder's ``aux_cache/``), a folder (runs on the same data may share it), or ``""`` (none).
    aux_cache: str = "run"
    #: Training frames per scene (0: all selected frames; k: k spread over them).
    train_frames_per_scene: int = 0
    #: Validation frames per val scene (0: all selected frames; k: k frames spread over them).
    val_frames_per_scene: int = 1
    #: Validation images are resized so their long side is at most this (0: training scale).
    val_size: int = 0
    #: Loss weight of pixels whose input lost its detail: clipped (every channel >= 250/255) or
    #: black (every channel <= 2/255). The label's detail there came from other frames of the
    #: sequence and cannot come from this input; at weight 1 the loss pulls clipped skies
    #: towards the label's grey instead of leaving them white. Scales pred and label alike
    #: (exact for l1, squared for l2; not used by the other terms).
    lost_weight: float = 1.0
    #: Where the input's brightest channel is above this (0: off), the training target is
    #: blended from the label towards a gamma of the input, fully at white
    #: (``training.objective.highlight_rolloff_target``): a smooth roll-off into what the input clipped.
    rolloff_from: float = 0.0


@dataclasses.dataclass
class OptimSection:
    #: ``"sgd"``, ``"adam"`` or ``"adamw"``.
    name: str = "sgd"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: list = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    #: Clip the global gradient norm to this (0: off).
    grad_clip: float = 0.0


@dataclasses.dataclass
class ScheduleSection:
    #: ``"cosine"`` (to min_lr_ratio * lr at the last step), ``"step"`` (times gamma every
    #: step_every steps) or ``"constant"``.
    name: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    step_every: int = 1000
    gamma: float = 0.1


@dataclasses.dataclass
class RunSection:
    #: Total optimisation steps (0: use epochs).
    steps: int = 0
    epochs: int = 10
    seed: int = 0
    #: Steps between checkpoints (``last.pt``); one is always written at the end.
    checkpoint_every: int = 200
    #: Steps between CSV log rows (mean loss over them).
    log_every: int = 10
    #: Steps between validations (0: once per epoch, and at the end).
    val_every: int = 0
    #: Validate once before the first step too (the starting point of the curve).
    val_at_start: bool = True
    #: ``"auto"`` (on for CPU, off for CUDA), ``true`` or ``false``.
    channels_last: Any = "auto"
    #: ``"auto"``, ``"cpu"``, ``"cuda"``; under torchrun each rank takes cuda:LOCAL_RANK.
    device: str = "auto"
    #: torch CPU threads per process (0: leave torch's default).
    threads: int = 0
    #: Stop cleanly (checkpoint written) after this many seconds of training (0: no limit);
    #: ``--resume`` continues, so a long run fits in several time-boxed sessions.
    time_limit_s: float = 0.0
    #: Redraw the PNG of the curves every this many seconds at most.
    plot_every_s: float = 30.0


SECTIONS = {"model": ModelSection, "data": DataSection, "optim": OptimSection,
            "schedule": ScheduleSection, "run": RunSection}


@dataclasses.dataclass
class TrainConfig:
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    #: Loss terms and weights for :func:`sice.training.losses.build_loss` (released: plain L2).
    loss: dict = dataclasses.field(default_factory=lambda: {"l2": 1.0})
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    schedule: ScheduleSection = dataclasses.field(default_factory=ScheduleSection)
    run: RunSection = dataclasses.field(default_factory=RunSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "config") -> "TrainConfig":
        cfg = cls()
        cfg.update(d, source=source)
        return cfg

    def update(self, d: dict, *, source: str = "config") -> None:
        """Merge a nested dict into this config, checking names and types."""
        for section, values in d.items():
            if section == "loss":
                if not isinstance(values, dict) or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
                    raise ValueError(f"{source}: [loss] must map loss names to numeric weights, got {values!r}")
                self.loss = {k: float(v) for k, v in values.items()}
                continue
            if section not in SECTIONS:
                raise ValueError(f"{source}: unknown section [{section}]; known: loss, {', '.join(SECTIONS)}")
            if not isinstance(values, dict):
                raise ValueError(f"{source}: [{section}] must be a table, got {values!r}")
            obj = getattr(self, section)
            for key, value in values.items():
                setattr(obj, key, _checked(SECTIONS[section], section, key, value, source))
        self.validate(source)

    def set(self, assignment: str) -> None:
        """Apply one ``section.key=value`` override (value in TOML syntax; bare words are strings)."""
        if "=" not in assignment:
            raise ValueError(f"--set expects section.key=value, got {assignment!r}")
        dotted, raw = (s.strip() for s in assignment.split("=", 1))
        if dotted.count(".") < 1:
            raise ValueError(f"--set expects section.key=value, got {assignment!r}")
        section, key = dotted.split(".", 1)
        value = _parse_value(raw)
        if section == "model" and key.startswith("kwargs."):
            self.model.kwargs[key.split(".", 1)[1]] = value
            return
        if section == "loss":
            self.update({"loss": {**self.loss, key: value}}, source=f"--set {assignment}")
            return
        self.update({section: {key: value}}, source=f"--set {assignment}")

    def validate(self, source: str = "config") -> None:
        d, o, s, r = self.data, self.optim, self.schedule, self.run
        checks = [
            (d.aux_method in ("auto", "exact", "fast"), f"data.aux_method must be auto/exact/fast, got {d.aux_method!r}"),
            (d.mode in ("patches", "full"), f"data.mode must be 'patches' or 'full', got {d.mode!r}"),
            (d.direction in ("under", "over", "both"), f"data.direction must be under/over/both, got {d.direction!r}"),
            (0 < d.under_max <= 1 <= d.over_min, f"need 0 < data.under_max <= 1 <= data.over_min, got {d.under_max}, {d.over_min}"),
            (0 < d.scale <= 1, f"data.scale must be in (0, 1], got {d.scale}"),
            (d.patch_size >= 4, f"data.patch_size must be >= 4, got {d.patch_size}"),
            (d.full_size >= 8, f"data.full_size must be >= 8, got {d.full_size}"),
            (d.batch_size >= 1, f"data.batch_size must be >= 1, got {d.batch_size}"),
            (d.train_frames_per_scene >= 0 and d.val_frames_per_scene >= 0,
             "data.train_frames_per_scene and data.val_frames_per_scene must be >= 0"),
            (d.patches_per_image >= 1, f"data.patches_per_image must be >= 1, got {d.patches_per_image}"),
            (0 <= d.lost_weight <= 1, f"data.lost_weight must be in [0, 1], got {d.lost_weight}"),
            (0 <= d.rolloff_from < 1, f"data.rolloff_from must be in [0, 1), got {d.rolloff_from}"),
            (len(d.ratios) == 3 and min(d.ratios) >= 0 and sum(d.ratios) > 0, f"data.ratios must be 3 non-negative numbers, got {d.ratios}"),
            (o.name in ("sgd", "adam", "adamw"), f"optim.name must be sgd/adam/adamw, got {o.name!r}"),
            (o.lr > 0 and math.isfinite(o.lr), f"optim.lr must be > 0, got {o.lr}"),
            (o.grad_clip >= 0, f"optim.grad_clip must be >= 0, got {o.grad_clip}"),
            (s.name in ("cosine", "step", "constant"), f"schedule.name must be cosine/step/constant, got {s.name!r}"),
            (s.step_every >= 1, f"schedule.step_every must be >= 1, got {s.step_every}"),
            (r.steps >= 0 and r.epochs >= 0 and (r.steps or r.epochs), f"run.steps or run.epochs must be > 0, got {r.steps}, {r.epochs}"),
            (r.checkpoint_every >= 1 and r.log_every >= 1, "run.checkpoint_every and run.log_every must be >= 1"),
            (r.time_limit_s >= 0, f"run.time_limit_s must be >= 0, got {r.time_limit_s}"),
            (r.channels_last in ("auto", True, False), f"run.channels_last must be auto/true/false, got {r.channels_last!r}"),
            (bool(self.loss) and all(w >= 0 for w in self.loss.values()), f"[loss] needs at least one term with weight >= 0, got {self.loss}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{source}: {message}")


def _checked(cls, section: str, key: str, value, source: str):
    hints = typing.get_type_hints(cls)
    if key not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ValueError(f"{source}: unknown key {section}.{key}; known: {known}")
    want = hints[key]
    if want is Any:
        return value
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        raise ValueError(f"{source}: {section}.{key} must be {want.__name__}, got {value!r}")
    return value


def _parse_value(raw: str):
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: `--set optim.name=adamw`


def load_config(path: os.PathLike | str | None = None, overrides: list[str] | tuple = ()) -> TrainConfig:
    """Defaults, then the TOML file ``path`` (if any), then ``section.key=value`` overrides.

    Raises
    ------
    ValueError
        Unknown sections/keys, wrong types or invalid values; the message names the file or the
        override.
    OSError
        ``path`` cannot be read.
    """
    cfg = TrainConfig()
    if path is not None:
        path = Path(path)
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not valid TOML ({exc})") from None
        cfg.update(data, source=str(path))
    for item in overrides:
        cfg.set(item)
    return cfg


def dumps_toml(d: dict) -> str:
    """TOML text of a nested dict of scalars, lists and tables (as :meth:`TrainConfig.to_dict` makes).

    Written by hand because the standard library reads TOML (tomllib) but cannot write it.
    """
    lines: list[str] = []
    for section, values in d.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{_key(key)} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML: {v!r}")
