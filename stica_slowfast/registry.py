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
* ``LOSS``     -- ``fn(*tensors, **kwargs) -> Tensor``; losses are pure functions.
* ``DATASET``  -- ``cls(cfg, split) -> torch.utils.data.Dataset`` selected (case-insensitively) by
  ``TRAIN.DATASET`` / ``TEST.DATASET``; ``split`` is ``"train"``, ``"val"`` or ``"test"``.

``import stica_slowfast`` fills the registries. When PySlowFast (``slowfast``) is importable, models,
losses and datasets are also registered into its tables (:func:`stica_slowfast.slowfast_bridge.register`).
"""

from fvcore.common.registry import Registry

MODEL = Registry("MODEL")
MODEL.__doc__ = "SSL methods and classifiers, ``cls(cfg)``; selected by MODEL.MODEL_NAME."

BACKBONE = Registry("BACKBONE")
BACKBONE.__doc__ = "Video/audio encoders, ``fn(cfg)``; selected by MODEL.ARCH / STICA.AUDIO.ARCH."

LOSS = Registry("LOSS")
LOSS.__doc__ = "Pure loss functions."

DATASET = Registry("DATASET")
DATASET.__doc__ = "Datasets, ``cls(cfg, split)``; selected by TRAIN.DATASET / TEST.DATASET."


def get_dataset_class(name: str):
    """Look a dataset up by name, ignoring case (PySlowFast configs write ``kinetics``).

    The ``stica``-prefixed aliases under which the datasets are registered in PySlowFast
    (``sticakinetics``, see :mod:`stica_slowfast.slowfast_bridge`) resolve too, so one YAML serves both
    entry points.
    """
    wanted = name.lower()
    for registered, obj in DATASET:
        if wanted in (registered.lower(), "stica" + registered.lower()):
            return obj
    raise KeyError(
        f"No dataset named {name!r}; registered: {sorted(n for n, _ in DATASET)}"
    )


def register_into_pyslowfast() -> bool:
    """Alias of :func:`stica_slowfast.slowfast_bridge.register` (kept for existing callers)."""
    from .slowfast_bridge import register  # local: the bridge imports this module

    return register()
