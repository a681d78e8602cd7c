"""stica_slowfast: self-supervised video representation learning as a PySlowFast plugin.

Importing the package registers every dataset, backbone, head and model by name (see
:mod:`stica_slowfast.registry`), and into PySlowFast's model registry when ``slowfast`` is importable.
"""

__version__ = "0.1.0"

from . import data, layers, losses, models  # noqa: E402,F401  (registration side effects)
from .registry import register_into_pyslowfast  # noqa: E402

register_into_pyslowfast()
