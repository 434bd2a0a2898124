"""The model registry: the one deliberate global of sice (as in timm).

Each architecture variant is a small function decorated with :func:`register_model` that builds a
plain ``nn.Module``. The :class:`ModelConfig` registered with it travels with the weights and
tells every consumer (enhancement, training, export) how the model must be fed.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch.nn as nn

from ..errors import ModelError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """How a registered model is fed and what it is.

    Attributes
    ----------
    name : str
        Registry name (``sice2018``).
    description : str
        One line for ``sice models``.
    aux : str
        ``"none"``: ``forward(rgb)``. ``"luminance_detail"``: ``forward(rgb, aux)`` with ``aux``
        (B, 2, H, W) = cat(L, D) from :func:`sice.decomposition.decompose` of the same image.
    fully_convolutional : bool
        True when every output pixel depends only on a neighbourhood of radius
        ``receptive_radius``: the enhancer may then cut the image into overlapping tiles.
        False for models that look at the whole (down-scaled) image.
    receptive_radius : int
        Pixels of context each side that an output pixel depends on (tile overlap).
    size_multiple : int
        Height and width the network needs to be divisible by; the enhancer pads (reflect) and
        crops back, so outputs always have the input's size.
    photo_path : {"tiles", "gain", "tone"}
        How a whole photo is enhanced (:mod:`sice.enhancement`): ``"tiles"``: ``forward`` on
        overlapping tiles (fully convolutional models only); ``"gain"`` and ``"tone"``: the model's
        ``photo_fields(thumb, work)`` gives fields at a working resolution that are applied at full
        resolution: ``"gain"``: (log2 gains[, offsets]), ``"tone"``: (luma gain, chroma gain).
    paper : str
        Citation of the architecture.
    """

    name: str
    description: str
    aux: str = "none"
    fully_convolutional: bool = True
    receptive_radius: int = 0
    size_multiple: int = 1
    photo_path: str = "tiles"
    paper: str = ""

    def __post_init__(self):
        if self.photo_path not in PHOTO_PATHS:
            raise ValueError(f"model {self.name!r}: photo_path must be one of {PHOTO_PATHS}, got {self.photo_path!r}")
        if self.photo_path == "tiles" and not self.fully_convolutional:
            raise ValueError(f"model {self.name!r}: only fully convolutional models can be run in tiles; "
                             "declare photo_path 'gain' or 'tone' and give the model photo_fields()")


#: How photos reach a model (:attr:`ModelConfig.photo_path`).
PHOTO_PATHS = ("tiles", "gain", "tone")


_MODELS: dict[str, tuple[Callable[..., nn.Module], ModelConfig]] = {}


def register_model(config: ModelConfig):
    """Decorator registering a builder ``fn(**kwargs) -> nn.Module`` under ``config.name``."""

    def decorator(fn: Callable[..., nn.Module]):
        if config.name in _MODELS:
            raise ValueError(f"model {config.name!r} is registered twice")
        _MODELS[config.name] = (fn, config)
        return fn

    return decorator


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def model_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a registered model; :class:`ModelError` if unknown."""
    try:
        return _MODELS[name][1]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model with fresh (MSRA) weights; its config is ``model.sice_config``."""
    builder, config = _MODELS.get(name, (None, None))
    if builder is None:
        model_config(name)  # raises with the list of known names
    model = builder(**kwargs)
    if config.photo_path != "tiles" and not (callable(getattr(model, "photo_fields", None))
                                             and isinstance(getattr(model, "work_size", None), int)):
        raise TypeError(f"model {name!r} declares photo_path {config.photo_path!r}: it needs photo_fields() "
                        "and an int work_size (the long side of the image its fields are computed at)")
    model.sice_config = config
    model.sice_kwargs = dict(kwargs)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
