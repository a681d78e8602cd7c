"""Optional dependencies (PySlowFast): imported when present and importable, None otherwise."""

import importlib
import logging
import warnings
from types import ModuleType
from typing import Optional

__all__ = ["import_optional"]

logger = logging.getLogger(__name__)


def import_optional(module: str) -> Optional[ModuleType]:
    """The module, or None when it (or PySlowFast's own imports, e.g. detectron2) fails to import."""
    try:
        with warnings.catch_warnings():
            # Deprecations PySlowFast's imports trigger on a current stack (torch.jit.script in
            # pytorchvideo, torchvision's _transforms_video); nothing a user of this package can act on.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=r"The 'torchvision\.transforms\._", category=UserWarning)
            return importlib.import_module(module)
    except Exception as err:  # ImportError, or any error PySlowFast raises while importing itself
        logger.debug("%s not importable: %s", module, err)
        return None
