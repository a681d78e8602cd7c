"""Component registries: everything user-selectable is chosen by name from a config.

Call contract of each registry (what ``REGISTRY.get(name)`` returns and how it is called):

* ``MODEL``    -- ``cls(cfg) -> nn.Module``, selected by ``MODEL.MODEL_NAME``. The module exposes
  ``forward_train(batch) -> dict`` (with a scalar ``"loss"`` tensor plus float-able log values) and
  ``forward_features(video) -> (B, D)``; classification models also map ``forward(video) -> (B, K)``
  logits. Optional hooks the engine calls when present: ``on_epoch_start(epoch)`` and
  ``on_step_end(cur_step, max_steps)``.
* ``BACKBONE`` -- ``fn(cfg) -> nn.Module`` selected by ``MODEL.ARCH`` (video) or ``STICA.AUDIO.ARCH``
  (audio). A video module maps video ``(B, C, T, H, W)`` to pooled features ``(B, D)``, has an
  ``out_dim: int`` attribute equal to D and a ``forward_feature_map(video) -> (B, D, t, h, w)`` method
  returning the last feature map. An audio module (name containing ``audio``) maps spectrograms
  ``(B, 1, F, Ta)`` to ``(B, D)``, with ``forward_feature_map -> (B, D, f, t)`` and
  ``forward_tokens -> (B, t, D)`` (one token per time step).
* ``HEAD``     -- ``cls(**kwargs) -> nn.Module``; heads are cfg-free building blocks.
* ``LOSS``     -- ``fn(*tensors, **kwargs) -> Tensor``; losses are pure functions.
* ``DATASET``  -- ``cls(cfg, split) -> torch.utils.data.Dataset`` selected (case-insensitively) by
  ``TRAIN.DATASET`` / ``TEST.DATASET``; ``split`` is ``"train"``, ``"val"`` or ``"test"``.

``import stica_slowfast`` fills the registries. When PySlowFast (``slowfast``) is importable, the models
are also registered into its ``MODEL_REGISTRY`` (see :func:`register_into_pyslowfast`).
"""

import logging

from fvcore.common.registry import Registry

logger = logging.getLogger(__name__)

MODEL = Registry("MODEL")
MODEL.__doc__ = "SSL methods and classifiers, ``cls(cfg)``; selected by MODEL.MODEL_NAME."

BACKBONE = Registry("BACKBONE")
BACKBONE.__doc__ = "Video/audio encoders, ``fn(cfg)``; selected by MODEL.ARCH / STICA.AUDIO.ARCH."

HEAD = Registry("HEAD")
HEAD.__doc__ = "Projection MLPs, predictors, prototypes, classifiers (cfg-free, keyword args)."

LOSS = Registry("LOSS")
LOSS.__doc__ = "Pure loss functions."

DATASET = Registry("DATASET")
DATASET.__doc__ = "Datasets, ``cls(cfg, split)``; selected by TRAIN.DATASET / TEST.DATASET."


def get_dataset_class(name: str):
    """Look a dataset up by name, ignoring case (PySlowFast configs write ``kinetics``)."""
    for registered, obj in DATASET:
        if registered.lower() == name.lower():
            return obj
    raise KeyError(
        f"No dataset named {name!r}; registered: {sorted(n for n, _ in DATASET)}"
    )


def register_into_pyslowfast() -> bool:
    """Also expose our models in PySlowFast's ``MODEL_REGISTRY`` if PySlowFast is importable.

    Our names never collide with PySlowFast's own (``ContrastiveModel``, ``ResNet``, ``SlowFast`` ...);
    an existing entry is left untouched. Returns True if the bridge was installed.
    """
    try:
        from slowfast.models.build import MODEL_REGISTRY as SF_MODEL_REGISTRY
    except Exception as err:  # ImportError, or its own import-time failures (e.g. no detectron2)
        logger.debug("PySlowFast not importable, bridge skipped: %s", err)
        return False
    for name, obj in MODEL:
        if name not in SF_MODEL_REGISTRY:
            SF_MODEL_REGISTRY._do_register(name, obj)
    return True
