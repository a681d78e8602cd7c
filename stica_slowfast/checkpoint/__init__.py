"""Checkpoints: PySlowFast-compatible ``.pyth`` files written atomically and resumed from (:mod:`.io`),
and another run's weights taken into a model (:mod:`.pretrained`). Used by the engine and the models;
imports neither."""

from .io import (
    CheckpointMismatchError,
    checkpoint_dir,
    checkpoint_path,
    get_last_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_state,
    read_checkpoint,
    save_checkpoint,
)
from .pretrained import load_backbone_from_ssl_checkpoint, load_pool_if_present

__all__ = [
    "CheckpointMismatchError",
    "checkpoint_dir",
    "checkpoint_path",
    "list_checkpoints",
    "get_last_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_state",
    "read_checkpoint",
    "load_backbone_from_ssl_checkpoint",
    "load_pool_if_present",
]
