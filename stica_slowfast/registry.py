"""Component registries: everything user-selectable is chosen by name from a config.

Call contract of each registry (what ``REGISTRY.get(name)`` returns and how it is called):

* ``MODEL``    -- ``cls(cfg) -> nn.Module`` implementing :class:`stica_slowfast.models.api.Model` (the
  whole model <-> engine contract), selected by ``MODEL.MODEL_NAME``.
* ``BACKBONE`` -- ``fn(cfg) -> nn.Module`` selected by ``MODEL.ARCH`` (video) or ``STICA.AUDIO.ARCH``
  (audio). A video module maps video ``(B, C, T, H, W)`` to pooled features ``(B, D)``, has an
  ``out_dim: int`` attribute equal to D and a ``forward_feature_map(video) -> (B, D, t, h, w)`` method
  returning the last feature map. An audio module (name containing ``audio``) maps spectrograms
  ``(B, 1, F, Ta)`` to ``(B, D)``, with ``forward_feature_map -> (B, D, f, t)`` and
  ``forward_tokens -> (B, t, D)`` (one token per time step).
* ``LOSS``     -- ``fn(*tensors, **kwargs) -> Tensor``; losses are pure functions.
* ``DATASET``  -- ``cls(cfg, split) -> torch.utils.data.Dataset`` selected (case-insensitively) by
  ``TRAIN.DATASET`` / ``TEST.DATASET``; ``split`` is ``"train"``, ``"val"`` or ``"test"``.

Every registry is filled on its first lookup (``get``, ``in``, iteration) by importing the modules
:data:`REGISTERING_MODULES` names for it: this is the one place that knows what registers where, and it
imports them by name, so ``import stica_slowfast.losses`` (say) loads neither the models nor PyAV.
When PySlowFast (``slowfast``) is importable, ``import stica_slowfast`` also registers models, losses and
datasets into its tables (:func:`stica_slowfast.interop.pyslowfast.register`).
"""

import importlib
import threading
from typing import Dict, Iterator, Tuple

from fvcore.common.registry import Registry

#: Registry name -> the modules whose import registers its entries (``@REGISTRY.register()``); LOSS's
#: entries are the pure functions :mod:`stica_slowfast.losses` exports (``__all__``), registered here.
REGISTERING_MODULES: Dict[str, Tuple[str, ...]] = {
    "MODEL": ("stica_slowfast.models",),
    "BACKBONE": ("stica_slowfast.models",),
    "LOSS": ("stica_slowfast.losses",),
    "DATASET": ("stica_slowfast.data.datasets",),
}


class LazyRegistry(Registry):
    """An fvcore ``Registry`` that imports its :data:`REGISTERING_MODULES` before the first lookup."""

    def __init__(self, name: str, doc: str) -> None:
        super().__init__(name)
        self.__doc__ = doc
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()  # another thread's lookup waits for the imports to finish

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            # A lookup made while a registering module is being imported sees what is registered so far.
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                for module in REGISTERING_MODULES[self._name]:
                    imported = importlib.import_module(module)
                    if self._name == "LOSS":  # pure functions do not register themselves
                        for name in imported.__all__:
                            if name not in self._obj_map:
                                self._do_register(name, getattr(imported, name))
                self._loaded = True  # only after every import succeeded: a failed one is retried
            finally:
                self._loading = False

    def get(self, name: str):
        self._load()
        return super().get(name)

    def __contains__(self, name: str) -> bool:
        self._load()
        return super().__contains__(name)

    def __iter__(self) -> Iterator:
        self._load()
        return super().__iter__()


MODEL = LazyRegistry("MODEL", "SSL methods and classifiers, ``cls(cfg)``; selected by MODEL.MODEL_NAME.")
BACKBONE = LazyRegistry("BACKBONE", "Video/audio encoders, ``fn(cfg)``; selected by MODEL.ARCH / STICA.AUDIO.ARCH.")
LOSS = LazyRegistry("LOSS", "Pure loss functions.")
DATASET = LazyRegistry("DATASET", "Datasets, ``cls(cfg, split)``; selected by TRAIN.DATASET / TEST.DATASET.")


def get_dataset_class(name: str):
    """Look a dataset up by name, ignoring case (PySlowFast configs write ``kinetics``).

    The ``stica``-prefixed aliases under which the datasets are registered in PySlowFast
    (``sticakinetics``, see :mod:`stica_slowfast.interop.pyslowfast`) resolve too, so one YAML serves both
    entry points.
    """
    wanted = name.lower()
    for registered, obj in DATASET:
        if wanted in (registered.lower(), "stica" + registered.lower()):
            return obj
    raise KeyError(
        f"No dataset named {name!r}; registered: {sorted(n for n, _ in DATASET)}"
    )
