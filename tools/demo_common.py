"""Helpers of the demo scripts (tools/demo.py, tools/ssl_demo_report.py): every stage is a real
``tools/run_net.py`` process whose figures are read back from its OUTPUT_DIR."""

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "demo")


def run_net(cfg: str, out_dir: str, overrides: Sequence[str]) -> float:
    """Run tools/run_net.py from scratch in ``out_dir`` (an earlier run there is deleted: it would be
    resumed); return its wall time in seconds. Its output goes to out_dir/run.log."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    cmd = [sys.executable, os.path.join(REPO, "tools", "run_net.py"), "--cfg", cfg, "OUTPUT_DIR", out_dir,
           *overrides]
    start = time.perf_counter()
    with open(os.path.join(out_dir, "run.log"), "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed (exit {proc.returncode}); see {out_dir}/run.log")
    return time.perf_counter() - start


def read_metrics(out_dir: str) -> Dict[str, float]:
    """The run's metrics.json."""
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return json.load(f)


def read_json_stats(out_dir: str) -> List[Dict]:
    """The epoch-level json_stats records of a run (OUTPUT_DIR/json_stats.log), in order."""
    path = os.path.join(out_dir, "json_stats.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def last_checkpoint(out_dir: str) -> str:
    """The newest checkpoint of a run (exits with a message when there is none)."""
    ckpts = sorted(glob.glob(os.path.join(out_dir, "checkpoints", "checkpoint_epoch_*.pyth")))
    if not ckpts:
        sys.exit(f"error: no checkpoint in {out_dir}/checkpoints")
    return ckpts[-1]


def prepare_data(cfg_path: str, out: str, overrides: Sequence[str]) -> str:
    """Generate the synthetic dataset described by ``cfg_path`` (+ overrides) into OUT/synthetic_data
    once; every stage then reads it. Returns its directory."""
    from stica_slowfast.data.synthetic import generate_dataset_from_cfg
    from stica_slowfast.utils.parser import load_config_from_args, parse_args

    cfg = load_config_from_args(parse_args(["--cfg", cfg_path, *overrides]))
    data = os.path.join(out, "synthetic_data")
    generate_dataset_from_cfg(cfg, data)
    return data


def update_readme(readme: str, start: str, end: str, block: str) -> None:
    """Replace the README's text between the ``start`` and ``end`` markers with ``block``."""
    with open(readme) as f:
        text = f.read()
    if start not in text or end not in text:
        sys.exit(f"error: {readme} has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(readme, "w") as f:
        f.write(f"{head}{start}\n{block}{end}{tail}")


def copy_beside_readme(readme: str, source: str, name: str) -> str:
    """Copy ``source`` to docs/NAME next to the README; return the README-relative path."""
    target = os.path.join(os.path.dirname(os.path.abspath(readme)), "docs", name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)
    return f"docs/{name}"
