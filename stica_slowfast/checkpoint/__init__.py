"""Checkpoints: PySlowFast-compatible ``.pyth`` files written atomically and resumed from (:mod:`.io`),
and another run's weights taken into a model (:mod:`.pretrained`). Used by the engine and the models;
imports neither."""

from . import io, pretrained
from .io import *  # noqa: F401,F403  (the names of io.__all__)
from .pretrained import *  # noqa: F401,F403  (the names of pretrained.__all__)

__all__ = [*io.__all__, *pretrained.__all__]
