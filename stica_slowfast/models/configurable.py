"""Config bridge for registered models: ``Model(cfg)`` and ``Model(**kwargs)`` both work.

The pattern follows detectron2's ``from_config``: a model declares its constructor with explicit,
typed keyword arguments and a classmethod ``from_config(cfg) -> dict`` that reads the config and
returns those arguments. Decorating ``__init__`` with :func:`configurable` lets the registry call
``Model(cfg)`` while tests and users call ``Model(backbone=..., num_classes=...)`` directly::

    class RhoSimCLR(nn.Module):
        @configurable
        def __init__(self, *, backbone: nn.Module, temperature: float) -> None:
            ...

        @classmethod
        def from_config(cls, cfg) -> dict:
            return {"backbone": build_backbone(cfg), "temperature": cfg.CONTRASTIVE.T}

    RhoSimCLR(cfg)                       # registry path: kwargs = RhoSimCLR.from_config(cfg)
    RhoSimCLR(cfg, temperature=0.2)      # explicit kwargs override what from_config returned
    RhoSimCLR(backbone=b, temperature=0.1)  # cfg-free path, unchanged

``from_config`` is looked up on ``type(self)``, so a subclass may override it; a decorated subclass
``__init__`` calling ``super().__init__(**kwargs)`` goes straight through (no cfg is passed on).
"""

import functools
from typing import Any, Callable

from yacs.config import CfgNode  # base class of fvcore's (and therefore PySlowFast's) CfgNode

__all__ = ["configurable"]


def configurable(init_func: Callable[..., None]) -> Callable[..., None]:
    """Decorate ``__init__`` so that a config as the first argument is expanded by ``from_config``.

    Args:
        init_func: the class's ``__init__``; its class must define ``from_config`` as a classmethod
            returning a dict of ``__init__`` keyword arguments.

    Returns:
        The wrapped ``__init__``. Called with a ``CfgNode`` (positionally or as ``cfg=``), it calls
        ``init_func(self, **{**from_config(cfg), **other_kwargs})``; otherwise it calls
        ``init_func`` with the arguments as given.
    """
    if init_func.__name__ != "__init__":
        raise TypeError(f"@configurable decorates __init__, not {init_func.__name__!r}")

    @functools.wraps(init_func)
    def wrapped_init(self, *args: Any, **kwargs: Any) -> None:
        cfg = None
        if args and isinstance(args[0], CfgNode):
            cfg, args = args[0], args[1:]
        elif isinstance(kwargs.get("cfg"), CfgNode):
            cfg = kwargs.pop("cfg")
        if cfg is None:
            init_func(self, *args, **kwargs)
            return
        if args:
            raise TypeError(
                f"{type(self).__name__}(cfg, ...) takes keyword overrides only, got {len(args)} "
                "extra positional argument(s)"
            )
        from_config = getattr(type(self), "from_config", None)
        if from_config is None:
            raise AttributeError(
                f"{type(self).__name__} uses @configurable but defines no from_config(cfg) classmethod"
            )
        init_kwargs = from_config(cfg)
        if not isinstance(init_kwargs, dict):
            raise TypeError(
                f"{type(self).__name__}.from_config must return a dict, got {type(init_kwargs).__name__}"
            )
        init_kwargs.update(kwargs)  # explicit keyword arguments win over the config
        init_func(self, **init_kwargs)

    return wrapped_init
