"""Helpers of the demo scripts (tools/demo.py, tools/ssl_demo_report.py): every stage is a real
``tools/run_net.py`` process whose figures are read back from its OUTPUT_DIR."""

import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "demo")


def _progress(record: Dict) -> str:
    """A short status of a run from its newest json_stats record (training epoch / loss / ETA)."""
    kind = record.get("_type", "")
    if kind == "train_iter":
        return f"epoch {record['epoch']} iter {record['iter']} loss {record['loss']:.3f} eta {record.get('eta', '?')}"
    if kind == "train_epoch":
        return f"epoch {record['epoch']} done, loss {record['loss']:.3f}"
    if kind.startswith("knn"):
        return f"epoch {record.get('epoch', '-')} kNN top-1 {record['knn_top1_acc']:.1f} %"
    if kind == "feature_probe":
        return f"probe top-1 {record['feature_probe_top1_acc']:.1f} %"
    return kind


def _new_records(log_path: str, offset: int) -> Tuple[List[Dict], int]:
    """The json_stats records written to ``log_path`` after byte ``offset`` (whole lines only), and
    the offset after them."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    records = []
    for line in chunk[:end].decode(errors="replace").splitlines():
        if "json_stats: " in line:
            try:
                records.append(json.loads(line.split("json_stats: ", 1)[1]))
            except ValueError:
                pass
    return records, offset + end


def run_net(cfg: str, out_dir: str, overrides: Sequence[str], stage: str = "") -> float:
    """Run tools/run_net.py from scratch in ``out_dir`` (an earlier run there is deleted: it would be
    resumed); return its wall time in seconds. Its output goes to out_dir/run.log; meanwhile the
    stage's progress (epoch, loss, ETA) is shown on stderr: on a terminal one line rewritten with the
    newest record, elsewhere a line per epoch-level record."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    cmd = [sys.executable, os.path.join(REPO, "tools", "run_net.py"), "--cfg", cfg, "OUTPUT_DIR", out_dir,
           *overrides]
    log_path = os.path.join(out_dir, "run.log")
    name = stage or os.path.basename(out_dir)
    tty = sys.stderr.isatty()
    print(f"[{name}] {os.path.relpath(cfg, REPO)}: log {log_path}", file=sys.stderr, flush=True)
    start = time.perf_counter()

    def show(records: List[Dict]) -> None:
        shown = records[-1:] if tty else [r for r in records if r.get("_type") != "train_iter"]
        for record in shown:
            text = f"[{name}] {(time.perf_counter() - start) / 60:4.1f} min  {_progress(record)}"
            print(f"\r{text:<100}" if tty else text, end="" if tty else "\n", file=sys.stderr, flush=True)

    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        offset = 0
        while proc.poll() is None:
            time.sleep(1.0)
            records, offset = _new_records(log_path, offset)
            show(records)
    show(_new_records(log_path, offset)[0])  # what the run wrote after the last look
    if tty:
        print(file=sys.stderr)
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed (exit {proc.returncode}); see {log_path}")
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


def load_config(cfg_path: str, overrides: Sequence[str]):
    """The config of ``cfg_path`` with the command-line ``overrides``, as run_net loads it."""
    from stica_slowfast.config.args import load_config_from_args, parse_args

    return load_config_from_args(parse_args(["--cfg", cfg_path, *overrides]))


def prepare_data(cfg_path: str, out: str, overrides: Sequence[str]) -> str:
    """Generate the synthetic dataset described by ``cfg_path`` (+ overrides) into OUT/synthetic_data
    once; every stage then reads it. Returns its directory."""
    from stica_slowfast.synthetic import generate_dataset_from_cfg

    cfg = load_config(cfg_path, overrides)
    data = os.path.join(out, "synthetic_data")
    generate_dataset_from_cfg(cfg, data)
    return data


def made_with(overrides: Sequence[str], data: str) -> Dict:
    """What a report's runs depend on besides the configs: the command line's config overrides and
    the generator parameters of the dataset in ``data`` (its format version among them)."""
    with open(os.path.join(data, "dataset.json")) as f:
        return {"overrides": list(overrides), "dataset": json.load(f)["params"]}


def merge_runs(path: str, runs: List[Dict], made: Dict, key: Callable[[Dict], Tuple]) -> List[Dict]:
    """``runs`` plus the runs of the report already at ``path`` whose ``key`` none of ``runs`` has,
    if that report was made as ``made`` says (:func:`made_with`: the same overrides, on the same
    dataset), so a report can be built up over several invocations and one run redone; sorted by
    ``key``. Runs of another dataset or other overrides are dropped, never mixed in."""
    done = {key(r) for r in runs}
    kept = []
    if os.path.exists(path):
        with open(path) as f:
            earlier = json.load(f)
        if all(earlier.get(name) == value for name, value in made.items()):
            kept = [r for r in earlier.get("runs", []) if key(r) not in done]
    return sorted(kept + runs, key=key)


def save_report(path: str, report: Dict) -> None:
    """Write ``report`` as JSON (after every run: a report stopped part-way keeps what it ran)."""
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


def mean_sd(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample sd of ``values`` (sd 0 for one value; (None, None) for none)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def pm(mean: Optional[float], sd: Optional[float], unit: str = "", digits: int = 1) -> str:
    """``mean ± sd`` (just the mean when sd is 0, "-" when there is no mean)."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}{unit}" if sd else f"{mean:.{digits}f}{unit}"


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


# A config key as the command line gives it (PySlowFast's KEY VALUE overrides): RNG_SEED, SOLVER.MAX_EPOCH.
_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*")


def _split_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``argv`` split into the tool's own arguments and the config overrides, which start at the first
    config key that is not an option's value (so ``--seeds 0 1 SOLVER.MAX_EPOCH 8`` works)."""
    takes_value = {s for a in parser._actions if a.nargs is None for s in a.option_strings}
    i = 0
    while i < len(argv):
        if argv[i] in takes_value:
            i += 2
            continue
        if _CONFIG_KEY.fullmatch(argv[i]):
            return list(argv[:i]), list(argv[i:])
        i += 1
    return list(argv), []


def parse_report_args(
    doc: str, default_out: str, report_file: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> Tuple[argparse.Namespace, List[str], Optional[Dict]]:
    """The command line of a report tool: ``--out``, ``--readme``, ``--render-only`` and the tool's own
    arguments; the rest are config overrides. Returns (args with an absolute ``out``, overrides, the
    earlier report of OUT/``report_file`` with --render-only, else None after creating OUT)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=default_out)
    parser.add_argument("--readme", help="README.md to put the table into (between its markers)")
    parser.add_argument("--render-only", action="store_true",
                        help=f"no runs: rewrite the table, plots and README from OUT/{report_file}")
    add_arguments(parser)
    argv, overrides = _split_overrides(parser, sys.argv[1:])
    args = parser.parse_args(argv)
    args.out = os.path.abspath(args.out)
    if args.render_only:
        with open(os.path.join(args.out, report_file)) as f:
            return args, list(overrides), json.load(f)
    os.makedirs(args.out, exist_ok=True)
    return args, list(overrides), None
