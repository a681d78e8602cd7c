#!/usr/bin/env python3
"""The rho-clip SSL result table on the synthetic dataset: pretrain -> linear probe, per method and
seed, beside the baselines a method must beat.

For each seed (``RNG_SEED``):

* baselines, probed exactly as the methods are (``configs/demo/linear_tiny.yaml``: a logistic
  regression on frozen features of the same decoded clips):
  - **random init**: the backbone at its random initialisation;
  - **colour only**: colour statistics of the clip instead of a backbone (``MODEL.ARCH colour_stats``),
    what a classifier gets from colour alone;
  - **supervised**: the same backbone trained with the labels for the same budget
    (``configs/demo/supervised_bound_tiny.yaml``), the upper bound;
* each method: ``configs/demo/rho_<method>_tiny.yaml`` pretrains without labels (kNN monitor on), then
  the probe reads its last checkpoint; the probe also gives diagnostics of the test features
  (effective rank, alignment, uniformity) that tell a collapse from slow learning.

A method's margin is its mean probe top-1 over the seeds minus the better of the two shortcut
baselines' means. Every run is a real ``tools/run_net.py`` process on one generated dataset, whose
progress is shown as it runs. Writes into ``--out``::

    report.md     markdown table (mean +- sd over seeds)
    report.json   every run's figures (runs not made again are kept from an earlier report in the
                  same --out with the same overrides on the same dataset)
    report.png    probe top-1 per method and baseline, one dot per seed

With ``--readme``, the table and the chart (copied to ``docs/ssl_demo_report.png`` beside the README)
replace the README's section between the ssl-demo-report markers.

    python tools/ssl_demo_report.py [--methods simclr moco byol swav] [--seeds 0 1 2]
                                    [--out output/ssl_demo_report] [--readme README.md] [KEY VALUE ...]
    python tools/ssl_demo_report.py --render-only [--out DIR] [--readme README.md]
"""

import argparse
import json
import os
from typing import Dict, List, Sequence, Tuple

from demo_common import (DEMO, copy_beside_readme, last_checkpoint, made_with, mean_sd, merge_runs, parse_report_args,
                         pm, prepare_data, read_json_stats, read_metrics, run_net, save_report, update_readme)

METHODS = ("simclr", "moco", "byol", "swav")
NAMES = {"simclr": "rhoSimCLR", "moco": "rhoMoCo", "byol": "rhoBYOL", "swav": "rhoSwAV",
         "random": "random init", "colour": "colour only", "supervised": "supervised (upper bound)"}
BASELINES = ("random", "colour", "supervised")
SHORTCUTS = ("random", "colour")
# Margin over the best shortcut baseline a method's mean must reach to count as learning.
REQUIRED_MARGIN = 15.0
START, END = "<!-- ssl-demo-report:start -->", "<!-- ssl-demo-report:end -->"
PROBE = os.path.join(DEMO, "linear_tiny.yaml")
DIAGNOSTICS = ("effective_rank", "alignment", "uniformity")


def _probe_row(probe_dir: str) -> Dict:
    metrics = read_metrics(probe_dir)
    row = {"top1_acc": metrics["feature_probe_top1_acc"],
           "train_top1_acc": metrics["feature_probe_train_top1_acc"], "l2": metrics["feature_probe_l2"]}
    row.update({k: metrics[k] for k in DIAGNOSTICS if k in metrics})
    return row


def _run(kind: str, seed: int, out: str, common: List[str]) -> Dict:
    """One baseline or method at one seed: its pretraining (if any) and its probe."""
    tag = f"{kind}_seed{seed}"
    seeded = [*common, "RNG_SEED", str(seed)]
    row: Dict = {"kind": kind, "seed": seed, "pretrain_s": 0.0}
    checkpoint, arch = "", []
    if kind == "colour":
        arch = ["MODEL.ARCH", "colour_stats"]
    elif kind != "random":
        pre_cfg = os.path.join(DEMO, "supervised_bound_tiny.yaml" if kind == "supervised" else f"rho_{kind}_tiny.yaml")
        pre_dir = os.path.join(out, tag)
        row["pretrain_s"] = round(run_net(pre_cfg, pre_dir, seeded, stage=f"{NAMES[kind]}, seed {seed}"), 1)
        checkpoint = last_checkpoint(pre_dir)
        stats = read_json_stats(pre_dir)
        row["knn_curve"] = [[r["epoch"], r["knn_top1_acc"]] for r in stats if r.get("_type") == "knn_val"]
        row["knn_top1_acc"] = read_metrics(pre_dir).get("knn_top1_acc")
    probe_dir = os.path.join(out, f"{tag}_probe")
    probe_opts = [*seeded, "TRAIN.CHECKPOINT_FILE_PATH", checkpoint, *arch]
    row["probe_s"] = round(run_net(PROBE, probe_dir, probe_opts, stage=f"{NAMES[kind]} probe, seed {seed}"), 1)
    row.update(_probe_row(probe_dir))
    return row


def _summary(runs: List[Dict], kind: str) -> Dict:
    """Mean and sd over the seeds of ``kind``'s runs (sd 0 for one seed)."""
    rows = [r for r in runs if r["kind"] == kind]

    out = {"kind": kind, "seeds": sorted(r["seed"] for r in rows)}
    for key in ("top1_acc", "knn_top1_acc", "pretrain_s", "probe_s", *DIAGNOSTICS):
        out[key], out[f"{key}_sd"] = mean_sd([r.get(key) for r in rows])
    return out


def _table(runs: List[Dict]) -> str:
    kinds = [k for k in (*BASELINES, *METHODS) if any(r["kind"] == k for r in runs)]
    summary = {k: _summary(runs, k) for k in kinds}
    shortcut = max((summary[k]["top1_acc"] for k in SHORTCUTS if k in summary), default=None)
    seeds = sorted({r["seed"] for r in runs})
    over = f"mean ± sd over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
    lines = [
        f"Linear probe top-1 on the synthetic test split, {over}; "
        f"a method counts when it beats the better shortcut baseline (random init, colour only) by "
        f"{REQUIRED_MARGIN:.0f} points. Effective rank, alignment and uniformity are those of the test "
        f"features (a collapse shows as rank near 1 and uniformity near 0).",
        "",
        "| run | pretrain (min) | probe top-1 | vs. best shortcut | kNN top-1 after pretraining | effective rank | alignment | uniformity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        s = summary[kind]
        margin = "-"
        if kind in METHODS and shortcut is not None:
            diff = s["top1_acc"] - shortcut
            margin = f"{diff:+.1f}" + (" ✓" if diff >= REQUIRED_MARGIN else "")
        pretrain = pm(s["pretrain_s"] / 60, s["pretrain_s_sd"] / 60) if s["pretrain_s"] else "-"
        lines.append(
            f"| {NAMES[kind]} | {pretrain} | {pm(s['top1_acc'], s['top1_acc_sd'], ' %')} | {margin} | "
            f"{pm(s['knn_top1_acc'], s['knn_top1_acc_sd'], ' %')} | {pm(s['effective_rank'], s['effective_rank_sd'])} | "
            f"{pm(s['alignment'], s['alignment_sd'], digits=3)} | {pm(s['uniformity'], s['uniformity_sd'], digits=2)} |")
    return "\n".join(lines) + "\n"


def _chart(runs: List[Dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in (*BASELINES, *METHODS) if any(r["kind"] == k for r in runs)]
    fig, ax = plt.subplots(figsize=(6.5, 3.2), dpi=120)
    for i, kind in enumerate(kinds):
        values = [r["top1_acc"] for r in runs if r["kind"] == kind]
        colour = "tab:gray" if kind in BASELINES else "tab:blue"
        ax.bar(i, mean_sd(values)[0], color=colour, alpha=0.5)
        ax.scatter([i] * len(values), values, color=colour, s=12, zorder=3)
    ax.set_xticks(range(len(kinds)), [NAMES[k].replace(" (upper bound)", "") for k in kinds], rotation=20,
                  fontsize=8)
    ax.set_ylabel("linear probe top-1 (%)")
    ax.set_ylim(0, 100)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _run_key(run: Dict) -> Tuple[int, int]:
    return (list(BASELINES + METHODS).index(run["kind"]), run["seed"])


def _write_outputs(report: Dict, out: str, readme: str) -> None:
    """report.md, report.png and, with ``readme``, its section from the figures of ``report``."""
    table = _table(report["runs"])
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(table)
    _chart(report["runs"], os.path.join(out, "report.png"))
    if readme:
        # The chart goes next to the README (docs/) and is shown under the table.
        chart = copy_beside_readme(readme, os.path.join(out, "report.png"), "ssl_demo_report.png")
        # Every run's figures beside it: later seeds can be added to them (copy it to OUT/report.json).
        copy_beside_readme(readme, os.path.join(out, "report.json"), "ssl_demo_report.json")
        update_readme(readme, START, END, f"{table}\n![linear probe top-1 per method]({chart})\n")
    print(table)


def run_report(methods: Sequence[str], seeds: Sequence[int], out: str, overrides: List[str],
               baselines: Sequence[str] = BASELINES) -> Dict:
    data = prepare_data(PROBE, out, overrides)
    common = ["DATA.PATH_TO_DATA_DIR", data, *overrides]
    path = os.path.join(out, "report.json")
    made = made_with(overrides, data)
    report = {"runs": merge_runs(path, [], made, _run_key), **made}
    for seed in seeds:
        for kind in (*baselines, *methods):
            run = _run(kind, seed, out, common)
            print(json.dumps(run), flush=True)
            report["runs"] = merge_runs(path, [run], made, _run_key)
            save_report(path, report)
    return report


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-baselines", action="store_true",
                        help="run only the methods (baselines kept from an earlier report in --out)")


def main() -> None:
    args, overrides, report = parse_report_args(
        __doc__, os.path.join("output", "ssl_demo_report"), "report.json", _arguments)
    if report is None:
        report = run_report(args.methods, args.seeds, args.out, overrides,
                            baselines=() if args.no_baselines else BASELINES)
    _write_outputs(report, args.out, args.readme)


if __name__ == "__main__":
    main()
