#!/usr/bin/env python3
"""Submit a run to SLURM with submitit (``pip install -e ".[slurm]"``).

    python tools/submit.py --cfg configs/X.yaml --nodes 2 --gpus_per_node 8 --partition P \
        [--timeout_min 4320] [--job_dir DIR] [KEY VALUE ...]

One SLURM task per GPU; submitit exports RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT and
the engine joins that process group as under torchrun. NUM_GPUS is set to ``--gpus_per_node`` and
NUM_SHARDS to ``--nodes``; checkpoints in OUTPUT_DIR make a requeued job resume (TRAIN.AUTO_RESUME).

Before the time limit (or a preemption) submitit sends its signal (SIGUSR2, or
``SUBMITIT_PREEMPT_SIGNAL``), which is one of the run's TRAIN.PREEMPT_SIGNALS: every task finishes its
step, task 0 writes a mid-epoch checkpoint, and submitit's own handler, called after it, requeues the
job (``Trainer.checkpoint``); the requeued job continues from that step.
"""

import argparse
import os
import sys

from stica_slowfast.config import ConfigError
from stica_slowfast.engine.entry import prepare_data, run
from stica_slowfast.engine.launch import launch_job
from stica_slowfast.config.args import load_config_from_args, parse_args


class Trainer:
    """The callable submitit pickles and runs once per task; ``checkpoint`` makes it requeueable."""

    def __init__(self, run_args: argparse.Namespace):
        self.run_args = run_args

    def __call__(self) -> None:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        cfg = prepare_data(load_config_from_args(self.run_args))
        launch_job(with_submitit_signal(cfg), "env://", run)

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(Trainer(self.run_args))


def with_submitit_signal(cfg):
    """``cfg`` whose TRAIN.PREEMPT_SIGNALS holds the signal submitit sends before a time limit."""
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper()
    if name in [s.upper() for s in cfg.TRAIN.PREEMPT_SIGNALS]:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TRAIN.PREEMPT_SIGNALS = [*cfg.TRAIN.PREEMPT_SIGNALS, name]
    cfg.freeze()
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus_per_node", type=int, default=8)
    parser.add_argument("--cpus_per_task", type=int, default=10)
    parser.add_argument("--mem_gb", type=int, default=0, help="memory per node (0 = SLURM default)")
    parser.add_argument("--partition", default="")
    parser.add_argument("--timeout_min", type=int, default=60 * 72)
    parser.add_argument("--job_dir", default="", help="submitit logs (default OUTPUT_DIR/submitit)")
    parser.add_argument("--name", default="stica_slowfast")
    parser.add_argument("--cluster", default=None, choices=[None, "slurm", "local", "debug"],
                        help="submitit backend (default: SLURM when available, else local processes)")
    ours, rest = parser.parse_known_args()

    run_args = parse_args(rest)
    run_args.num_shards = ours.nodes
    run_args.opts += ["NUM_GPUS", str(ours.gpus_per_node)]
    try:
        cfg = load_config_from_args(run_args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

    import submitit

    executor = submitit.AutoExecutor(
        folder=ours.job_dir or os.path.join(cfg.OUTPUT_DIR, "submitit"), cluster=ours.cluster
    )
    params = dict(
        name=ours.name,
        nodes=ours.nodes,
        gpus_per_node=ours.gpus_per_node,
        tasks_per_node=max(1, ours.gpus_per_node),
        cpus_per_task=ours.cpus_per_task,
        timeout_min=ours.timeout_min,
    )
    if ours.mem_gb:
        params["mem_gb"] = ours.mem_gb
    if ours.partition:
        params["slurm_partition"] = ours.partition
    executor.update_parameters(**params)
    job = executor.submit(Trainer(run_args))
    print(f"submitted job {job.job_id}; logs in {executor.folder}")


if __name__ == "__main__":
    main()
