"""stica_slowfast: self-supervised video representation learning as a PySlowFast plugin.

Importing the package registers every dataset, backbone, head, loss and model by name (see
:mod:`stica_slowfast.registry`), and into PySlowFast's model, loss and dataset tables when ``slowfast``
is importable (:func:`stica_slowfast.slowfast_bridge.register`).
"""

__version__ = "0.1.0"

from . import data, layers, losses, models, slowfast_bridge  # noqa: E402,F401  (registration side effects)
from .registry import register_into_pyslowfast  # noqa: E402,F401  (alias of slowfast_bridge.register)

slowfast_bridge.register()
