"""Networks: a registry of named architectures and the checkpoint format.

``create_model(name)`` builds one, ``list_models()`` names them, ``load_model(name_or_path)``
gives a ready model from a registry name, a checkpoint file, or the shipped default weights.
"""
from ._registry import (
    ModelConfig,
    count_parameters,
    create_model,
    list_models,
    model_config,
    register_model,
)
from .checkpoint import load_checkpoint, load_model, save_checkpoint

# Importing the architecture modules registers their models.
from . import can, gaingrid, hdrnet, sice2018, tonegrid  # noqa: F401,E402

__all__ = [
    "ModelConfig",
    "count_parameters",
    "create_model",
    "list_models",
    "model_config",
    "register_model",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
