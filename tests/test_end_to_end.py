"""The real thing, end to end: generated mp4s -> tools/run_net.py -> checkpoints, logs, metrics.

Runs the demo config shrunk to a couple of epochs on a small generated dataset, once in one process,
once resumed, and once as two gloo processes (two shards of the same job).
"""

import glob
import json
import math
import os
import subprocess
import sys

import pytest

from stica_slowfast.synthetic import generate_dataset

from gloo import free_port  # tests/gloo.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_NET = os.path.join(REPO, "tools", "run_net.py")
DEMO = os.path.join(REPO, "configs", "demo", "supervised_tiny.yaml")
NUM_CLASSES = 3
TRAIN_PER_CLASS = 8
TEST_PER_CLASS = 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic"))
    generate_dataset(
        out, num_classes=NUM_CLASSES, train_per_class=TRAIN_PER_CLASS, val_per_class=1,
        test_per_class=TEST_PER_CLASS, width=64, height=48, fps=15, duration=1.6, audio_rate=8000, seed=3,
    )
    return out


def _opts(data_dir, out_dir, **extra):
    opts = {
        "DATA.PATH_TO_DATA_DIR": data_dir,
        "OUTPUT_DIR": out_dir,
        "MODEL.NUM_CLASSES": NUM_CLASSES,
        "SOLVER.MAX_EPOCH": 2,
        "TRAIN.BATCH_SIZE": 8,
        "TRAIN.EVAL_PERIOD": 1,
        "TRAIN.CHECKPOINT_PERIOD": 1,
        "TEST.BATCH_SIZE": 2,
        "TEST.NUM_ENSEMBLE_VIEWS": 2,
        "TEST.NUM_SPATIAL_CROPS": 3,
        "DATA.TRAIN_JITTER_SCALES": "[48, 56]",
        "DATA.TRAIN_CROP_SIZE": 48,
        "DATA.TEST_CROP_SIZE": 48,
        "DATA_LOADER.NUM_WORKERS": 1,
        "LOG_PERIOD": 1,
        **extra,
    }
    return [str(x) for kv in opts.items() for x in kv]


def _run(args, timeout=300):
    proc = subprocess.run([sys.executable, RUN_NET, "--cfg", DEMO, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _json_stats(path):
    records = []
    with open(path) as f:
        for line in f:
            if "json_stats: " in line:
                records.append(json.loads(line.split("json_stats: ", 1)[1]))
    return records


@pytest.fixture(scope="module")
def single_run(data_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run1"))
    _run(_opts(data_dir, out))
    return out


def test_single_process_run_writes_everything(single_run):
    out = single_run
    ckpts = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "checkpoints", "*.pyth")))
    assert ckpts == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    assert not glob.glob(os.path.join(out, "checkpoints", "*tmp*"))
    stats = _json_stats(os.path.join(out, "stdout.log"))
    types = [s["_type"] for s in stats]
    iters_per_epoch = NUM_CLASSES * TRAIN_PER_CLASS // 8
    assert types.count("train_iter") == 2 * iters_per_epoch
    assert types.count("train_epoch") == 2 and types.count("val_epoch") == 2 and types.count("test_final") == 1
    assert stats[0]["iter"] == f"1/{iters_per_epoch}"
    epoch_records = [json.loads(line) for line in open(os.path.join(out, "json_stats.log"))]
    assert [r["_type"] for r in epoch_records] == ["train_epoch", "val_epoch"] * 2 + ["test_final"]
    assert glob.glob(os.path.join(out, "tensorboard", "events.out.tfevents.*"))
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert 0.0 <= metrics["top1_acc"] <= metrics["top5_acc"] == 100.0  # top-5 of 3 classes
    assert metrics["num_videos"] == NUM_CLASSES * TEST_PER_CLASS
    assert metrics["num_skipped"] == 0
    assert metrics["checkpoint"].endswith("checkpoint_epoch_00002.pyth")
    assert "GFLOPs per clip" in open(os.path.join(out, "stdout.log")).read()


def test_auto_resume_continues_from_last_checkpoint(single_run, data_dir):
    _run(_opts(data_dir, single_run, **{"SOLVER.MAX_EPOCH": 3, "TEST.ENABLE": False}))
    log = open(os.path.join(single_run, "stdout.log")).read()
    assert "Resuming from" in log and "checkpoint_epoch_00002.pyth" in log
    epochs = [r["epoch"] for r in map(json.loads, open(os.path.join(single_run, "json_stats.log")))
              if r["_type"] == "train_epoch"]
    assert epochs == ["1/2", "2/2", "3/3"]  # only the new epoch was trained
    assert os.path.exists(os.path.join(single_run, "checkpoints", "checkpoint_epoch_00003.pyth"))


def test_two_process_gloo_run(data_dir, tmp_path):
    out = str(tmp_path / "run2")
    init = f"tcp://127.0.0.1:{free_port()}"
    args = _opts(data_dir, out, **{"SOLVER.MAX_EPOCH": 1})
    procs = [
        subprocess.Popen(
            [sys.executable, RUN_NET, "--cfg", DEMO, *args, "--init_method", init,
             "--num_shards", "2", "--shard_id", str(shard)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )
        for shard in (0, 1)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    stats = _json_stats(os.path.join(out, "stdout.log"))
    # the global batch of 8 is split over 2 processes: the number of steps per epoch is unchanged
    iters = [s["iter"] for s in stats if s["_type"] == "train_iter"]
    assert iters[-1] == f"{NUM_CLASSES * TRAIN_PER_CLASS // 8}/{NUM_CLASSES * TRAIN_PER_CLASS // 8}"
    assert "process 0 of 2" in open(os.path.join(out, "stdout.log")).read()
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["num_videos"] == NUM_CLASSES * TEST_PER_CLASS  # both shards' test videos merged


def test_test_only_run_reproduces_the_trained_checkpoint(single_run, data_dir, tmp_path):
    ckpt = os.path.join(single_run, "checkpoints", "checkpoint_epoch_00002.pyth")
    out = str(tmp_path / "test_only")
    _run(_opts(data_dir, out, **{"TRAIN.ENABLE": False, "TEST.CHECKPOINT_FILE_PATH": ckpt}))
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    reference = json.load(open(os.path.join(single_run, "metrics.json")))
    # same weights, same deterministic test views: the same accuracy to the last digit
    assert metrics["top1_acc"] == reference["top1_acc"] and metrics["checkpoint"] == ckpt
    assert not os.path.exists(os.path.join(out, "checkpoints"))


def test_initialise_from_another_run_with_knn_monitor(single_run, data_dir, tmp_path):
    ckpt = os.path.join(single_run, "checkpoints", "checkpoint_epoch_00002.pyth")
    out = str(tmp_path / "finetune")
    _run(_opts(data_dir, out, **{"TRAIN.CHECKPOINT_FILE_PATH": ckpt, "SOLVER.MAX_EPOCH": 1, "TEST.ENABLE": False,
                                 "STICA.KNN.ENABLE": True}))
    log = open(os.path.join(out, "stdout.log")).read()
    assert f"Initialising from {ckpt}" in log
    assert os.path.exists(os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth"))
    records = [json.loads(line) for line in open(os.path.join(out, "json_stats.log"))]
    knn = {r["_type"]: r["knn_top1_acc"] for r in records if r["_type"].startswith("knn")}
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert set(knn) == {"knn_val", "knn_test"}
    # json_stats keeps 6 significant digits
    assert metrics["knn_top1_acc"] == pytest.approx(knn["knn_test"], rel=1e-5)
    assert metrics["val_knn_top1_acc"] == pytest.approx(knn["knn_val"], rel=1e-5)
    assert 0.0 <= metrics["knn_top1_acc"] <= 100.0


def test_retrieval_run_mode(single_run, data_dir, tmp_path):
    ckpt = os.path.join(single_run, "checkpoints", "checkpoint_epoch_00002.pyth")
    out = str(tmp_path / "retrieval")
    _run(_opts(data_dir, out, **{"TRAIN.ENABLE": False, "TEST.ENABLE": False, "STICA.RETRIEVAL.ENABLE": True,
                                 "TEST.CHECKPOINT_FILE_PATH": ckpt}))
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["retrieval_checkpoint"] == ckpt
    assert 0.0 <= metrics["R@1"] <= metrics["R@5"] <= metrics["R@10"] <= 100.0
    record = next(r for r in map(json.loads, open(os.path.join(out, "json_stats.log"))) if r["_type"] == "retrieval")
    assert record["num_queries"] == NUM_CLASSES * TEST_PER_CLASS and record["num_bank"] == NUM_CLASSES * TRAIN_PER_CLASS


def test_feature_probe_of_several_encoders_in_one_pass(single_run, data_dir, tmp_path):
    """STICA.FEATURE_PROBE.ALSO: every encoder is probed as a run of its own would probe it (a second
    random initialisation is the first one again), and each has its figures."""
    ckpt = os.path.join(single_run, "checkpoints", "checkpoint_epoch_00002.pyth")
    out = str(tmp_path / "probe")
    also = [["random_again", "", ""], ["trained", ckpt, ""], ["colour", "", "colour_stats"]]
    _run(_opts(data_dir, out, **{"TRAIN.ENABLE": False, "TEST.ENABLE": False, "MODEL.MODEL_NAME": "LinearProbe",
                                 "STICA.FEATURE_PROBE.ENABLE": True, "STICA.FEATURE_PROBE.L2": "[0.1]",
                                 "TRAIN.CHECKPOINT_FILE_PATH": "", "STICA.FEATURE_PROBE.ALSO": str(also)}))
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    others = metrics["feature_probe_also"]
    assert set(others) == {"random_again", "trained", "colour"}
    figures = ("feature_probe_top1_acc", "feature_probe_train_top1_acc", "effective_rank", "uniformity")
    assert {k: others["random_again"][k] for k in figures} == {k: metrics[k] for k in figures}
    assert others["trained"]["feature_probe_checkpoint"] == ckpt and metrics["feature_probe_checkpoint"] == ""
    assert others["trained"]["effective_rank"] != metrics["effective_rank"]
    assert others["colour"]["effective_rank"] != metrics["effective_rank"]
    for figures_of in (metrics, *others.values()):
        assert figures_of["feature_probe_num_test"] == NUM_CLASSES * TEST_PER_CLASS
        assert 0.0 <= figures_of["feature_probe_top1_acc"] <= 100.0


def test_corrupt_videos_are_skipped_and_counted(data_dir, tmp_path):
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "broken.mp4").write_bytes(os.urandom(4096))
    for split in ("train", "val", "test"):
        lines = open(os.path.join(data_dir, f"{split}.csv")).read().splitlines()
        lines = [f"{os.path.join(data_dir, p)} {label}" for p, label in (line.split() for line in lines)]
        if split != "val":
            lines.insert(1, f"{broken / 'broken.mp4'} 0")
        (broken / f"{split}.csv").write_text("\n".join(lines) + "\n")
    out = str(tmp_path / "run")
    num_train = NUM_CLASSES * TRAIN_PER_CLASS + 1  # 25 = 5 batches of 5: nothing dropped
    _run(_opts(str(broken), out, **{"SOLVER.MAX_EPOCH": 1, "TRAIN.BATCH_SIZE": 5}))
    records = [json.loads(line) for line in open(os.path.join(out, "json_stats.log"))]
    train = next(r for r in records if r["_type"] == "train_epoch")
    assert train["num_skipped_videos"] >= 1 and num_train % 5 == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["num_skipped"] == 1 and metrics["num_videos"] == NUM_CLASSES * TEST_PER_CLASS
    assert "broken.mp4" in open(os.path.join(out, "stdout.log")).read()


@pytest.mark.parametrize("method,temporal,spatial", [("RhoMoCo", 1, 2), ("RhoSwAV", 4, 1)])
def test_rho_clip_pretraining_runs_for_rho_1_and_4(data_dir, tmp_path, method, temporal, spatial):
    out = str(tmp_path / method)
    _run(_opts(data_dir, out, **{
        "MODEL.MODEL_NAME": method, "SOLVER.MAX_EPOCH": 1, "TEST.ENABLE": False,
        "DATA.TRAIN_CROP_NUM_TEMPORAL": temporal, "DATA.TRAIN_CROP_NUM_SPATIAL": spatial,
        "CONTRASTIVE.DIM": 16, "CONTRASTIVE.MLP_DIM": 32, "CONTRASTIVE.QUEUE_LEN": 64,
        "STICA.SWAV.NUM_PROTOTYPES": 8}))
    records = [json.loads(line) for line in open(os.path.join(out, "json_stats.log"))]
    (epoch,) = [r for r in records if r["_type"] == "train_epoch"]
    assert math.isfinite(epoch["loss"]) and epoch["num_skipped_videos"] == 0
    assert not any(r["_type"] == "val_epoch" for r in records)  # SSL models predict no labels
    assert os.path.exists(os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth"))


def test_stica_pretraining_cross_modal_retrieval_and_audio_probe(data_dir, tmp_path):
    """STiCA (audio, Feature Crop, transformer pooling) trains through run_net; the retrieval mode
    adds audio <-> video recalls; the audio encoder is probed from the checkpoint."""
    stica = {"MODEL.MODEL_NAME": "STiCA", "STICA.AUDIO.ENABLE": True, "STICA.AUDIO.SAMPLE_RATE": 8000,
             "STICA.AUDIO.NUM_MEL_BINS": 32, "STICA.AUDIO.ARCH": "resnet9_audio_tiny",
             "STICA.FEATURE_CROP.ENABLE": True, "STICA.POOL.TYPE": "transformer", "STICA.POOL.MAX_LEN": 4,
             "DATA.NUM_FRAMES": 4, "DATA.TRAIN_CROP_NUM_TEMPORAL": 2, "CONTRASTIVE.DIM": 16,
             "CONTRASTIVE.MLP_DIM": 32, "TEST.NUM_SPATIAL_CROPS": 1}
    out = str(tmp_path / "stica")
    _run(_opts(data_dir, out, **stica, **{"SOLVER.MAX_EPOCH": 1, "TEST.ENABLE": False}))
    (epoch,) = [r for r in map(json.loads, open(os.path.join(out, "json_stats.log"))) if r["_type"] == "train_epoch"]
    assert all(math.isfinite(epoch[k]) for k in ("loss", "loss_cross_modal", "loss_crop"))
    ckpt = os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth")

    ret = str(tmp_path / "retrieval")
    _run(_opts(data_dir, ret, **stica, **{"TRAIN.ENABLE": False, "TEST.ENABLE": False,
                                          "STICA.RETRIEVAL.ENABLE": True, "TEST.CHECKPOINT_FILE_PATH": ckpt}))
    metrics = json.load(open(os.path.join(ret, "metrics.json")))
    assert metrics["cross_modal_num_videos"] == NUM_CLASSES * TEST_PER_CLASS
    for prefix in ("", "a2v_", "v2a_", "a2v_pair_", "v2a_pair_"):
        assert 0.0 <= metrics[f"{prefix}R@1"] <= metrics[f"{prefix}R@5"] <= 100.0
    # Same-class share of the balanced test split: 1 / classes.
    assert metrics["a2v_chance_R@1"] == pytest.approx(100.0 / NUM_CLASSES)

    probe = str(tmp_path / "audio_probe")
    _run(_opts(data_dir, probe, **{**stica, "MODEL.MODEL_NAME": "AudioLinearProbe", "STICA.POOL.TYPE": "gap",
                                   "TRAIN.CHECKPOINT_FILE_PATH": ckpt, "SOLVER.MAX_EPOCH": 1}))
    metrics = json.load(open(os.path.join(probe, "metrics.json")))
    assert 0.0 <= metrics["top1_acc"] <= 100.0 and metrics["num_videos"] == NUM_CLASSES * TEST_PER_CLASS
    assert "Loaded" in open(os.path.join(probe, "stdout.log")).read()
