"""The model <-> engine contract: everything the engine, evaluator, optimiser and retrieval read of a
registered MODEL, written once.

A method implements :class:`Model` (most simply by subclassing :class:`ModelBase`, which supplies every
optional hook) and is registered in :data:`~stica_slowfast.registry.MODEL`; the engine never looks at a
model's name or probes it for attributes: it reads a model through :func:`contract` (and
:func:`audio_visual`), which checks the contract once and names what is missing.

When each member is read (B batch, K classes, D feature size)::

    build      contract(model)                       every member present, or a TypeError naming them
    optimiser  model.lr_scales                       {submodule name: LR multiplier} of its param groups
    init       model.load_pretrained(path, layout=, encoder=) -> epoch
                                                     TRAIN.CHECKPOINT_FILE_PATH (another run's weights; its
                                                     TRAIN.CHECKPOINT_TYPE and TRAIN.CHECKPOINT_ENCODER)
    epoch      model.on_epoch_start(epoch)           before the epoch's first step (0-based epoch)
    step       model.forward_train(batch) -> {"loss": scalar tensor, name: scalar tensor, ...}
               model.on_step_end(step, max_steps)    after the optimiser step (1-based step)
    evaluate   model.predicts_labels                 True: forward(x) -> (B, K) logits, val/test top-1
               model.input_key                       the batch entry evaluated ("video" or "audio")
               model.forward_features(x) -> (B, D)   linear-probe features, kNN, retrieval
    retrieval  audio_visual(model)                   embed_video / embed_audio -> (B, E), or None

``forward_train``'s log values are 0-dim detached tensors (or numbers already on the host, e.g. a
momentum): the engine moves the tensors to the host once per ``LOG_PERIOD``, so a method adds no host
sync to the step. Every step of a run must return the same log names (the epoch's averages are
all-reduced over processes name by name).
"""

from typing import Dict, Mapping, Optional, Protocol, runtime_checkable

import torch
from torch import nn

from stica_slowfast.checkpoint import CheckpointFileError, load_checkpoint
from stica_slowfast.checkpoint.layouts import AUTO
from stica_slowfast.utils.misc import unwrap

__all__ = ["Model", "AudioVisualModel", "ModelBase", "contract", "audio_visual"]


@runtime_checkable
class Model(Protocol):
    """What the engine reads of every registered MODEL (see the module docstring for when)."""

    #: Whether ``forward(x)`` gives class logits ``(B, K)`` (classifiers, probes) or features (SSL).
    predicts_labels: bool
    #: The batch entry the model evaluates: ``"video"`` (``(B, C, T, H, W)`` views) or ``"audio"``.
    input_key: str
    #: ``{submodule name: LR multiplier}`` for the optimiser's param groups (empty: all 1).
    lr_scales: Mapping[str, float]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` when ``predicts_labels``, else the same as :meth:`forward_features`."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, D)`` of ``batch[input_key]`` views (probes, kNN, retrieval)."""

    def forward_train(self, batch: Dict) -> Dict[str, torch.Tensor]:
        """One step: ``{"loss": scalar tensor with graph, log name: 0-dim detached tensor or number}``,
        the same names at every step."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before epoch ``epoch``'s (0-based) first step."""

    def on_step_end(self, cur_step: int, max_steps: int) -> None:
        """Called after the optimiser step ``cur_step`` (1-based) of ``max_steps`` (EMA updates)."""

    def load_pretrained(self, path: str, *, layout: str = AUTO, encoder: str = "online") -> int:
        """Initialise from another run's checkpoint (ours, or another code base's: ``layout``
        ``"pytorch"`` recognises it, :mod:`stica_slowfast.checkpoint.layouts`); ``encoder`` picks a BYOL /
        MoCo checkpoint's online or momentum encoder. Returns its stored 0-based epoch (-1: none)."""


@runtime_checkable
class AudioVisualModel(Model, Protocol):
    """A model with a joint video-audio space (cross-modal retrieval)."""

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """Joint-space embeddings ``(B, E)`` of video ``(B, C, T, H, W)``."""

    def embed_audio(self, spec: torch.Tensor) -> torch.Tensor:
        """Joint-space embeddings ``(B, E)`` of spectrograms ``(B, 1, F, Ta)``."""


#: Values of ``MODEL.HEAD_ACT`` (PySlowFast's key): what a classifier returns to PySlowFast's eval loops.
HEAD_ACTS = ("softmax", "sigmoid", "none")


def called_by_pyslowfast(x) -> bool:
    """Whether a model input comes from PySlowFast's loops, which pass a list of pathway tensors
    (our engine passes a tensor)."""
    return isinstance(x, (list, tuple))


def head_activation(logits: torch.Tensor, act: str) -> torch.Tensor:
    """``MODEL.HEAD_ACT`` of class logits ``(B, K)``, as PySlowFast's heads apply it in eval mode."""
    if act == "softmax":
        return logits.softmax(dim=1)
    if act == "sigmoid":
        return logits.sigmoid()
    if act == "none":
        return logits
    raise ValueError(f"MODEL.HEAD_ACT must be one of {list(HEAD_ACTS)}, got {act!r}")


class ModelBase(nn.Module):
    """Defaults for every optional member of :class:`Model`: an SSL model of video that takes all
    of another run's checkpoint, needs no hooks and scales no learning rate."""

    predicts_labels = False
    input_key = "video"

    def __init__(self) -> None:
        super().__init__()
        self.lr_scales: Dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (SSL models predict no labels).

        Raises:
            TypeError: called as PySlowFast's train/test loops call a model (a list of pathways),
                whose loss and meters would take these features for class scores.
        """
        if called_by_pyslowfast(x):
            raise TypeError(f"{type(self).__name__} is a self-supervised method: it trains with this "
                            f"package's engine (python tools/run_net.py of stica_slowfast, which calls "
                            f"forward_train), not PySlowFast's loop, which would read its features as "
                            f"class scores; PySlowFast can train and test LinearProbe on its checkpoint")
        return self.forward_features(x)

    def on_epoch_start(self, epoch: int) -> None:
        """No-op."""

    def on_step_end(self, cur_step: int, max_steps: int) -> None:
        """No-op."""

    def load_pretrained(self, path: str, *, layout: str = AUTO, encoder: str = "online") -> int:
        """The whole model state of ``path`` (strict, in our names); returns its stored epoch."""
        if encoder != "online":
            raise CheckpointFileError(
                path, f"cannot give {type(self).__name__} its momentum encoder (TRAIN.CHECKPOINT_ENCODER "
                      f"{encoder}): that initialises the backbone of a LinearProbe or VideoClassifier; this "
                      "model loads the whole checkpoint")
        return load_checkpoint(path, self, layout=layout)


def _missing(model: nn.Module, protocol: type) -> list:
    members = [name for base in protocol.__mro__ if base not in (Protocol, object)
               for name in (*getattr(base, "__annotations__", {}), *vars(base)) if not name.startswith("_")]
    return sorted({name for name in members if not hasattr(model, name)})


def contract(model: nn.Module) -> Model:
    """``model`` (a DDP wrapper unwrapped) as a :class:`Model`.

    Raises:
        TypeError: naming the members of :class:`Model` the model lacks.
    """
    inner = unwrap(model)
    if not isinstance(inner, Model):
        raise TypeError(f"{type(inner).__name__} does not implement stica_slowfast.models.api.Model: missing "
                        f"{', '.join(_missing(inner, Model))} (subclass ModelBase for the defaults)")
    return inner


def audio_visual(model: nn.Module) -> Optional[AudioVisualModel]:
    """``model`` as an :class:`AudioVisualModel`, or None when it has no joint video-audio space."""
    inner = unwrap(model)
    return inner if isinstance(inner, AudioVisualModel) else None
