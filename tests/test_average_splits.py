"""tools/average_splits.py: mean / std / per-split values of the metrics of three runs, and its errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "average_splits.py")
SPLITS = [
    {"top1_acc": 91.25, "top5_acc": 98.5, "knn_top1_acc": 60.0, "checkpoint": "a.pyth"},
    {"top1_acc": 89.5, "top5_acc": 99.0, "knn_top1_acc": 58.5, "R@1": 40.0},
    {"top1_acc": 92.0, "top5_acc": 97.75, "knn_top1_acc": 61.0},
]


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def runs(tmp_path):
    dirs = []
    for i, metrics in enumerate(SPLITS, start=1):
        run = tmp_path / f"ucf101_split{i}"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps(metrics))
        dirs.append(run)
    return dirs


def test_mean_std_and_values_match_numpy(runs):
    # Directories and metrics.json paths are both accepted.
    proc = _run(runs[0], runs[1] / "metrics.json", runs[2])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["num_runs"] == 3 and out["files"] == [str(r / "metrics.json") for r in runs]
    # Numeric keys common to all runs; strings and keys of only some runs are left out.
    assert [k for k in out if k not in ("num_runs", "files")] == ["top1_acc", "top5_acc", "knn_top1_acc"]
    for key in ("top1_acc", "top5_acc", "knn_top1_acc"):
        values = np.array([m[key] for m in SPLITS])
        assert out[key]["values"] == values.tolist()
        assert out[key]["mean"] == pytest.approx(values.mean())
        assert out[key]["std"] == pytest.approx(values.std())


def test_missing_file_is_a_clear_error(runs, tmp_path):
    proc = _run(runs[0], tmp_path / "ucf101_split4")
    assert proc.returncode == 2 and proc.stdout == ""
    message = proc.stderr.strip()
    assert "\n" not in message and "ucf101_split4" in message and "metrics.json not found" in message


def test_missing_key_names_the_file_and_key(runs):
    (runs[1] / "metrics.json").write_text(json.dumps({"top1_acc": 90.0}))
    proc = _run(*runs)
    assert proc.returncode == 2
    assert "ucf101_split2" in proc.stderr and "top5_acc" in proc.stderr
