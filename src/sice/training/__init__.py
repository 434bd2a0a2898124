"""Training networks on SICE-layout data (``sice train``): config, patches, the trainer, DDP, logs.

``train(dataset, run_dir, cfg)`` is the one entry point; :func:`load_config` builds ``cfg`` from
defaults, a TOML file and ``section.key=value`` overrides. See docs/training.md.
"""
from .config import TrainConfig, load_config
from .checkpoints import read_training_checkpoint
from .trainer import TrainResult, Trainer, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "load_config", "read_training_checkpoint", "train"]
