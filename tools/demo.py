#!/usr/bin/env python3
"""The STiCA demo, end to end on a fresh machine (CPU, minutes):

    1. make the synthetic audio-visual dataset (h264 + aac mp4 files);
    2. pretrain STiCA (configs/demo/stica_tiny.yaml) without labels;
    3. linear-probe its video encoder, and under the same probe the baselines it must beat: a randomly
       initialised encoder, colour statistics of the clips (what colour alone tells), and as the upper
       bound the same encoder trained with the labels for the same number of epochs;
    4. linear-probe its audio encoder;
    5. retrieval on the test split: video -> video (train videos as the bank), audio -> video and
       video -> audio (the test videos' own audio and video);
    6. print a table; write OUT/demo_report.{md,json} and PNG curves OUT/demo_curves.png (pretraining
       losses, video-audio matching, kNN) and OUT/demo_probes.png.

Every stage is a ``tools/run_net.py`` process (outputs and logs under OUT/<stage>/); its progress
(epoch, loss, ETA) is shown while it runs. The probes are logistic regressions fitted to convergence on
frozen features (``STICA.FEATURE_PROBE``, see configs/demo/linear_tiny.yaml).

    python tools/demo.py [--out output/demo] [--seed 0] [--readme README.md] [KEY VALUE ...]
        KEY VALUE pairs override the config of every stage (e.g. SOLVER.MAX_EPOCH 8 for a quicker run).
    python tools/demo.py --render-only [--out DIR] [--readme README.md]
"""

import argparse
import json
import os
import time
from typing import Dict, List

from demo_common import (DEMO, copy_beside_readme, last_checkpoint, load_config, parse_report_args, prepare_data,
                         read_json_stats, read_metrics, run_net, update_readme)

START, END = "<!-- stica-demo:start -->", "<!-- stica-demo:end -->"
PRETRAIN = os.path.join(DEMO, "stica_tiny.yaml")
VIDEO_PROBE = os.path.join(DEMO, "stica_linear_tiny.yaml")
AUDIO_PROBE = os.path.join(DEMO, "stica_audio_linear_tiny.yaml")
# The supervised upper bound at the STiCA demo's input and epochs (its probe: VIDEO_PROBE).
SUPERVISED = os.path.join(DEMO, "supervised_bound_tiny.yaml")


def _run_stages(out: str, overrides: List[str]) -> Dict:
    """All stages; returns the report (figures and stage times)."""
    seconds: Dict[str, float] = {}
    start = time.perf_counter()
    data = prepare_data(PRETRAIN, out, overrides)
    seconds["data"] = time.perf_counter() - start
    common = ["DATA.PATH_TO_DATA_DIR", data, *overrides]

    pre = os.path.join(out, "stica")
    seconds["pretrain"] = run_net(PRETRAIN, pre, common, stage="STiCA pretraining")
    ckpt = last_checkpoint(pre)
    # The upper bound: the video encoder trained with the labels, at the demo's input and epochs.
    bound = os.path.join(out, "supervised")
    pretrain_cfg = load_config(PRETRAIN, overrides)
    d = pretrain_cfg.DATA
    same_input = ["DATA.TRAIN_JITTER_SCALES", str(list(d.TRAIN_JITTER_SCALES)), "DATA.TRAIN_CROP_SIZE",
                  str(d.TRAIN_CROP_SIZE), "DATA.TEST_CROP_SIZE", str(d.TEST_CROP_SIZE),
                  "SOLVER.MAX_EPOCH", str(pretrain_cfg.SOLVER.MAX_EPOCH)]
    seconds["supervised"] = run_net(SUPERVISED, bound, [*same_input, *common], stage="supervised upper bound")
    probes = {}
    # (No random-init audio probe: the synthetic classes are distinct tones, which a random audio
    # encoder already separates under a linear probe.)
    for name, cfg, extra in (("video", VIDEO_PROBE, ["TRAIN.CHECKPOINT_FILE_PATH", ckpt]),
                             ("video_random", VIDEO_PROBE, ["TRAIN.CHECKPOINT_FILE_PATH", ""]),
                             ("video_colour", VIDEO_PROBE, ["TRAIN.CHECKPOINT_FILE_PATH", "", "MODEL.ARCH", "colour_stats"]),
                             ("video_supervised", VIDEO_PROBE, ["TRAIN.CHECKPOINT_FILE_PATH", last_checkpoint(bound)]),
                             ("audio", AUDIO_PROBE, ["TRAIN.CHECKPOINT_FILE_PATH", ckpt])):
        stage = os.path.join(out, f"probe_{name}")
        seconds[f"probe_{name}"] = run_net(cfg, stage, [*common, *extra], stage=f"probe: {name}")
        probes[name] = read_metrics(stage)["feature_probe_top1_acc"]
        print(json.dumps({"stage": f"probe_{name}", "top1_acc": probes[name]}), flush=True)

    ret = os.path.join(out, "retrieval")
    seconds["retrieval"] = run_net(PRETRAIN, ret, [
        *common, "TRAIN.ENABLE", "False", "STICA.KNN.ENABLE", "False",
        "STICA.RETRIEVAL.ENABLE", "True", "TEST.CHECKPOINT_FILE_PATH", ckpt], stage="retrieval")
    retrieval = read_metrics(ret)
    return {
        "probes": probes,
        "knn_top1_acc": read_metrics(pre).get("knn_top1_acc"),
        "retrieval": {k: v for k, v in retrieval.items() if k.startswith(("R@", "a2v", "v2a", "cross_"))},
        "curves": read_json_stats(pre),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "total_minutes": round(sum(seconds.values()) / 60, 2),
        "overrides": overrides,
    }


def _table(report: Dict) -> str:
    p, r, s = report["probes"], report["retrieval"], report["seconds"]
    ks = sorted(int(k[2:]) for k in r if k.startswith("R@"))

    def recalls(prefix: str) -> str:
        return " / ".join(f"{r[f'{prefix}R@{k}']:.1f}" for k in ks)

    chance = r["a2v_chance_R@1"]
    shortcut = max(p["video_random"], p["video_colour"])
    lines = [
        f"STiCA demo on the synthetic dataset ({r['cross_modal_num_videos']} test videos, seed "
        f"{report.get('seed', 0)}), {report['total_minutes']:.1f} min in all (pretraining "
        f"{s['pretrain'] / 60:.1f} min).",
        "",
        "| video linear probe top-1 (%) | STiCA | random init | colour only | supervised (upper bound) | STiCA vs. best shortcut |",
        "|---|---:|---:|---:|---:|---:|",
        f"| test split | {p['video']:.1f} | {p['video_random']:.1f} | {p['video_colour']:.1f} | "
        f"{p['video_supervised']:.1f} | {p['video'] - shortcut:+.1f} |",
        "",
        f"Audio linear probe top-1 of the STiCA audio encoder: {p['audio']:.1f} %.",
        "",
        f"| retrieval (test split) | R@{' / R@'.join(map(str, ks))} (%) |",
        "|---|---:|",
        f"| video -> video (train bank, same class) | {recalls('')} |",
        f"| audio -> video (same class; chance R@1 {chance:.1f}) | {recalls('a2v_')} |",
        f"| video -> audio (same class) | {recalls('v2a_')} |",
        f"| audio -> its own video (chance R@1 {100.0 / r['cross_modal_num_videos']:.1f}) | {recalls('a2v_pair_')} |",
    ]
    return "\n".join(lines) + "\n"


def _plots(report: Dict, out: str) -> Dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in report["curves"] if r.get("_type") == "train_epoch"]
    knn = [r for r in report["curves"] if r.get("_type") == "knn_val"]

    def epoch_of(record: Dict) -> int:
        return int(str(record["epoch"]).split("/")[0])

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=120)
    for key, label in (("loss", "total"), ("loss_cross_modal", "cross-modal"), ("loss_crop", "feature crops")):
        points = [(epoch_of(r), r[key]) for r in epochs if key in r]
        if points:
            ax_loss.plot(*zip(*points), label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend(fontsize=8)
    points = [(epoch_of(r), r["av_acc"]) for r in epochs if "av_acc" in r]
    if points:
        ax_acc.plot(*zip(*points), label="video -> audio top-1 in the batch")
    if knn:
        ax_acc.plot([epoch_of(r) for r in knn], [r["knn_top1_acc"] for r in knn], marker="o",
                    label="kNN top-1 (val)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("%")
    ax_acc.set_ylim(0, 100)
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    curves = os.path.join(out, "demo_curves.png")
    fig.savefig(curves)
    plt.close(fig)

    p, r = report["probes"], report["retrieval"]
    fig, ax = plt.subplots(figsize=(5.5, 3), dpi=120)
    names = ["video probe", "a->v R@1", "v->a R@1"]
    ax.bar([i - 0.2 for i in range(3)], [p["video"], r["a2v_R@1"], r["v2a_R@1"]], width=0.4,
           label="STiCA pretrained")
    ax.bar([0.2], [max(p["video_random"], p.get("video_colour", 0.0))], width=0.4,
           label="video probe, best of random init and colour only")
    ax.axhline(r["a2v_chance_R@1"], color="gray", linestyle=":", label="retrieval chance")
    ax.set_xticks(list(range(3)), names)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    probes = os.path.join(out, "demo_probes.png")
    fig.savefig(probes)
    plt.close(fig)
    return {"curves": curves, "probes": probes}


def _write_outputs(report: Dict, out: str, readme: str) -> None:
    table = _table(report)
    with open(os.path.join(out, "demo_report.md"), "w") as f:
        f.write(table)
    pngs = _plots(report, out)
    if readme:
        curves = copy_beside_readme(readme, pngs["curves"], "stica_demo_curves.png")
        probes = copy_beside_readme(readme, pngs["probes"], "stica_demo_probes.png")
        update_readme(readme, START, END,
                      f"{table}\n![STiCA demo: pretraining curves]({curves})\n"
                      f"![STiCA demo: linear probes]({probes})\n")
    print(table)


def main() -> None:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seed", type=int, default=0, help="RNG_SEED of every stage")

    args, overrides, report = parse_report_args(__doc__, os.path.join("output", "demo"), "demo_report.json", arguments)
    if report is None:
        report = _run_stages(args.out, ["RNG_SEED", str(args.seed), *overrides])
        report["seed"] = args.seed
        with open(os.path.join(args.out, "demo_report.json"), "w") as f:
            json.dump(report, f, indent=2)
    _write_outputs(report, args.out, args.readme)


if __name__ == "__main__":
    main()
