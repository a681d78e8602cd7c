"""Average the final metrics of several runs, e.g. the three official splits of UCF-101 or HMDB-51.

    python tools/average_splits.py output/finetune_ucf101_split1 output/finetune_ucf101_split2 \
        output/finetune_ucf101_split3

Each argument is a run's OUTPUT_DIR or its ``metrics.json``. Prints one JSON object with, for every
numeric key the runs have in common (``top1_acc`` and ``top5_acc`` are required), the mean, the
population std (numpy's default, ddof 0) and the per-run values in argument order, plus the files read.
Exits with status 2 and a one-line message when a file is missing or lacks a required key.
"""

import argparse
import json
import math
import os
import sys
from typing import Dict, Optional, Sequence

REQUIRED = ("top1_acc", "top5_acc")


def metrics_path(path: str) -> str:
    """``path`` itself when it names a ``.json`` file, else the ``metrics.json`` of run directory ``path``."""
    return path if path.endswith(".json") and not os.path.isdir(path) else os.path.join(path, "metrics.json")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def average(runs: Dict[str, Dict[str, object]], required: Sequence[str] = REQUIRED) -> Dict[str, Dict]:
    """Statistics of every numeric key all runs have (``required`` first, then sorted).

    Args:
        runs: ``{name: metrics}`` in the order the values are reported.
        required: keys every run must hold as a number.

    Returns:
        ``{key: {"mean": float, "std": float, "values": [float per run]}}``; std divides by the number
        of runs (numpy's default).

    Raises:
        ValueError: naming the run that lacks a required key (or holds something else than a number).
    """
    for name, metrics in runs.items():
        missing = [k for k in required if not _is_number(metrics.get(k))]
        if missing:
            raise ValueError(f"{name}: no numeric {', '.join(missing)} (keys: {sorted(metrics)})")
    first = next(iter(runs.values()))
    common = [k for k in first if k not in required and all(_is_number(m.get(k)) for m in runs.values())]
    stats = {}
    for key in list(required) + sorted(common):
        values = [float(m[key]) for m in runs.values()]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        stats[key] = {"mean": mean, "std": std, "values": values}
    return stats


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run OUTPUT_DIRs or their metrics.json files")
    args = parser.parse_args(argv)
    runs: Dict[str, Dict[str, object]] = {}
    for path in map(metrics_path, args.runs):
        if not os.path.isfile(path):
            _fail(f"{path} not found (has that run finished its test?)")
        if path in runs:
            _fail(f"{path} given twice")
        with open(path) as f:
            runs[path] = json.load(f)
    try:
        stats = average(runs)
    except ValueError as err:
        _fail(str(err))
    print(json.dumps({"num_runs": len(runs), "files": list(runs), **stats}, indent=1))


if __name__ == "__main__":
    main()
