"""stica_slowfast: self-supervised video representation learning as a PySlowFast plugin.

Components are chosen by name from the registries of :mod:`stica_slowfast.registry`, which import the
modules that fill them on first use. When PySlowFast (``slowfast``) is installed, importing this package
also registers our models, losses and datasets into its tables
(:func:`stica_slowfast.interop.pyslowfast.register`); without it, the import is light.
"""

import importlib.util

__version__ = "0.1.0"

if importlib.util.find_spec("slowfast") is not None:
    from .interop import register as _register_into_pyslowfast

    _register_into_pyslowfast()
