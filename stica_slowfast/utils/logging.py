"""Logging in PySlowFast's shape: ``OUTPUT_DIR/stdout.log`` and ``json_stats: {...}`` lines.

Only the master process writes files; other ranks log warnings and errors to the console.
"""

import logging
import os
import sys
from decimal import Decimal
from typing import Any, Dict, Optional

import simplejson

from .distributed import is_master_proc
from .io import PathManager, atomic_open

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


def _record_epoch(line: str) -> Optional[int]:
    """The 1-based epoch of a json_stats.log line (``"epoch": "3/10"`` -> 3); None when it has none.

    Raises:
        ValueError: the line is not a JSON record (e.g. a line torn by a kill mid-append).
    """
    record = simplejson.loads(line)
    epoch = record.get("epoch") if isinstance(record, dict) else None
    return None if epoch is None else int(str(epoch).split("/")[0])


def drop_json_stats_after(output_dir: str, num_epochs: int) -> int:
    """Remove the ``json_stats.log`` records of epochs after ``num_epochs`` (1-based), in place.

    A run resumed from the checkpoint of epoch ``num_epochs`` computes the later epochs again; the
    records an interrupted run wrote for them (an epoch finished but not checkpointed) would otherwise
    appear twice. Records without an epoch (``test_final``, ``knn_test`` ...) are kept; a torn line
    (killed mid-append) is dropped. The file is rewritten atomically, and only when something changes.

    Args:
        output_dir: run directory holding ``json_stats.log``.
        num_epochs: epochs covered by the checkpoint the run starts from (0 = none).

    Returns:
        The number of lines removed.
    """
    path = os.path.join(output_dir, _JSON_LOG)
    if not output_dir or not PathManager.exists(path):
        return 0
    with PathManager.open(path, "r") as f:
        lines = f.read().splitlines()
    kept = []
    for line in lines:
        try:
            epoch = _record_epoch(line)
        except ValueError:
            continue
        if epoch is None or epoch <= num_epochs:
            kept.append(line)
    if len(kept) < len(lines):
        with atomic_open(path, "w") as f:
            f.write("".join(line + "\n" for line in kept))
        logging.getLogger(__name__).info(
            "Removed %d record(s) after epoch %d from %s (they are recomputed)", len(lines) - len(kept),
            num_epochs, path)
    return len(lines) - len(kept)
