"""Per-process start-up shared by training and testing: OUTPUT_DIR check, logging, seeding, device,
TensorBoard."""

import logging
import os
import shutil
import uuid
from typing import Dict, Optional

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode

from stica_slowfast.models import build_model, to_channels_last, uses_channels_last
from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.io import PathManager, local_path
from stica_slowfast.utils.logging import setup_logging
from stica_slowfast.utils.misc import set_seed

logger = logging.getLogger(__name__)

# Free space (bytes) OUTPUT_DIR needs at the least: logs, json stats, metrics, a small checkpoint.
MIN_FREE_BYTES = 16 * 2**20


class OutputDirError(RuntimeError):
    """OUTPUT_DIR cannot be created or written, or lacks the free space the run needs."""


def _probe_output_dir(output_dir: str, min_free_bytes: int) -> None:
    """Create ``output_dir``, write and remove a probe file, compare free space; OutputDirError."""
    where = f"OUTPUT_DIR {output_dir!r}"
    probe = os.path.join(output_dir, f".write_probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        PathManager.mkdirs(output_dir)
        with PathManager.open(probe, "w") as f:
            f.write("probe\n")
        PathManager.rm(probe)
    except OSError as err:
        raise OutputDirError(f"{where} is not writable: {err}") from err
    local = local_path(output_dir)
    if local is None:  # a remote backend: no free-space query
        return
    free = shutil.disk_usage(local).free
    if free < min_free_bytes:
        raise OutputDirError(
            f"{where} has {free / 2**20:.1f} MiB free; the run needs at least "
            f"{min_free_bytes / 2**20:.1f} MiB there (logs and checkpoints)")


def check_output_dir(output_dir: str, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Stop before any work, naming OUTPUT_DIR and the cause, when the run could not write there.

    The master process (the one that writes logs, checkpoints and metrics) creates the directory,
    writes and removes a probe file, and compares the free space with ``min_free_bytes`` (local file
    systems only). Collective when distributed: every process raises when the master's check failed,
    so that none waits for it in a later collective.

    Args:
        output_dir: the run's OUTPUT_DIR.
        min_free_bytes: free space needed there, e.g. an estimate of a checkpoint's size.

    Raises:
        OutputDirError: on every process, when the check failed on the master.
    """
    error: Optional[OutputDirError] = None
    if output_dir and du.is_master_proc():
        try:
            _probe_output_dir(output_dir, int(min_free_bytes))
        except OutputDirError as err:
            error = err
    if du.get_world_size() > 1:
        failed = du.all_reduce_tensor(torch.tensor([float(error is not None)]), average=False)
        if error is None and failed.item() > 0:
            error = OutputDirError(f"OUTPUT_DIR {output_dir!r} failed its check on process 0 (see its error)")
    if error is not None:
        raise error


def build_model_on(cfg: CfgNode, device: torch.device) -> nn.Module:
    """``build_model(cfg)`` on ``device``, its convolutions in the layout ``STICA.MEMORY_FORMAT`` gives
    for that device (before an optimiser or DDP sees the parameters).

    The weights are drawn from ``RNG_SEED`` alone, so a random initialisation is the same on every
    process (a multi-process probe of a random-init encoder probes one network) and for every model
    built this way in a process; the process's own random stream (RNG_SEED + rank) is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.RNG_SEED)
        model = build_model(cfg)
    model = model.to(device)
    return to_channels_last(model) if uses_channels_last(cfg, device) else model


def setup_process(cfg: CfgNode, phase: str) -> torch.device:
    """Check OUTPUT_DIR, set up logging to it, seed this process (RNG_SEED + rank), return its device.

    Raises:
        OutputDirError: OUTPUT_DIR is not writable or has less than MIN_FREE_BYTES free.
    """
    check_output_dir(cfg.OUTPUT_DIR)
    setup_logging(cfg.OUTPUT_DIR)
    set_seed(cfg.RNG_SEED + du.get_rank())
    device = du.get_device(cfg.NUM_GPUS)
    logger.info(
        "%s on %s, process %d of %d, %d compute thread(s); config:\n%s",
        phase, device, du.get_rank(), du.get_world_size(), torch.get_num_threads(), cfg.dump(),
    )
    return device


class TensorBoardWriter:
    """TensorBoard events under TENSORBOARD.LOG_DIR (default OUTPUT_DIR/tensorboard); master only."""

    def __init__(self, cfg: CfgNode):
        from torch.utils.tensorboard import SummaryWriter

        log_dir = cfg.TENSORBOARD.LOG_DIR or os.path.join(cfg.OUTPUT_DIR, "tensorboard")
        self._writer = SummaryWriter(log_dir=log_dir)

    def add_scalars(self, scalars: Dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        self._writer.close()
