"""Logging in PySlowFast's shape: ``OUTPUT_DIR/stdout.log`` and ``json_stats: {...}`` lines.

Only the master process writes files; other ranks log warnings and errors to the console.
"""

import logging
import os
import sys
from decimal import Decimal
from typing import Any, Dict

import simplejson

from .distributed import is_master_proc
from .io import PathManager

_FORMAT = "[%(asctime)s][%(levelname)s] %(name)s:%(lineno)d: %(message)s"
_JSON_LOG = "json_stats.log"


def setup_logging(output_dir: str = "") -> None:
    """Send the package's log records to stdout and, on the master, to ``output_dir/stdout.log``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO if is_master_proc() else logging.WARNING)
    formatter = logging.Formatter(_FORMAT, datefmt="%m/%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    root.addHandler(console)
    if output_dir and is_master_proc():
        PathManager.mkdirs(output_dir)
        stream = PathManager.open(os.path.join(output_dir, "stdout.log"), "a", buffering=1)
        to_file = logging.StreamHandler(stream)
        to_file.setFormatter(formatter)
        root.addHandler(to_file)
    for noisy in ("fvcore", "iopath", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # tensors / numpy scalars
        value = value.item()
    if isinstance(value, float):
        return Decimal(f"{value:.6g}")
    return value


def log_json_stats(stats: Dict[str, Any], output_dir: str = "", to_file: bool = False) -> None:
    """Log ``json_stats: {...}``; with ``to_file`` also append the record to ``json_stats.log``.

    Args:
        stats: a flat record; must have ``_type`` (``train_iter``, ``train_epoch``, ``val_epoch``,
            ``test_final`` ...).
        output_dir: run directory holding ``json_stats.log``.
        to_file: append to ``output_dir/json_stats.log`` (epoch-level records).
    """
    line = simplejson.dumps({k: _jsonable(v) for k, v in stats.items()}, sort_keys=True, use_decimal=True)
    logging.getLogger("stica_slowfast").info("json_stats: %s", line)
    if to_file and output_dir and is_master_proc():
        with PathManager.open(os.path.join(output_dir, _JSON_LOG), "a") as f:
            f.write(line + "\n")
