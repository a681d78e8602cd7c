#!/usr/bin/env python3
"""The STiCA demo, end to end on a fresh machine (CPU, minutes):

    1. make the synthetic audio-visual dataset (h264 + aac mp4 files);
    2. pretrain STiCA (configs/demo/stica_tiny.yaml) without labels;
    3. linear-probe its video encoder and, under the same probe and in the same pass over the videos,
       the baselines it must beat: a randomly initialised encoder, colour statistics of the clips (what
       colour alone tells), and as the upper bound the same encoder trained with the labels for the
       same number of epochs;
    4. linear-probe its audio encoder;
    5. retrieval on the test split: video -> video (train videos as the bank), audio -> video and
       video -> audio (the test videos' own audio and video);
    6. print a table; write OUT/demo_report.{md,json} and PNG curves OUT/demo_curves.png (pretraining
       losses, video-audio matching, kNN) and OUT/demo_probes.png.

Every stage is a ``tools/run_net.py`` process (outputs and logs under OUT/seed<N>/<stage>/); its progress
(epoch, loss, ETA) is shown while it runs. The probes are logistic regressions fitted to convergence on
frozen features (``STICA.FEATURE_PROBE``, see configs/demo/linear_tiny.yaml).

    python tools/demo.py [--out output/demo] [--seeds 0 [1 2]] [--readme README.md] [KEY VALUE ...]
        KEY VALUE pairs override the config of every stage (e.g. SOLVER.MAX_EPOCH 8 for a quicker run).
        Each seed runs every stage again (in OUT/seed<N>/); the table gives the mean ± sd over them.
    python tools/demo.py --render-only [--out DIR] [--readme README.md]
"""

import argparse
import json
import os
import time
from typing import Callable, Dict, List, Sequence, Tuple

from demo_common import (DEMO, copy_beside_readme, last_checkpoint, load_config, made_with, mean_sd, merge_runs,
                         parse_report_args, pm, prepare_data, read_json_stats, read_metrics, run_net, save_report, update_readme)

START, END = "<!-- stica-demo:start -->", "<!-- stica-demo:end -->"
PRETRAIN = os.path.join(DEMO, "stica_tiny.yaml")
VIDEO_PROBE = os.path.join(DEMO, "stica_linear_tiny.yaml")
AUDIO_PROBE = os.path.join(DEMO, "stica_audio_linear_tiny.yaml")
# The supervised upper bound at the STiCA demo's input and epochs (its probe: VIDEO_PROBE).
SUPERVISED = os.path.join(DEMO, "supervised_bound_tiny.yaml")


def _run_seed(out: str, common: List[str], seed: int) -> Dict:
    """Every stage at ``RNG_SEED seed``, in OUT/seed<seed>/; returns its figures and stage times."""
    root = os.path.join(out, f"seed{seed}")
    common = [*common, "RNG_SEED", str(seed)]
    seconds: Dict[str, float] = {}
    pre = os.path.join(root, "stica")
    seconds["pretrain"] = run_net(PRETRAIN, pre, common, stage=f"STiCA pretraining, seed {seed}")
    ckpt = last_checkpoint(pre)
    # The upper bound: the video encoder trained with the labels, at the demo's input and epochs.
    bound = os.path.join(root, "supervised")
    pretrain_cfg = load_config(PRETRAIN, common)
    d = pretrain_cfg.DATA
    same_input = ["DATA.TRAIN_JITTER_SCALES", str(list(d.TRAIN_JITTER_SCALES)), "DATA.TRAIN_CROP_SIZE",
                  str(d.TRAIN_CROP_SIZE), "DATA.TEST_CROP_SIZE", str(d.TEST_CROP_SIZE),
                  "SOLVER.MAX_EPOCH", str(pretrain_cfg.SOLVER.MAX_EPOCH)]
    seconds["supervised"] = run_net(SUPERVISED, bound, [*same_input, *common],
                                    stage=f"supervised upper bound, seed {seed}")
    # The video probes of STiCA and of its baselines in one stage: each video is decoded once for the
    # four encoders (STICA.FEATURE_PROBE.ALSO).
    also = [["random", "", ""], ["colour", "", "colour_stats"], ["supervised", last_checkpoint(bound), ""]]
    stage = os.path.join(root, "probe_video")
    seconds["probe_video"] = run_net(VIDEO_PROBE, stage, [
        *common, "TRAIN.CHECKPOINT_FILE_PATH", ckpt, "STICA.FEATURE_PROBE.ALSO", str(also)],
        stage=f"probes: video of STiCA, random init, colour only, supervised, seed {seed}")
    metrics = read_metrics(stage)
    probes = {"video": metrics["feature_probe_top1_acc"],
              **{f"video_{name}": metrics["feature_probe_also"][name]["feature_probe_top1_acc"] for name, _, _ in also}}
    # (No random-init audio probe: the synthetic classes are distinct tones, which a random audio
    # encoder already separates under a linear probe.)
    stage = os.path.join(root, "probe_audio")
    seconds["probe_audio"] = run_net(AUDIO_PROBE, stage, [*common, "TRAIN.CHECKPOINT_FILE_PATH", ckpt],
                                     stage=f"probe: audio, seed {seed}")
    probes["audio"] = read_metrics(stage)["feature_probe_top1_acc"]
    print(json.dumps({"seed": seed, "stage": "probes", "top1_acc": probes}), flush=True)

    ret = os.path.join(root, "retrieval")
    seconds["retrieval"] = run_net(PRETRAIN, ret, [
        *common, "TRAIN.ENABLE", "False", "STICA.KNN.ENABLE", "False",
        "STICA.RETRIEVAL.ENABLE", "True", "TEST.CHECKPOINT_FILE_PATH", ckpt], stage=f"retrieval, seed {seed}")
    retrieval = read_metrics(ret)
    return {
        "seed": seed,
        "probes": probes,
        "knn_top1_acc": read_metrics(pre).get("knn_top1_acc"),
        "retrieval": {k: v for k, v in retrieval.items() if k.startswith(("R@", "a2v", "v2a", "cross_"))},
        "curves": read_json_stats(pre),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "minutes": round(sum(seconds.values()) / 60, 2),
    }


def _seed_key(run: Dict) -> Tuple[int]:
    return (run["seed"],)


def run_demo(out: str, seeds: Sequence[int], overrides: List[str]) -> Dict:
    """The dataset once, then every stage per seed; OUT/demo_report.json is saved after each seed
    (with the seeds of an earlier report in OUT made with the same overrides on the same dataset)."""
    start = time.perf_counter()
    data = prepare_data(PRETRAIN, out, overrides)
    path = os.path.join(out, "demo_report.json")
    made = made_with(overrides, data)
    runs = merge_runs(path, [], made, _seed_key)
    minutes = round((time.perf_counter() - start) / 60, 2)
    if runs:  # the earlier seeds' invocation made the dataset (this one found it): keep its time
        with open(path) as f:
            minutes = max(minutes, json.load(f).get("data_minutes", 0.0))
    report = {"runs": runs, **made, "data_minutes": minutes}
    for seed in seeds:
        run = _run_seed(out, ["DATA.PATH_TO_DATA_DIR", data, *overrides], seed)
        report["runs"] = merge_runs(path, [run], made, _seed_key)
        save_report(path, report)
    return report


def _table(report: Dict) -> str:
    runs = report["runs"]
    ks = sorted(int(k[2:]) for k in runs[0]["retrieval"] if k.startswith("R@"))

    def cell(get: Callable[[Dict], float], unit: str = "") -> str:
        return pm(*mean_sd([get(run) for run in runs]), unit)

    def probe(name: str) -> float:
        return mean_sd([run["probes"][name] for run in runs])[0]

    def probe_cell(name: str, unit: str = "") -> str:
        return cell(lambda run: run["probes"][name], unit)

    def recalls(prefix: str) -> str:
        return " / ".join(cell(lambda run, k=k: run["retrieval"][f"{prefix}R@{k}"]) for k in ks)

    first = runs[0]["retrieval"]
    chance, videos = first["a2v_chance_R@1"], first["cross_modal_num_videos"]
    shortcut = max(probe("video_random"), probe("video_colour"))
    seeds = ", ".join(str(run["seed"]) for run in runs)
    over = f"mean ± sd over seeds {seeds}" if len(runs) > 1 else f"seed {seeds}"
    lines = [
        f"STiCA demo on the synthetic dataset ({videos} test videos), {over}: "
        f"{cell(lambda run: run['minutes'])} min per seed in all (pretraining "
        f"{cell(lambda run: run['seconds']['pretrain'] / 60)} min), data {report['data_minutes']:.1f} min.",
        "",
        "| video linear probe top-1 (%) | STiCA | random init | colour only | supervised (upper bound) | STiCA vs. best shortcut |",
        "|---|---:|---:|---:|---:|---:|",
        f"| test split | {probe_cell('video')} | {probe_cell('video_random')} | {probe_cell('video_colour')} | "
        f"{probe_cell('video_supervised')} | {probe('video') - shortcut:+.1f} |",
        "",
        f"Audio linear probe top-1 of the STiCA audio encoder: {probe_cell('audio', ' %')}.",
        "",
        f"| retrieval (test split) | R@{' / R@'.join(map(str, ks))} (%) |",
        "|---|---:|",
        f"| video -> video (train bank, same class) | {recalls('')} |",
        f"| audio -> video (same class; chance R@1 {chance:.1f}) | {recalls('a2v_')} |",
        f"| video -> audio (same class) | {recalls('v2a_')} |",
        f"| audio -> its own video (chance R@1 {100.0 / videos:.1f}) | {recalls('a2v_pair_')} |",
        "",
        f"Audio -> video R@1 is {mean_sd([run['retrieval']['a2v_R@1'] for run in runs])[0] / chance:.1f}× chance.",
    ]
    return "\n".join(lines) + "\n"


def _plots(report: Dict, out: str) -> Dict[str, str]:
    """The pretraining curves of every seed (one colour per curve kind) and the probe / retrieval
    figures (bars: mean over the seeds, dots: each seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]

    def epoch_of(record: Dict) -> int:
        return int(str(record["epoch"]).split("/")[0])

    def plot(ax, records: List[Dict], key: str, label: str, colour: str, labelled: bool, **style) -> None:
        points = [(epoch_of(r), r[key]) for r in records if key in r]
        if points:
            ax.plot(*zip(*points), color=colour, label=label if labelled else None, **style)

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=120)
    for i, run in enumerate(runs):
        epochs = [r for r in run["curves"] if r.get("_type") == "train_epoch"]
        knn = [r for r in run["curves"] if r.get("_type") == "knn_val"]
        for key, label, colour in (("loss", "total", "tab:blue"), ("loss_cross_modal", "cross-modal", "tab:orange"),
                                   ("loss_crop", "feature crops", "tab:green")):
            plot(ax_loss, epochs, key, label, colour, i == 0)
        plot(ax_acc, epochs, "av_acc", "video -> audio top-1 in the batch", "tab:blue", i == 0)
        plot(ax_acc, knn, "knn_top1_acc", "kNN top-1 (val)", "tab:red", i == 0, marker="o")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend(fontsize=8)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("%")
    ax_acc.set_ylim(0, 100)
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    curves = os.path.join(out, "demo_curves.png")
    fig.savefig(curves)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3), dpi=120)
    bars = (  # (x, label, value of a run, colour)
        (-0.2, "STiCA pretrained", lambda run: run["probes"]["video"], "tab:blue"),
        (0.2, "video probe, best of random init and colour only",
         lambda run: max(run["probes"]["video_random"], run["probes"]["video_colour"]), "tab:gray"),
        (0.8, None, lambda run: run["retrieval"]["a2v_R@1"], "tab:blue"),
        (1.8, None, lambda run: run["retrieval"]["v2a_R@1"], "tab:blue"),
    )
    for x, label, value, colour in bars:
        values = [value(run) for run in runs]
        ax.bar([x], [mean_sd(values)[0]], width=0.4, color=colour, alpha=0.6, label=label)
        ax.scatter([x] * len(values), values, color=colour, s=10, zorder=3)
    ax.axhline(runs[0]["retrieval"]["a2v_chance_R@1"], color="gray", linestyle=":", label="retrieval chance")
    ax.set_xticks([0, 1, 2], ["video probe", "a->v R@1", "v->a R@1"])
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
        # Every seed's figures beside them: later seeds can be added to them (copy it to OUT/).
        copy_beside_readme(readme, os.path.join(out, "demo_report.json"), "stica_demo_report.json")
        update_readme(readme, START, END,
                      f"{table}\n![STiCA demo: pretraining curves]({curves})\n"
                      f"![STiCA demo: linear probes]({probes})\n")
    print(table)


def main() -> None:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seeds", "--seed", nargs="+", type=int, default=[0],
                            help="RNG_SEED of every stage; with several, the table gives mean ± sd")

    args, overrides, report = parse_report_args(__doc__, os.path.join("output", "demo"), "demo_report.json", arguments)
    if report is None:
        report = run_demo(args.out, args.seeds, overrides)
    _write_outputs(report, args.out, args.readme)


if __name__ == "__main__":
    main()
