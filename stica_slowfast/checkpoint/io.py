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

Mid-epoch checkpoints (``TRAIN.CHECKPOINT_ITER_PERIOD`` / ``CHECKPOINT_MINUTES``, or a preemption signal)
are named by the epochs finished and the iterations done in the next one, e.g.
``checkpoint_epoch_00005_iter_000300.pyth`` (after five epochs and 300 iterations of the sixth), which
sorts between the epoch files around it. They store ``"epoch": 4`` as well, so a loader that knows
only epoch files (PySlowFast's) resumes at the sixth epoch's start, and add ``"iteration": 300`` and
``"train_state"``: what the trainer needs to continue the epoch exactly (each process's random
states and partial epoch statistics).

Writes go to a hidden temporary file in the same directory which is then renamed over the final name,
so a crash mid-write leaves at most a ``.checkpoint_epoch_00005.pyth.tmp-*`` file, which
:func:`get_last_checkpoint` never picks. Only rank 0 should write: :func:`save_checkpoint` takes an
``is_master`` flag and does nothing on other ranks, so callers can call it unconditionally.

Reading is always ``torch.load(weights_only=True)`` (tensors and plain containers; no pickled code is
run; GDT's files also hold their ``argparse.Namespace`` of arguments, a plain attribute record, which is
allowed). Other code bases wrap the model state as ``"model_state"`` (PySlowFast, ours), ``"model"`` or
``"state_dict"`` (GDT); a bare state dict is its own model state. A file that cannot be used --
empty, truncated by a killed copy, not a torch file at all, a torch file of pickled objects or without
tensors -- raises :class:`CheckpointFileError`, one line naming the
file and what it is, instead of torch's internal message (whose advice, ``weights_only=False``, would
run the file's code). A resume (:func:`load_last_good_checkpoint`) falls back past such files to the
newest one that loads, and leaves the bad ones where they are.
"""

import argparse
import collections
import contextlib
import logging
import os
import re
import sys
import warnings
import zipfile
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import torch
from fvcore.common.config import CfgNode
from torch import nn

from stica_slowfast.utils.io import PathManager, atomic_open
from stica_slowfast.utils.misc import DDP_PREFIX, strip_ddp_prefix, unwrap

from .layouts import AUTO, LAYOUTS, Converted, LayoutError, describe, to_our_layout

__all__ = [
    "CheckpointFileError",
    "CheckpointMismatchError",
    "checkpoint_dir",
    "checkpoint_path",
    "list_checkpoints",
    "get_last_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_last_good_checkpoint",
    "load_model_state",
    "prune_mid_epoch_checkpoints",
    "Resumed",
    "naming_config_key",
    "read_checkpoint",
    "read_model_state",
]

logger = logging.getLogger(__name__)

_CKPT_NAME = "checkpoint_epoch_{:05d}.pyth"
_MID_EPOCH_NAME = "checkpoint_epoch_{:05d}_iter_{:06d}.pyth"
# Only complete files match: the temporary files start with "." and end in ".tmp-<id>".
_CKPT_RE = re.compile(r"^checkpoint_epoch_(\d{5,})(?:_iter_(\d{6,}))?\.pyth$")
# Keys listed per category in a mismatch error before "... and N more".
_MAX_KEYS_IN_ERROR = 10
# Bytes of a file's start read to tell what an unloadable file is.
_HEAD_BYTES = 256
# torch.save's zip format starts as every zip file does; its legacy format starts with a pickle
# (protocol 2, b"\x80\x02") of this magic number (opcode LONG1 b"\x8a", 10 bytes, little-endian).
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# Where checkpoints keep the model state: PySlowFast and ours, then GDT's two (tried in this order).
_MODEL_STATE_KEYS = ("model_state", "model", "state_dict")


def _torch_subclasses(cls: type) -> List[type]:
    """``cls`` and its subclasses defined by torch itself."""
    subclasses = [c for sub in cls.__subclasses__() for c in _torch_subclasses(sub)]
    return [cls] * cls.__module__.startswith("torch.") + subclasses


# Classes a checkpoint may hold besides tensors and containers: records of plain values, and torch's own
# optimisers and LR schedulers, which other code bases' training files pickle whole (GDT's warm-up
# scheduler keeps its MultiStepLR, with the SGD it drives, in its state_dict()).
_SAFE_GLOBALS = [argparse.Namespace, collections.Counter, collections.defaultdict, dict,
                 *_torch_subclasses(torch.optim.Optimizer),
                 *_torch_subclasses(torch.optim.lr_scheduler.LRScheduler)]
# A torch file torch.load refused for a reason its bytes do not show.
_UNEXPLAINED = "is truncated or corrupt"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's model state does not fit the model (missing/unexpected keys, wrong shapes)."""


class CheckpointFileError(ValueError):
    """A file that should be a checkpoint cannot be used as one (unreadable, truncated, not a torch
    checkpoint, or a torch file without model weights).

    The message is one line: ``<config key or "checkpoint file"> '<path>' <problem>``. A ValueError,
    like ``ConfigError``: the input is wrong, not the program.

    Attributes:
        path: the file (or, for a resume with no usable file, the checkpoint directory).
        problem: what is wrong with it, e.g. ``"is empty (0 bytes): not a torch checkpoint"``.
        key: the config key the path came from ("" when not known).
        defect: True when the file itself is at fault (empty, cut short, not a torch checkpoint, no
            tensors); False when reading it failed (an I/O error, memory): a resume then stops rather
            than fall back to an older file.
    """

    def __init__(self, path: str, problem: str, key: str = "", what: str = "checkpoint file",
                 defect: bool = True) -> None:
        self.path, self.problem, self.key, self.what, self.defect = path, problem, key, what, defect
        super().__init__(f"{key or what} {path!r} {problem}")

    def __reduce__(self):  # picklable with its fields (multiprocessing sends exceptions)
        return type(self), (self.path, self.problem, self.key, self.what, self.defect)


@contextlib.contextmanager
def naming_config_key(key: str) -> Iterator[None]:
    """Re-raise a :class:`CheckpointFileError` of the block naming config ``key`` (where its path was
    set), so the user knows which setting to change.

    Args:
        key: e.g. ``"TRAIN.CHECKPOINT_FILE_PATH"``.
    """
    try:
        yield
    except CheckpointFileError as err:
        if err.key:
            raise
        raise CheckpointFileError(err.path, err.problem, key, err.what, err.defect) from err.__cause__


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


def checkpoint_path(output_dir: str, epoch_1based: int, iteration: int = 0) -> str:
    """Path of the checkpoint written after ``epoch_1based`` finished epochs (and ``iteration``
    iterations of the next one).

    Args:
        output_dir: The run's ``OUTPUT_DIR``.
        epoch_1based: Number of finished epochs (the stored ``"epoch"`` plus one).
        iteration: Iterations done in the epoch after them (0: an epoch checkpoint).

    Returns:
        ``OUTPUT_DIR/checkpoints/checkpoint_epoch_%05d.pyth``, or ``..._%05d_iter_%06d.pyth`` mid-epoch.
    """
    name = _MID_EPOCH_NAME.format(int(epoch_1based), int(iteration)) if iteration else _CKPT_NAME.format(int(epoch_1based))
    return os.path.join(checkpoint_dir(output_dir), name)


def _list_with_iterations(output_dir: str) -> List[Tuple[int, int, str]]:
    """``[(finished epochs, iterations of the next, path), ...]`` of the complete checkpoints, oldest first."""
    directory = checkpoint_dir(output_dir)
    if not PathManager.exists(directory):
        return []
    found = []
    for name in PathManager.ls(directory):
        match = _CKPT_RE.match(os.path.basename(name))
        if match:
            found.append((int(match.group(1)), int(match.group(2) or 0), os.path.join(directory, os.path.basename(name))))
    return sorted(found)


def list_checkpoints(output_dir: str) -> List[Tuple[int, str]]:
    """All complete checkpoints in ``OUTPUT_DIR/checkpoints``, oldest first (by epochs, then iterations).

    Args:
        output_dir: The run's ``OUTPUT_DIR``.

    Returns:
        ``[(epoch_1based, path), ...]``, ``epoch_1based`` being the finished epochs (a mid-epoch
        checkpoint comes after the epoch checkpoint of the same number); empty when there is none.
    """
    return [(epochs, path) for epochs, _, path in _list_with_iterations(output_dir)]


def prune_mid_epoch_checkpoints(output_dir: str, newest: str, keep: int) -> List[str]:
    """Delete the mid-epoch checkpoints that ``newest`` (a checkpoint just written) makes needless.

    Older than ``newest``: every mid-epoch checkpoint when ``newest`` is an epoch checkpoint, else all
    but the newest ``keep - 1`` (``newest`` makes ``keep``), and any older than an epoch checkpoint
    that is itself older than ``newest``. Epoch checkpoints are never deleted, nor anything newer than
    ``newest`` (a file a resume skipped as unusable stays for the user to see).

    Args:
        output_dir: The run's ``OUTPUT_DIR``.
        newest: the path just written (a complete file).
        keep: mid-epoch checkpoints to keep, ``newest`` included (>= 1).

    Returns:
        The deleted paths.
    """
    listed = {path: (epochs, iteration) for epochs, iteration, path in _list_with_iterations(output_dir)}
    if newest not in listed:
        return []
    key = listed[newest]
    older = sorted((k, path) for path, k in listed.items() if k < key)
    # Mid-epoch checkpoints before an epoch checkpoint (newest itself, or an older one) are superseded.
    floor = key if not key[1] else max((k for k, _ in older if not k[1]), default=(-1, 0))
    mid = [(k, path) for k, path in older if k[1]]
    kept = {path for k, path in mid if k > floor}
    kept = set(sorted(kept, key=listed.get)[-(keep - 1):]) if keep > 1 else set()
    deleted = [path for _, path in mid if path not in kept]
    for path in deleted:
        PathManager.rm(path)
    return deleted


def get_last_checkpoint(output_dir: str) -> Optional[str]:
    """Path of the complete checkpoint with the highest epoch number, or None.

    Leftover temporary files of an interrupted save are ignored. The file is not read: a file put
    there by other means (a copy cut short) may still be unusable; :func:`load_last_good_checkpoint`
    loads the newest one that is usable.

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
    iteration: int = 0,
    train_state: Optional[Dict[str, Any]] = None,
) -> str:
    """Atomically write the state after finishing 0-based epoch ``epoch`` (and ``iteration`` iterations
    of the next one) to file ``epoch + 1`` (``..._iter_<iteration>`` mid-epoch).

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
        iteration: Iterations done in epoch ``epoch + 1`` (0-based) when the epoch is not finished (a
            mid-epoch checkpoint), stored as ``"iteration"``; 0 for an epoch checkpoint.
        train_state: What else the trainer needs to continue mid-epoch (plain containers of tensors
            and numbers), stored as ``"train_state"``.

    Returns:
        The checkpoint's path (also on non-master ranks, where it is not written).
    """
    path = checkpoint_path(output_dir, epoch + 1, iteration)
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
    if iteration:
        state["iteration"] = int(iteration)
    if train_state is not None:
        state["train_state"] = train_state

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
    layout: Optional[str] = None,
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
        layout: None to load the state as stored (a resume); else another code base's layout is
            read in our names first (:func:`read_model_state`: ``"pytorch"`` recognises it, a layout
            name insists on it; ``TEST.CHECKPOINT_TYPE``), and only the model is loaded from it.

    Returns:
        The stored 0-based ``"epoch"`` (-1 when the file has none); resume at ``epoch + 1``.

    Raises:
        CheckpointMismatchError: with ``strict``, listing the missing and unexpected keys (at most
            ten of each) and every shape mismatch with both shapes; for another code base's file, naming
            its layout and what reads it.
        CheckpointFileError: the file is not a usable checkpoint (see :func:`read_checkpoint`), or not
            readable in ``layout``.
        FileNotFoundError: the path does not exist.
    """
    if layout is None:
        return _restore(path, read_checkpoint(path), model, optimizer, scaler, strict=strict)
    checkpoint, converted, epoch = read_model_state(path, layout)
    if converted.layout == "stica":
        return _restore(path, (checkpoint, converted.state, epoch), model, optimizer, scaler, strict=strict)
    # Another code base's optimiser state does not fit ours: the model only (a mismatch names the layout).
    return _restore(f"{path} ({describe(converted.layout)})", ({}, converted.state, epoch), model, None, None,
                    strict=strict)


def read_model_state(path: str, layout: str = AUTO, encoder: str = "online") -> Tuple[Any, Converted, int]:
    """Read a checkpoint (:func:`read_checkpoint`) and its model state in our key names
    (:func:`.layouts.to_our_layout`, after stripping a DDP ``"module."`` prefix).

    Args:
        path: the checkpoint (any iopath path).
        layout: ``"pytorch"`` to recognise the layout, or the one it must be (``CHECKPOINT_TYPE``).
        encoder: ``"online"``, or ``"momentum"`` for a BYOL / MoCo momentum encoder.

    Returns:
        ``(whole file, the conversion, stored 0-based epoch or -1)``.

    Raises:
        CheckpointFileError: as :func:`read_checkpoint`, or the state cannot be read in ``layout`` /
            has no ``encoder`` (one line naming the layout seen).
        FileNotFoundError: the path does not exist.
    """
    checkpoint, model_state, epoch = read_checkpoint(path)
    try:
        converted = to_our_layout(strip_ddp_prefix(model_state), layout=layout, encoder=encoder)
    except LayoutError as err:
        raise CheckpointFileError(path, str(err)) from None
    if converted.dropped:
        logger.info("%s is %s: %d of its tensors are not read (%s encoder asked for; %s)", path,
                    LAYOUTS[converted.layout].description, len(converted.dropped), encoder,
                    ", ".join(sorted({k.split(".", 1)[0] for k in converted.dropped})))
    return checkpoint, converted, epoch


class Resumed(NamedTuple):
    """What :func:`load_last_good_checkpoint` loaded."""

    path: str
    epoch: int  # the stored 0-based epoch: the last finished one (-1: none)
    iteration: int = 0  # iterations done in the epoch after it (a mid-epoch checkpoint)
    train_state: Optional[Dict[str, Any]] = None  # the trainer's own state of a mid-epoch checkpoint


def load_last_good_checkpoint(
    output_dir: str,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler: Optional[Any] = None,
    *,
    warn: bool = True,
) -> Optional[Resumed]:
    """Load the newest usable checkpoint of ``OUTPUT_DIR/checkpoints`` (a resume); None if there is none.

    Checkpoints are tried newest first. One whose file is unusable (empty, cut short, not a torch
    checkpoint, no tensors: a :class:`CheckpointFileError` with ``defect``) is skipped for the previous
    one, with one warning naming the
    skipped file(s) and the one used. Skipped files are left where they are, never deleted (they may be
    the only trace of what happened, and on a multi-process run every rank reads the directory at
    once); the training writes a good file under the same name when it reaches that epoch again.
    A file that reads but does not fit the model (:class:`CheckpointMismatchError`) is not skipped:
    that is a config problem, and an older file of the same run would not fit either.

    Args:
        output_dir: The run's ``OUTPUT_DIR``.
        model, optimizer, scaler: as for :func:`load_checkpoint` (strict).
        warn: log the warning about skipped files (pass False on all but one process).

    Returns:
        The loaded checkpoint's path, stored 0-based epoch and, for a mid-epoch checkpoint, its
        iteration and train state (:class:`Resumed`); None when the directory holds no checkpoint
        file at all.

    Raises:
        CheckpointFileError: there are checkpoint files but none is usable (one line naming each).
        CheckpointMismatchError: the newest usable checkpoint does not fit the model.
    """
    skipped: List[CheckpointFileError] = []
    for _, path in reversed(list_checkpoints(output_dir)):
        try:
            content = read_checkpoint(path)
        except CheckpointFileError as err:
            if not err.defect:  # a read that failed says nothing about the file: never fall back then
                raise
            skipped.append(err)
            continue
        if skipped and warn:
            logger.warning(
                "%s; resuming from %s instead. The unusable file%s left in place (not deleted) and "
                "replaced when training saves that epoch again",
                "; ".join(str(err) for err in skipped), path, " is" if len(skipped) == 1 else "s are")
        epoch = _restore(path, content, model, optimizer, scaler, strict=True)
        checkpoint = content[0] if isinstance(content[0], Mapping) else {}
        return Resumed(path, epoch, int(checkpoint.get("iteration", 0)), checkpoint.get("train_state"))
    if skipped:
        listed = "; ".join(f"{os.path.basename(err.path)} {err.problem}" for err in skipped)
        raise CheckpointFileError(
            checkpoint_dir(output_dir),
            f"has no usable checkpoint to resume from: {listed}. They are left in place: move them "
            f"aside (or use a new OUTPUT_DIR) to train from scratch",
            what="checkpoint directory")
    return None


def _restore(
    path: str,
    content: Tuple[Any, Dict[str, Any], int],
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer],
    scaler: Optional[Any],
    *,
    strict: bool,
) -> int:
    """Put a read checkpoint (:func:`read_checkpoint`'s triple) into model, optimiser and scaler."""
    checkpoint, model_state, epoch = content
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

    A bare ``state_dict`` file (no ``"model_state"`` entry) is its own model state. Loading is
    ``weights_only`` (never runs pickled code), also for files that fail it.

    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointFileError: the file is not readable, is empty or truncated, is not a torch
            checkpoint, holds pickled objects other than tensors and containers, or holds no tensors.
    """
    if not PathManager.exists(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        with PathManager.open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
            if not head:
                raise CheckpointFileError(path, "is empty (0 bytes): not a torch checkpoint")
            f.seek(0)
            try:
                with warnings.catch_warnings():
                    # A pickle of another protocol draws a warning before its error: one message only.
                    warnings.filterwarnings("ignore", message="Detected pickle protocol")
                    with torch.serialization.safe_globals(_SAFE_GLOBALS):
                        checkpoint = torch.load(f, map_location="cpu", weights_only=True)
            except MemoryError:
                raise
            except Exception as err:  # torch, zip and pickle errors alike: say what the file is
                problem = _unloadable(head, f, err)
                if problem.startswith(_UNEXPLAINED) and (isinstance(err, OSError) or "allocate" in str(err)):
                    # Nothing in the file explains it (an I/O error, memory): the reading failed.
                    raise CheckpointFileError(path, f"could not be read ({err})", defect=False) from err
                raise CheckpointFileError(path, problem) from err
    except OSError as err:
        raise CheckpointFileError(path, f"is not readable ({err.strerror or err})", defect=False) from err
    return _split_checkpoint(path, checkpoint)


def _size(f) -> Optional[int]:
    """Size in bytes of an open file, or None when it cannot seek."""
    try:
        return f.seek(0, os.SEEK_END)
    except (OSError, ValueError, AttributeError):
        return None


def _zip_directory_missing(f) -> bool:
    """Whether a file that starts as a zip lacks the directory at its end (it was cut short)."""
    try:
        f.seek(0)
        return not zipfile.is_zipfile(f)
    except (OSError, ValueError, AttributeError):
        return False


def _unloadable(head: bytes, f, err: BaseException) -> str:
    """What a file that torch.load refused is, from its first bytes, its zip structure and torch's
    error (whose wording for one cause varies: a cut zip gives "failed finding central directory" or
    "Invalid argument" by size)."""
    message = str(err)
    is_zip = head.startswith(_ZIP_MAGIC)
    is_torch = is_zip or (head[:1] == b"\x80" and _LEGACY_TORCH_MAGIC in head[:16])
    size = _size(f)
    nbytes = f"{size} bytes" if size is not None else "size unknown"
    if is_zip and _zip_directory_missing(f):
        return (f"is truncated ({nbytes}; its zip directory is missing, as after a copy or a write cut "
                f"short): not a usable torch checkpoint")
    pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if pickled and (is_zip or not _cut_name(pickled.group(1))):
        return (f"is a torch file of pickled Python objects ({pickled.group(1)}), not only tensors: not "
                f"loaded, as that would run their code; save the model's state_dict() instead")
    if is_torch:
        # torch's own first line advises weights_only=False; the unpickler's reason is the useful part.
        reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", message)
        first = reason.group(1) if reason else (message.strip().splitlines() or [type(err).__name__])[0]
        first = first.split(". ")[0][:120]  # its first sentence: the rest is advice to allow-list
        return f"{_UNEXPLAINED} ({nbytes}; {first}): not a usable torch checkpoint"
    if head[:1] == b"\x80":
        return "is not a torch checkpoint (a Python pickle, not a file written by torch.save)"
    text = _as_text(head)
    if text is not None:
        return f"is not a torch checkpoint (a text file starting {text.strip().splitlines()[0][:40]!r})"
    return f"is not a torch checkpoint (unrecognised binary content starting {head[:8].hex(' ')})"


def _cut_name(name: str) -> bool:
    """Whether a pickled global ``module.attr`` is cut short: its module is loaded but lacks the name.

    Only ``sys.modules`` is consulted: importing a module a stranger's file names could run code.
    """
    module, _, attr = name.rpartition(".")
    return module in sys.modules and not hasattr(sys.modules[module], attr)


def _as_text(head: bytes) -> Optional[str]:
    """``head`` decoded when it looks like text (UTF-8, printable or white space), else None."""
    for cut in range(4):  # the read may have split a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    return text if text.strip() and all(c.isprintable() or c.isspace() for c in text) else None


def _split_checkpoint(path: str, checkpoint: Any) -> Tuple[Any, Dict[str, Any], int]:
    """``(checkpoint, model state, epoch)`` of a loaded file; CheckpointFileError without weights."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFileError(
            path, f"is a torch file without model weights (it holds a {type(checkpoint).__name__}, not a "
                  f"dict of tensors)")
    wrapper = next((k for k in _MODEL_STATE_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
    if wrapper is not None:
        model_state, epoch = checkpoint[wrapper], int(checkpoint.get("epoch", -1))
    else:
        model_state, epoch = checkpoint, -1
    if not isinstance(model_state, Mapping) or not _holds_tensor(model_state):
        keys = ", ".join(map(str, list(checkpoint)[:_MAX_KEYS_IN_ERROR]))
        raise CheckpointFileError(
            path, f"is a torch file without model weights (no tensor in it; keys: {keys or 'none'})")
    return checkpoint, dict(model_state), epoch


def _holds_tensor(value: Any) -> bool:
    """Whether a (nested) container holds a tensor anywhere."""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, Mapping):
        return any(_holds_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    return False


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
