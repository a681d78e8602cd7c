"""Per-process start-up shared by training and testing: logging, seeding, device, TensorBoard."""

import logging
import os
from typing import Dict

import torch
from fvcore.common.config import CfgNode

from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.logging import setup_logging
from stica_slowfast.utils.misc import set_seed

logger = logging.getLogger(__name__)


def setup_process(cfg: CfgNode, phase: str) -> torch.device:
    """Set up logging to OUTPUT_DIR, seed this process (RNG_SEED + rank), return its device."""
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
