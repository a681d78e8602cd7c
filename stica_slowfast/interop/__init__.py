"""PySlowFast interoperation: our components in its registries and config (:mod:`.pyslowfast`), and
checkpoints between its ResNet layouts and ours (:mod:`.convert`)."""

from .pyslowfast import register

__all__ = ["register"]
