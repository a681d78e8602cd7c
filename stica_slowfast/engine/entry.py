"""The ``tools/run_net.py`` entry: parse, load the config, prepare data, launch train and/or test.

Errors of the user's input stop the run with one ``error: ...`` line on stderr: a config that does
not fit the schema (exit 2), an OUTPUT_DIR another run is using (or not writable, or full), a checkpoint
file that is not a usable checkpoint, a split file that cannot be used, more bad videos than
``DATA_LOADER.MAX_BAD_FRACTION`` allows (exit 1). With ``NUM_GPUS`` > 1 the processes are spawned, and the same line ends
torch's report of the failed process instead.
"""

import logging
import os
import sys
from typing import Optional, Sequence

from fvcore.common.config import CfgNode

from stica_slowfast.checkpoint import CheckpointFileError, CheckpointMismatchError
from stica_slowfast.config import ConfigError
from stica_slowfast.config.args import load_config_from_args, parse_args
from stica_slowfast.data.bad_input import TooManyBadVideosError
from stica_slowfast.data.datasets import SplitFileError

from .evaluator import test
from .feature_probe import feature_probe
from .launch import launch_job
from .retrieval import retrieval
from .setup import OutputDirError, check_output_dir, output_dir_lock
from .trainer import train

logger = logging.getLogger(__name__)


def prepare_data(cfg: CfgNode) -> CfgNode:
    """With STICA.SYNTHETIC.ENABLE and no DATA.PATH_TO_DATA_DIR, generate the synthetic dataset
    into OUTPUT_DIR/synthetic_data (once; later runs reuse it) and point the config at it."""
    if not cfg.STICA.SYNTHETIC.ENABLE or cfg.DATA.PATH_TO_DATA_DIR:
        return cfg
    from stica_slowfast.synthetic import generate_dataset_from_cfg

    check_output_dir(cfg.OUTPUT_DIR)  # a clear error rather than the generator's
    out_dir = os.path.join(cfg.OUTPUT_DIR, "synthetic_data")
    summary = generate_dataset_from_cfg(cfg, out_dir)
    how = f"generated in {summary['seconds']:.1f} s" if summary["generated"] else "reused"
    print(f"synthetic dataset {out_dir}: {summary['num_videos']} videos, {how}", file=sys.stderr, flush=True)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATA.PATH_TO_DATA_DIR = out_dir
    cfg.freeze()
    return cfg


def run(cfg: CfgNode) -> None:
    """Per-process job: train if TRAIN.ENABLE, test if TEST.ENABLE, retrieval if STICA.RETRIEVAL.ENABLE,
    the feature probe if STICA.FEATURE_PROBE.ENABLE; all under OUTPUT_DIR's run lock (taken by process 0
    before anything is written there), so that a second run on a live OUTPUT_DIR stops at once."""
    with output_dir_lock(cfg.OUTPUT_DIR):
        if cfg.TRAIN.ENABLE:
            train(cfg)
        if cfg.TEST.ENABLE:
            test(cfg)
        if cfg.STICA.RETRIEVAL.ENABLE:
            retrieval(cfg)
        if cfg.STICA.FEATURE_PROBE.ENABLE:
            feature_probe(cfg)


# The input is wrong, not the program: one line, no traceback.
_ONE_LINE_ERRORS = (OutputDirError, CheckpointFileError, CheckpointMismatchError, SplitFileError, TooManyBadVideosError)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        cfg = load_config_from_args(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        launch_job(prepare_data(cfg), args.init_method, run)
    except _ONE_LINE_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
