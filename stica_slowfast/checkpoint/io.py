"""PySlowFast-compatible ``.pyth`` checkpoints, written atomically.

Layout and contents (the same as PySlowFast's, so its tools can read ours and vice versa)::

    OUTPUT_DIR/checkpoints/checkpoint_epoch_00005.pyth
        {"epoch": 4,                 # 0-based index of the last finished epoch
         "model_state": {...},       # state_dict of the unwrapped model (no "module." prefix)
         "optimizer_state": {...},
         "cfg": "<cfg.dump() YAML>",
         "scaler_state": {...}}      # only when an AMP GradScaler was given

The file number is ``epoch + 1``: a file named ``..._00005.pyth`` holds the state after five epochs and a
resumed run continues with epoch index 5.

Writes go to a hidden temporary file in the same directory which is then renamed over the final name,
so a crash mid-write leaves at most a ``.checkpoint_epoch_00005.pyth.tmp-*`` file, which
:func:`get_last_checkpoint` never picks. Only rank 0 should write: :func:`save_checkpoint` takes an
``is_master`` flag and does nothing on other ranks, so callers can call it unconditionally.
"""

import logging
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from fvcore.common.config import CfgNode
from torch import nn

from stica_slowfast.utils.io import PathManager, atomic_open
from stica_slowfast.utils.misc import DDP_PREFIX, strip_ddp_prefix, unwrap

__all__ = [
    "CheckpointMismatchError",
    "checkpoint_dir",
    "checkpoint_path",
    "list_checkpoints",
    "get_last_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_state",
    "read_checkpoint",
]

logger = logging.getLogger(__name__)

_CKPT_NAME = "checkpoint_epoch_{:05d}.pyth"
# Only complete files match: the temporary files start with "." and end in ".tmp-<id>".
_CKPT_RE = re.compile(r"^checkpoint_epoch_(\d{5,})\.pyth$")
# Keys listed per category in a mismatch error before "... and N more".
_MAX_KEYS_IN_ERROR = 10


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's model state does not fit the model (missing/unexpected keys, wrong shapes)."""


# ------------------------------------------------------------------------------------------------ #
# Paths
# ------------------------------------------------------------------------------------------------ #
def checkpoint_dir(output_dir: str) -> str:
    """``OUTPUT_DIR/checkpoints``.

    Args:
        output_dir: The run's ``OUTPUT_DIR``.

    Returns:
        The checkpoint directory path (not created).
    """
    return os.path.join(output_dir, "checkpoints")


def checkpoint_path(output_dir: str, epoch_1based: int) -> str:
    """Path of the checkpoint written after ``epoch_1based`` finished epochs.

    Args:
        output_dir: The run's ``OUTPUT_DIR``.
        epoch_1based: Number of finished epochs (the stored ``"epoch"`` plus one).

    Returns:
        ``OUTPUT_DIR/checkpoints/checkpoint_epoch_%05d.pyth``.
    """
    return os.path.join(checkpoint_dir(output_dir), _CKPT_NAME.format(int(epoch_1based)))


def list_checkpoints(output_dir: str) -> List[Tuple[int, str]]:
    """All complete checkpoints in ``OUTPUT_DIR/checkpoints``, sorted by epoch number.

    Args:
        output_dir: The run's ``OUTPUT_DIR``.

    Returns:
        ``[(epoch_1based, path), ...]`` in increasing epoch order; empty when there is none.
    """
    directory = checkpoint_dir(output_dir)
    if not PathManager.exists(directory):
        return []
    found = []
    for name in PathManager.ls(directory):
        match = _CKPT_RE.match(os.path.basename(name))
        if match:
            found.append((int(match.group(1)), os.path.join(directory, os.path.basename(name))))
    return sorted(found)


def get_last_checkpoint(output_dir: str) -> Optional[str]:
    """Path of the complete checkpoint with the highest epoch number, or None.

    Leftover temporary files of an interrupted save are ignored.

    Args:
        output_dir: The run's ``OUTPUT_DIR``.

    Returns:
        The newest checkpoint's path, or None when there is none.
    """
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


# ------------------------------------------------------------------------------------------------ #
# Save
# ------------------------------------------------------------------------------------------------ #
def save_checkpoint(
    output_dir: str,
    epoch: int,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer],
    cfg: CfgNode,
    scaler: Optional[Any] = None,
    *,
    is_master: bool = True,
) -> str:
    """Atomically write the state after finishing 0-based epoch ``epoch`` to file ``epoch + 1``.

    The caller passes ``is_master`` (rank 0 of the job) rather than this function asking
    torch.distributed, so it stays usable outside a process group and in tests. On other ranks nothing is
    written and no collective is called, so there is nothing to deadlock on.

    Args:
        output_dir: The run's ``OUTPUT_DIR``; ``checkpoints/`` is created under it.
        epoch: 0-based index of the epoch that just finished (stored as ``"epoch"``).
        model: The model; a DistributedDataParallel/DataParallel wrapper is unwrapped so the keys carry
            no ``"module."`` prefix.
        optimizer: Its optimiser, or None to store no optimiser state.
        cfg: The run's config; stored as its YAML dump.
        scaler: An AMP ``GradScaler`` (anything with ``state_dict()``), stored as ``"scaler_state"``.
        is_master: Write only when True.

    Returns:
        The checkpoint's path (also on non-master ranks, where it is not written).
    """
    path = checkpoint_path(output_dir, epoch + 1)
    if not is_master:
        return path
    directory = checkpoint_dir(output_dir)
    PathManager.mkdirs(directory)

    state: Dict[str, Any] = {
        "epoch": int(epoch),
        "model_state": unwrap(model).state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "cfg": cfg.dump(),
    }
    if scaler is not None:
        state["scaler_state"] = scaler.state_dict()

    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    logger.info("Saved checkpoint %s", path)
    return path


# ------------------------------------------------------------------------------------------------ #
# Load
# ------------------------------------------------------------------------------------------------ #
def load_checkpoint(
    path: str,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler: Optional[Any] = None,
    *,
    strict: bool = True,
) -> int:
    """Load a checkpoint into ``model`` (and optionally ``optimizer`` / ``scaler``).

    The file is read onto the CPU; ``load_state_dict`` then copies each tensor into the model's own
    parameters, so the model keeps its device. Keys saved with a ``"module."`` prefix (a DDP model saved
    without unwrapping) load into a plain model, and plain keys load into a DDP-wrapped model. A bare
    ``state_dict`` file (no ``"model_state"`` entry) is accepted too and reports epoch -1.

    Args:
        path: Checkpoint path (any iopath path).
        model: Model to load into; DDP/DataParallel wrappers are unwrapped.
        optimizer: Optimiser to restore, if the checkpoint has ``"optimizer_state"``.
        scaler: AMP GradScaler to restore, if the checkpoint has ``"scaler_state"``.
        strict: Raise on missing/unexpected keys or shape mismatches. When False these are logged,
            mismatched shapes are skipped and the matching tensors are loaded.

    Returns:
        The stored 0-based ``"epoch"`` (-1 when the file has none); resume at ``epoch + 1``.

    Raises:
        CheckpointMismatchError: with ``strict``, listing the missing and unexpected keys (at most
            ten of each) and every shape mismatch with both shapes.
        FileNotFoundError: the path does not exist.
    """
    checkpoint, model_state, epoch = read_checkpoint(path)
    load_model_state(model, model_state, source=path, strict=strict)

    if optimizer is not None and isinstance(checkpoint, Mapping):
        opt_state = checkpoint.get("optimizer_state")
        if opt_state is not None:
            # Optimizer.load_state_dict casts the state onto each parameter's device.
            optimizer.load_state_dict(opt_state)
        else:
            logger.warning("Checkpoint %s has no optimizer state; optimiser left as is", path)
    if scaler is not None and isinstance(checkpoint, Mapping) and checkpoint.get("scaler_state"):
        scaler.load_state_dict(checkpoint["scaler_state"])
    logger.info("Loaded checkpoint %s (epoch %d)", path, epoch)
    return epoch


def read_checkpoint(path: str) -> Tuple[Any, Dict[str, Any], int]:
    """Read a checkpoint onto the CPU: ``(whole file, model state, stored 0-based epoch or -1)``.

    A bare ``state_dict`` file (no ``"model_state"`` entry) is its own model state.
    """
    if not PathManager.exists(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    with PathManager.open(path, "rb") as f:
        # weights_only: the file holds tensors, numbers, strings and dicts only; never unpickle code.
        checkpoint = torch.load(f, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, Mapping) and "model_state" in checkpoint:
        return checkpoint, dict(checkpoint["model_state"]), int(checkpoint.get("epoch", -1))
    return checkpoint, dict(checkpoint), -1


def load_model_state(
    model: nn.Module, state: Mapping[str, Any], *, source: str, strict: bool = True, key_prefix: str = ""
) -> None:
    """Load ``state`` into ``model`` (DDP wrappers and ``"module."`` prefixes handled either way).

    Args:
        model: Module to load into.
        state: Its state dict as stored.
        source: Where the state comes from, for messages.
        strict: Raise :class:`CheckpointMismatchError` on missing/unexpected keys or shape
            mismatches; when False log them, skip mismatched shapes and load the rest.
        key_prefix: Prepended to key names in messages (the keys' names in the file).
    """
    target = unwrap(model)
    expected = target.state_dict()
    state = _match_prefix(dict(state), expected)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shape_mismatch = [
        (k, tuple(state[k].shape), tuple(expected[k].shape))
        for k in state
        if k in expected
        and isinstance(state[k], torch.Tensor)
        and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shape_mismatch:
        message = _mismatch_message(source, missing, unexpected, shape_mismatch, key_prefix)
        if strict:
            raise CheckpointMismatchError(message)
        logger.warning("%s; loading the matching tensors (strict=False)", message)
        for key, _, _ in shape_mismatch:
            del state[key]
    target.load_state_dict(state, strict=strict)


def _match_prefix(state: Dict[str, Any], expected: Mapping[str, Any]) -> Dict[str, Any]:
    """Add or strip the DDP ``"module."`` prefix so the checkpoint keys use the model's convention."""
    if not state:
        return state

    def all_prefixed(keys) -> bool:
        keys = list(keys)
        return bool(keys) and all(k.startswith(DDP_PREFIX) for k in keys)

    state_prefixed, model_prefixed = all_prefixed(state), all_prefixed(expected)
    if state_prefixed and not model_prefixed:
        return dict(strip_ddp_prefix(state))
    if model_prefixed and not state_prefixed:
        return {DDP_PREFIX + k: v for k, v in state.items()}
    return state


def _mismatch_message(
    path: str,
    missing: List[str],
    unexpected: List[str],
    shape_mismatch: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]],
    key_prefix: str = "",
) -> str:
    """Human-readable description of how a checkpoint differs from the model."""

    def listed(keys: List[str]) -> str:
        shown = ", ".join(key_prefix + k for k in keys[:_MAX_KEYS_IN_ERROR])
        more = len(keys) - _MAX_KEYS_IN_ERROR
        return shown + (f", ... and {more} more" if more > 0 else "")

    parts = [f"Checkpoint {path} does not match the model"]
    if missing:
        parts.append(f"missing keys ({len(missing)}): {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {listed(unexpected)}")
    for key, got, want in shape_mismatch[:_MAX_KEYS_IN_ERROR]:
        parts.append(f"shape mismatch for {key_prefix}{key}: checkpoint {got} vs model {want}")
    if len(shape_mismatch) > _MAX_KEYS_IN_ERROR:
        parts.append(f"... and {len(shape_mismatch) - _MAX_KEYS_IN_ERROR} more shape mismatches")
    return "; ".join(parts)
