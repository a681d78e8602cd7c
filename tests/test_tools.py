"""The command-line tools other than run_net (covered by test_end_to_end): real runs, JSON checked."""

import json
import os
import subprocess
import sys

import pytest

from stica_slowfast.synthetic import generate_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "demo", "supervised_tiny.yaml")


def _tool(name, *args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", name), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_make_synthetic_dataset_cli(tmp_path):
    out = tmp_path / "d"
    _tool("make_synthetic_dataset.py", "--out", str(out), "--num-classes", "3", "--train-per-class", "2",
          "--val-per-class", "1", "--test-per-class", "1", "--width", "48", "--height", "32",
          "--duration", "1.0", "--fps", "10", "--audio-rate", "8000")
    assert len(open(out / "train.csv").read().splitlines()) == 6
    assert len(open(out / "classInd.txt").read().splitlines()) == 3


def test_benchmarks_print_one_json_object(tmp_path):
    data = str(tmp_path / "d")
    generate_dataset(data, num_classes=2, train_per_class=4, val_per_class=1, test_per_class=2,
                     width=48, height=32, fps=10, duration=1.5, audio_rate=8000, seed=0)
    common = ["--cfg", DEMO, "DATA.PATH_TO_DATA_DIR", data, "MODEL.NUM_CLASSES", "2",
              "OUTPUT_DIR", str(tmp_path / "out"), "DATA_LOADER.NUM_WORKERS", "0"]
    decode = json.loads(_tool("benchmark.py", "decode", "--videos", "2", *common,
                              "TEST.NUM_ENSEMBLE_VIEWS", "4", "STICA.AUDIO.ENABLE", "True"))
    assert decode["videos"] == 2 and decode["clips_per_video"] == 4 and decode["audio"] is True
    assert decode["speedup"] == pytest.approx(decode["per_clip_s"] / decode["one_pass_s"], rel=0.01)
    loader = json.loads(_tool("benchmark.py", "loader", "--videos", "2", "--rounds", "1", *common,
                              "STICA.AUDIO.ENABLE", "True"))
    assert loader["videos"] == 2 and loader["audio"] is True and loader["frame_size"] == [[48, 32]]
    for rho in (2, 4):
        r = loader[f"rho{rho}"]
        once, per_clip = r["device_aug"], r["device_aug_per_clip"]
        assert all(r[v]["clips_per_s"] > 0 for v in ("worker_aug", "device_aug", "worker_aug_per_clip"))
        # One open and one pass decode no more frames than one open and one pass per clip.
        assert once["frames_decoded_per_clip"] <= per_clip["frames_decoded_per_clip"]
        assert once["frames_decoded_per_clip"] == r["worker_aug"]["frames_decoded_per_clip"]  # same samples
        assert loader[f"ratio_rho{rho}"] == r["round_ratios"][0] > 0
        assert loader[f"device_aug_clips_per_s_rho{rho}"] == once["clips_per_s"]
        assert loader[f"worker_aug_clips_per_s_rho{rho}"] == r["worker_aug"]["clips_per_s"]
        assert r["device_aug_ms_per_clip"] > 0
        for variant in ("worker_aug", "device_aug"):  # the time split covers the whole
            split = [v for k, v in r[variant].items() if k.endswith("_fraction")]
            assert sum(split) == pytest.approx(1.0, abs=0.01) and r[variant]["decode_fraction"] > 0
        if loader["torchcodec"]["decodes_here"]:
            assert r["torchcodec_frames"]["frames_compared"] > 0
    train = json.loads(_tool("benchmark.py", "train", "--iters", "2", *common, "TRAIN.BATCH_SIZE", "4"))
    assert train["iters"] == 2 and train["clips_per_s"] > 0 and 0 <= train["data_wait_fraction"] <= 1
    assert train["loader_over_train"] == pytest.approx(
        train["loader_clips_per_s"] / train["step_clips_per_s"], rel=0.01)


def test_ssl_memory_benchmark(tmp_path):
    ssl_demo = os.path.join(REPO, "configs", "demo", "rho_byol_tiny.yaml")
    out = json.loads(_tool(
        "benchmark.py", "ssl_memory", "--rhos", "2", "3", "--iters", "1", "--cfg", ssl_demo,
        "STICA.SYNTHETIC.ENABLE", "False", "OUTPUT_DIR", str(tmp_path), "TRAIN.BATCH_SIZE", "2",
        "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "MODEL.ARCH", "r2plus1d_tiny"))
    assert [(r["rho"], r["sequential"]) for r in out["results"]] == [(2, False), (3, False), (2, True), (3, True)]
    assert all(r["peak_mb"] >= 0 and r["s_per_iter"] > 0 for r in out["results"])
    assert set(out["growth_rho3_over_rho2"]) == {"together", "sequential"}


def test_ssl_demo_report_end_to_end(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# r\n<!-- ssl-demo-report:start -->\nold\n<!-- ssl-demo-report:end -->\ntail\n")
    tiny = ["MODEL.NUM_CLASSES", "2", "STICA.SYNTHETIC.TRAIN_PER_CLASS", "4", "STICA.SYNTHETIC.VAL_PER_CLASS", "1",
            "STICA.SYNTHETIC.TEST_PER_CLASS", "2", "STICA.SYNTHETIC.DURATION", "1.5", "STICA.SYNTHETIC.WIDTH", "48",
            "STICA.SYNTHETIC.HEIGHT", "32", "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_EPOCHS", "0.0",
            "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "2",
            "TEST.NUM_ENSEMBLE_VIEWS", "1", "TEST.NUM_SPATIAL_CROPS", "1", "DATA_LOADER.NUM_WORKERS", "0",
            "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
            "STICA.FEATURE_PROBE.L2", "[0.1]"]
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "ssl_demo_report.py"), "--methods", "byol",
                           "--seeds", "0", "--out", str(out), "--readme", str(readme), *tiny],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Progress on stderr: each stage and where its log is, then its epochs.
    assert "[rhoBYOL, seed 0] configs/demo/rho_byol_tiny.yaml: log " in proc.stderr
    assert "[rhoBYOL, seed 0]" in proc.stderr and "epoch 1/1 done" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert [(r["kind"], r["seed"]) for r in report["runs"]] == [
        ("random", 0), ("colour", 0), ("supervised", 0), ("byol", 0)]
    for run in report["runs"]:
        probe = json.loads((out / f"{run['kind']}_seed0_probe" / "metrics.json").read_text())
        assert run["top1_acc"] == probe["feature_probe_top1_acc"] and run["effective_rank"] == probe["effective_rank"]
    byol = report["runs"][-1]
    assert byol["knn_top1_acc"] == json.loads((out / "byol_seed0" / "metrics.json").read_text())["knn_top1_acc"]
    assert byol["pretrain_s"] > 0 and report["runs"][0]["pretrain_s"] == 0.0
    colour_probe = json.loads((out / "colour_seed0_probe" / "metrics.json").read_text())
    assert colour_probe["feature_probe_checkpoint"] == ""
    text = readme.read_text()
    assert "old" not in text and text.endswith("tail\n")
    for row in ("| random init |", "| colour only |", "| supervised (upper bound) |", "| rhoBYOL |"):
        assert row in text
    assert "(docs/ssl_demo_report.png)" in text
    assert (tmp_path / "docs" / "ssl_demo_report.png").read_bytes() == (out / "report.png").read_bytes()
    assert json.loads((tmp_path / "docs" / "ssl_demo_report.json").read_text()) == report


def test_crop_benchmark(tmp_path):
    out = json.loads(_tool(
        "benchmark.py", "crops", "--iters", "1", "--warmup", "0", "--rounds", "1",
        "--cfg", os.path.join(REPO, "configs", "demo", "stica_tiny.yaml"), "STICA.SYNTHETIC.ENABLE", "False",
        "OUTPUT_DIR", str(tmp_path), "TRAIN.BATCH_SIZE", "2"))
    assert out["crops_per_view"] == {"spatial": [2, 4], "temporal": [2, 1]} and out["batch"] == 2
    for variant in ("views_only", "feature_crop", "input_crop"):
        assert out[variant]["median_step_s"] > 0 and out[variant]["peak_mb"] >= 0
    assert out["feature_crop/views_only"] == pytest.approx(
        out["feature_crop"]["median_step_s"] / out["views_only"]["median_step_s"], abs=2e-3)


def test_memory_format_benchmark(tmp_path):
    out = json.loads(_tool(
        "benchmark.py", "memory_format", "--iters", "1", "--warmup", "0", "--rounds", "1",
        "--cfg", os.path.join(REPO, "configs", "demo", "rho_byol_tiny.yaml"), "STICA.SYNTHETIC.ENABLE", "False",
        "OUTPUT_DIR", str(tmp_path), "TRAIN.BATCH_SIZE", "2", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32"))
    assert out["model"] == "RhoBYOL" and out["batch"] == 2 and out["audio_arch"] is None
    assert all(out[fmt]["median_step_s"] > 0 for fmt in ("contiguous", "channels_last"))
    assert out["contiguous/channels_last"] == pytest.approx(
        out["contiguous"]["median_step_s"] / out["channels_last"]["median_step_s"], abs=2e-3)


def test_stica_demo_end_to_end(tmp_path):
    """tools/demo.py on a shrunken dataset and schedule: every stage runs, the report's figures are the
    stages' metrics, and the README section and PNGs are written."""
    readme = tmp_path / "README.md"
    readme.write_text("# r\n<!-- stica-demo:start -->\nold\n<!-- stica-demo:end -->\ntail\n")
    tiny = ["MODEL.NUM_CLASSES", "2", "STICA.SYNTHETIC.TRAIN_PER_CLASS", "4", "STICA.SYNTHETIC.VAL_PER_CLASS", "1",
            "STICA.SYNTHETIC.TEST_PER_CLASS", "2", "STICA.SYNTHETIC.DURATION", "1.5", "STICA.SYNTHETIC.WIDTH", "64",
            "STICA.SYNTHETIC.HEIGHT", "48", "SOLVER.MAX_EPOCH", "1", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "2",
            "TEST.NUM_ENSEMBLE_VIEWS", "1", "TEST.NUM_SPATIAL_CROPS", "1", "DATA_LOADER.NUM_WORKERS", "0",
            "STICA.FEATURE_PROBE.L2", "[0.1]"]
    out = tmp_path / "demo"
    _tool("demo.py", "--out", str(out), "--readme", str(readme), "--seeds", "1", *tiny)
    report = json.loads((out / "demo_report.json").read_text())
    (run,) = report["runs"]
    assert run["seed"] == 1
    video = json.loads((out / "seed1" / "probe_video" / "metrics.json").read_text())
    audio = json.loads((out / "seed1" / "probe_audio" / "metrics.json").read_text())
    assert run["probes"]["video"] == video["feature_probe_top1_acc"]
    assert run["probes"]["audio"] == audio["feature_probe_top1_acc"]
    for name in ("random", "colour", "supervised"):
        assert run["probes"][f"video_{name}"] == video["feature_probe_also"][name]["feature_probe_top1_acc"]
    assert video["feature_probe_checkpoint"].endswith(os.path.join("stica", "checkpoints", "checkpoint_epoch_00001.pyth"))
    assert video["feature_probe_also"]["supervised"]["feature_probe_checkpoint"].endswith(
        os.path.join("supervised", "checkpoints", "checkpoint_epoch_00001.pyth"))
    assert video["feature_probe_also"]["random"]["feature_probe_checkpoint"] == ""
    retrieval = json.loads((out / "seed1" / "retrieval" / "metrics.json").read_text())
    assert run["retrieval"]["a2v_R@1"] == retrieval["a2v_R@1"] and retrieval["cross_modal_num_videos"] == 4
    assert [r["epoch"] for r in run["curves"] if r["_type"] == "train_epoch"] == ["1/1"]
    text = readme.read_text()
    assert "old" not in text and "audio -> video" in text and "colour only" in text and text.endswith("tail\n")
    assert "seed 1:" in text and "±" not in text.split("| test split |")[1].split("\n")[0]
    for png in ("stica_demo_curves.png", "stica_demo_probes.png"):
        assert (tmp_path / "docs" / png).stat().st_size > 1000
    assert json.loads((tmp_path / "docs" / "stica_demo_report.json").read_text()) == report

    # A second seed's figures (here the first one's, shifted) join the table as mean ± sd.
    other = json.loads(json.dumps(run))
    other["seed"], other["probes"]["video"] = 2, run["probes"]["video"] + 10.0
    report["runs"].append(other)
    (out / "demo_report.json").write_text(json.dumps(report))
    _tool("demo.py", "--out", str(out), "--readme", str(readme), "--render-only")
    row = readme.read_text().split("| test split |")[1].split("\n")[0]
    assert row.split("|")[0].strip() == f"{run['probes']['video'] + 5.0:.1f} ± {10.0 / 2 ** 0.5:.1f}"
    assert "mean ± sd over seeds 1, 2" in readme.read_text()


def test_a_report_keeps_earlier_runs_only_of_the_same_overrides_and_dataset(tmp_path, monkeypatch):
    """Report tools build a table up over several invocations; runs made on another dataset (another
    format version, say) or with other overrides are dropped, never mixed into the new table."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "tools"))
    from demo_common import made_with, merge_runs, save_report

    data = tmp_path / "data"
    data.mkdir()
    params = {"format_version": 5, "seed": 0, "train_per_class": 48}
    (data / "dataset.json").write_text(json.dumps({"params": params, "classes": []}))
    made = made_with(["SOLVER.MAX_EPOCH", "8"], str(data))
    assert made == {"overrides": ["SOLVER.MAX_EPOCH", "8"], "dataset": params}
    path = str(tmp_path / "report.json")
    key = lambda run: (run["seed"],)  # noqa: E731
    save_report(path, {"runs": [{"seed": 0, "top1": 1.0}, {"seed": 1, "top1": 2.0}], **made})
    # A later invocation redoes seed 1 and adds seed 2: seed 0 is kept, seed 1 replaced.
    runs = merge_runs(path, [{"seed": 1, "top1": 3.0}, {"seed": 2, "top1": 4.0}], made, key)
    assert runs == [{"seed": 0, "top1": 1.0}, {"seed": 1, "top1": 3.0}, {"seed": 2, "top1": 4.0}]
    for other in ({**made, "dataset": {**params, "format_version": 4}}, {**made, "overrides": []}):
        assert merge_runs(path, [{"seed": 2, "top1": 4.0}], other, key) == [{"seed": 2, "top1": 4.0}]
    save_report(path, {"runs": [{"seed": 0, "top1": 1.0}], "overrides": made["overrides"]})  # no dataset
    assert merge_runs(path, [], made, key) == []
