#!/usr/bin/env python3
"""The rho-clip SSL result table on the synthetic dataset: pretrain -> linear probe, per method.

For each method, ``configs/demo/rho_<method>_tiny.yaml`` pretrains a backbone without labels (with the
kNN monitor on) and ``configs/demo/linear_tiny.yaml`` probes its last checkpoint; the same probe on a
randomly initialised backbone is the baseline. Every run is a real ``tools/run_net.py`` process on one
generated dataset. Writes into ``--out``::

    report.md     markdown table
    report.json   every figure of the table (rows of methods not run again are kept from an earlier
                  report in the same --out with the same overrides)
    report.png    bar chart of probe top-1 per method against the random-init baseline

With ``--readme``, the table and the chart (copied to ``docs/ssl_demo_report.png`` beside the README)
replace the README's section between the ssl-demo-report markers.

    python tools/ssl_demo_report.py [--methods simclr moco byol swav] [--out output/ssl_demo_report]
                                    [--readme README.md] [KEY VALUE ...]   (overrides for every run)
    python tools/ssl_demo_report.py --render-only [--out DIR] [--readme README.md]
"""

import argparse
import json
import os
from typing import Dict, List

from demo_common import DEMO, copy_beside_readme, last_checkpoint, prepare_data, read_metrics, run_net, update_readme

METHODS = ("simclr", "moco", "byol", "swav")
NAMES = {"simclr": "rhoSimCLR", "moco": "rhoMoCo", "byol": "rhoBYOL", "swav": "rhoSwAV"}
START, END = "<!-- ssl-demo-report:start -->", "<!-- ssl-demo-report:end -->"


def _table(rows: List[Dict], baseline: float) -> str:
    lines = [
        f"Linear probe top-1 on the synthetic test split (random-init backbone, same probe: "
        f"**{baseline:.1f} %**).",
        "",
        "| method | pretrain (min) | probe (min) | total (min) | kNN top-1 after pretraining | probe top-1 | vs. random init |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        knn = f"{r['knn_top1_acc']:.1f} %" if r["knn_top1_acc"] is not None else "-"
        lines.append(
            f"| {r['method']} | {r['pretrain_s'] / 60:.1f} | {r['probe_s'] / 60:.1f} | "
            f"{(r['pretrain_s'] + r['probe_s']) / 60:.1f} | {knn} | "
            f"{r['top1_acc']:.1f} % | {r['top1_acc'] - baseline:+.1f} |")
    return "\n".join(lines) + "\n"


def _chart(rows: List[Dict], baseline: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=120)
    names = [r["method"] for r in rows]
    ax.bar(names, [r["top1_acc"] for r in rows], color="tab:blue", label="pretrained")
    ax.axhline(baseline, color="tab:red", linestyle="--", label="random init")
    ax.set_ylabel("linear probe top-1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--out", default=os.path.join("output", "ssl_demo_report"))
    parser.add_argument("--readme", help="README.md to put the table into (between the report markers)")
    parser.add_argument("--render-only", action="store_true",
                        help="no runs: rewrite the table, chart and README from OUT/report.json")
    args, overrides = parser.parse_known_args()
    out = os.path.abspath(args.out)
    if args.render_only:
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        _write_outputs(report, out, args.readme)
        return
    data = prepare_data(os.path.join(DEMO, "linear_tiny.yaml"), out, overrides)
    common = ["DATA.PATH_TO_DATA_DIR", data, *overrides]
    probe_cfg = os.path.join(DEMO, "linear_tiny.yaml")

    random_dir = os.path.join(out, "random_init_probe")
    random_s = run_net(probe_cfg, random_dir, ["TRAIN.CHECKPOINT_FILE_PATH", "", *common])
    baseline = read_metrics(random_dir)["top1_acc"]
    print(json.dumps({"method": "random_init", "probe_s": round(random_s, 1), "top1_acc": baseline}), flush=True)

    rows = []
    for method in args.methods:
        pre_dir, probe_dir = os.path.join(out, method), os.path.join(out, f"{method}_probe")
        pretrain_s = run_net(os.path.join(DEMO, f"rho_{method}_tiny.yaml"), pre_dir, common)
        probe_s = run_net(probe_cfg, probe_dir, ["TRAIN.CHECKPOINT_FILE_PATH", last_checkpoint(pre_dir), *common])
        row = {
            "method": NAMES[method],
            "pretrain_s": round(pretrain_s, 1),
            "probe_s": round(probe_s, 1),
            "knn_top1_acc": read_metrics(pre_dir).get("knn_top1_acc"),
            "top1_acc": read_metrics(probe_dir)["top1_acc"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    rows = _merge_rows(os.path.join(out, "report.json"), rows, list(overrides))
    report = {"random_init_top1_acc": baseline, "random_init_probe_s": round(random_s, 1), "methods": rows,
              "overrides": list(overrides)}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    _write_outputs(report, out, args.readme)


def _merge_rows(path: str, rows: List[Dict], overrides: List[str]) -> List[Dict]:
    """This run's rows plus the rows of other methods from an earlier report in the same ``--out`` made
    with the same overrides (so ``--methods byol`` after a config change redoes only that row)."""
    done = {r["method"] for r in rows}
    kept = []
    if os.path.exists(path):
        with open(path) as f:
            earlier = json.load(f)
        if earlier.get("overrides") == overrides:
            kept = [r for r in earlier["methods"] if r["method"] not in done]
    order = [NAMES[m] for m in METHODS]
    return sorted(kept + rows, key=lambda r: order.index(r["method"]))


def _write_outputs(report: Dict, out: str, readme: str) -> None:
    """report.md, report.png and, with ``readme``, its section from the figures of ``report``."""
    rows, baseline = report["methods"], report["random_init_top1_acc"]
    table = _table(rows, baseline)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(table)
    _chart(rows, baseline, os.path.join(out, "report.png"))
    if readme:
        # The chart goes next to the README (docs/) and is shown under the table.
        chart = copy_beside_readme(readme, os.path.join(out, "report.png"), "ssl_demo_report.png")
        update_readme(readme, START, END, f"{table}\n![linear probe top-1 per method]({chart})\n")
    print(table)


if __name__ == "__main__":
    main()
