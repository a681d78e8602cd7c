"""Faults, end to end with real processes and files: a SIGKILL mid-epoch and a resume that repeats the
uninterrupted run, a NaN loss that stops the run and keeps the last good checkpoint, a kill during a
checkpoint write, and an unusable OUTPUT_DIR.

The runs are RhoBYOL (random crops and clips, an EMA target, LARS momentum state) on 16 tiny generated videos:
4 iterations of batch 4 per epoch, 3 epochs, a checkpoint every epoch, one DataLoader worker.
"""

import glob
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import torch

from stica_slowfast.config import get_cfg, load_config
from stica_slowfast.checkpoint import (
    checkpoint_path,
    get_last_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from stica_slowfast.engine.entry import main
from stica_slowfast.engine.setup import OutputDirError, check_output_dir
from stica_slowfast.engine.trainer import TrainingDivergedError, _step_verdict
from stica_slowfast.models import build_model
from stica_slowfast.synthetic import generate_dataset
from stica_slowfast.utils.io import PathManager
from stica_slowfast.utils.logging import drop_json_stats_after

from gloo import free_port, run_gloo  # tests/gloo.py

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_NET = os.path.join(REPO, "tools", "run_net.py")
CFG = os.path.join(REPO, "configs", "demo", "rho_byol_tiny.yaml")
NUM_CLASSES = 4
MAX_EPOCH = 3
ITERS = 4  # 4 classes x 4 videos / batch 4
TIMEOUT = 180


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic"))
    generate_dataset(out, num_classes=NUM_CLASSES, train_per_class=4, val_per_class=1, test_per_class=1,
                     width=40, height=32, fps=15, duration=1.2, audio_rate=8000, seed=5)
    return out


def _opts(data_dir, out_dir, **extra):
    opts = {
        "DATA.PATH_TO_DATA_DIR": data_dir,
        "OUTPUT_DIR": out_dir,
        "RNG_SEED": 7,
        "MODEL.NUM_CLASSES": NUM_CLASSES,
        "SOLVER.MAX_EPOCH": MAX_EPOCH,
        "SOLVER.WARMUP_EPOCHS": 0.5,  # the demo's warm-up would fill these 3 epochs
        "TRAIN.BATCH_SIZE": 4,
        "TRAIN.CHECKPOINT_PERIOD": 1,
        "STICA.KNN.ENABLE": False,
        "DATA_LOADER.NUM_WORKERS": 1,
        "LOG_PERIOD": 1,
        "LOG_MODEL_INFO": False,
        "TENSORBOARD.ENABLE": False,
        "CONTRASTIVE.DIM": 16,
        "CONTRASTIVE.MLP_DIM": 32,
        "DATA.TRAIN_JITTER_SCALES": "[20, 24]",
        "DATA.TRAIN_CROP_SIZE": 16,
        "DATA.TEST_CROP_SIZE": 16,
        **extra,
    }
    return [str(x) for kv in opts.items() for x in kv]


def _command(data_dir, out_dir, **extra):
    return [sys.executable, RUN_NET, "--cfg", CFG, *_opts(data_dir, out_dir, **extra)]


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)


def _records(out_dir, kind="train_epoch"):
    path = os.path.join(out_dir, "json_stats.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in map(json.loads, f) if r["_type"] == kind]


def _train_iters(out_dir):
    path = os.path.join(out_dir, "stdout.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().splitlines()
    # A line still being written may be incomplete: keep the parsable ones.
    records = []
    for line in lines:
        if '"train_iter"' in line:
            try:
                records.append(json.loads(line.split("json_stats: ", 1)[1]))
            except ValueError:
                pass
    return records


def _model_and_state(out_dir, epoch_1based):
    """The run's model with the checkpoint of ``epoch_1based`` loaded, and the raw file."""
    cfg = load_config([CFG], _opts("", out_dir))
    model = build_model(cfg)
    path = os.path.join(out_dir, "checkpoints", f"checkpoint_epoch_{epoch_1based:05d}.pyth")
    assert load_checkpoint(path, model) == epoch_1based - 1
    return model, torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module", params=["worker", "device"])
def aug(request):
    """Where the appearance augmentation runs (STICA.AUG.DEVICE): the runs below hold either way."""
    return {"STICA.AUG.DEVICE": request.param}


@pytest.fixture(scope="module")
def uninterrupted(data_dir, aug, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("uninterrupted"))
    proc = _run(_command(data_dir, out, **aug))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_sigkill_mid_epoch_then_resume_repeats_the_uninterrupted_run(data_dir, aug, uninterrupted, tmp_path):
    out = str(tmp_path / "killed")
    cmd = _command(data_dir, out, **aug)
    # Its own process group, so that the kill takes the DataLoader worker too.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                            start_new_session=True)
    first_ckpt = os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth")
    deadline = time.monotonic() + TIMEOUT
    try:
        # Kill after the first step of epoch 2 is logged, with 3 of its 4 steps to go.
        while not any(r["epoch"] == f"2/{MAX_EPOCH}" for r in _train_iters(out)):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert os.path.exists(first_ckpt)
    assert 1 <= sum(r["epoch"] == f"2/{MAX_EPOCH}" for r in _train_iters(out)) < ITERS
    assert [n for _, n in list_checkpoints(out)] == [first_ckpt]  # killed inside epoch 2

    resumed = _run(cmd)  # the very same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with open(os.path.join(out, "stdout.log")) as f:
        assert f"Resuming from {first_ckpt}" in f.read()

    _assert_repeats(uninterrupted, out)


def _assert_repeats(uninterrupted, out, max_epoch=MAX_EPOCH):
    """The run in ``out`` (interrupted and resumed) repeated the run in ``uninterrupted``."""
    # json_stats.log holds every epoch once, and the loss curve is the uninterrupted run's.
    expected, got = _records(uninterrupted), _records(out)
    assert [r["epoch"] for r in got] == [f"{e}/{max_epoch}" for e in range(1, max_epoch + 1)]
    for want, have in zip(expected, got):
        assert have["loss"] == pytest.approx(want["loss"], rel=1e-5)  # json keeps 6 digits
        assert have["num_skipped_videos"] == want["num_skipped_videos"]
    assert len({r["loss"] for r in got}) == max_epoch  # the epochs do differ
    # Every step's logged loss too (the resumed run logs the steps after its checkpoint again).
    losses = lambda d: {(r["epoch"], r["iter"]): r["loss"] for r in _train_iters(d)}  # noqa: E731
    want_steps, have_steps = losses(uninterrupted), losses(out)
    assert set(have_steps) == set(want_steps)
    for step, loss in want_steps.items():
        assert have_steps[step] == pytest.approx(loss, rel=1e-5), step

    # The final state agrees too: online and EMA target weights, BN statistics, LARS momentum buffers.
    _, want = _model_and_state(uninterrupted, max_epoch)
    _, have = _model_and_state(out, max_epoch)
    assert any(k.startswith("target.") for k in have["model_state"])
    for key, value in want["model_state"].items():
        torch.testing.assert_close(have["model_state"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    for idx, state in want["optimizer_state"]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(have["optimizer_state"]["state"][idx][name], value,
                                       rtol=1e-5, atol=1e-6, msg=f"{idx}.{name}")


def _start(cmd):
    """A run in its own process group (a kill then takes its DataLoader worker too, as SLURM's does);
    its stderr goes to a file (a pipe nobody reads would fill up and stall it)."""
    err = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, start_new_session=True)
    proc.err = err
    return proc


def _wait_for(condition, procs, what):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert all(p.poll() is None for p in procs), f"a run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _mid_epoch(out):
    return [p for p in glob.glob(os.path.join(out, "checkpoints", "checkpoint_epoch_*_iter_*.pyth"))]


def _resumed_from(out):
    with open(os.path.join(out, "stdout.log")) as f:
        return [line.split("Resuming from ", 1)[1].strip() for line in f if "Resuming from " in line]


def test_sigkill_after_an_iteration_checkpoint_then_resume_repeats_the_uninterrupted_run(
        data_dir, aug, uninterrupted, tmp_path):
    out = str(tmp_path / "killed")
    # A checkpoint after every step: whenever the kill lands, the newest one is mid-epoch (but
    # between an epoch's end and the next step).
    cmd = _command(data_dir, out, **aug, **{"TRAIN.CHECKPOINT_ITER_PERIOD": 1, "TRAIN.CHECKPOINT_KEEP": 2})
    proc = _start(cmd)
    try:
        _wait_for(lambda: os.path.exists(checkpoint_path(out, 1, 1)), [proc], "epoch 2's first checkpoint")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        _finish([proc])
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= len(_mid_epoch(out)) <= 2  # CHECKPOINT_KEEP

    resumed = _run(cmd)  # the very same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "_iter_" in _resumed_from(out)[-1]
    _assert_repeats(uninterrupted, out)
    assert _mid_epoch(out) == []  # the last epoch checkpoint made them needless
    assert [e for e, _ in list_checkpoints(out)] == list(range(1, MAX_EPOCH + 1))


def test_minutes_based_checkpoints_are_written_mid_epoch_and_pruned(data_dir, tmp_path):
    out = str(tmp_path / "timed")
    # Due after every step (process 0's clock): iterations 1-3 of the one epoch, then its end.
    proc = _run(_command(data_dir, out, **{"SOLVER.MAX_EPOCH": 1, "TRAIN.CHECKPOINT_MINUTES": 1e-9,
                                           "TRAIN.CHECKPOINT_KEEP": 2}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "stdout.log")) as f:
        saved = [line.split("Saved checkpoint ", 1)[1].strip() for line in f if "Saved checkpoint " in line]
    assert saved == [checkpoint_path(out, 0, i) for i in (1, 2, 3)] + [checkpoint_path(out, 1)]
    assert [n for _, n in list_checkpoints(out)] == [checkpoint_path(out, 1)]  # the epoch's makes them needless


# Two processes (gloo), 2 epochs: the same global batch of 4, 2 per process. Feature Crop draws its
# boxes from each process's random stream every step: a resume must restore those streams.
TWO = {"SOLVER.MAX_EPOCH": 2, "STICA.AUG.DEVICE": "worker", "STICA.FEATURE_CROP.ENABLE": True}


def _two_processes(data_dir, out, **extra):
    port = free_port()
    return [_command(data_dir, out, **TWO, **extra)[:2] + [
        "--num_shards", "2", "--shard_id", str(rank), "--init_method", f"tcp://127.0.0.1:{port}",
        *_command(data_dir, out, **TWO, **extra)[2:]] for rank in range(2)]


def _finish(procs):
    """Wait for the runs; their exit codes (each one's stderr in ``.stderr_text``)."""
    for p in procs:
        p.wait(timeout=TIMEOUT)
        p.err.seek(0)
        p.stderr_text = p.err.read()
        p.err.close()
    return [p.returncode for p in procs]


@pytest.fixture(scope="module")
def uninterrupted_two(data_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("uninterrupted_two"))
    procs = [_start(cmd) for cmd in _two_processes(data_dir, out)]
    assert _finish(procs) == [0, 0], procs[0].stderr_text[-3000:] + procs[1].stderr_text[-3000:]
    return out


def test_two_processes_sigkill_after_an_iteration_checkpoint_then_resume(data_dir, uninterrupted_two, tmp_path):
    out = str(tmp_path / "killed_two")
    extra = {"TRAIN.CHECKPOINT_ITER_PERIOD": 1}
    procs = [_start(cmd) for cmd in _two_processes(data_dir, out, **extra)]
    try:  # in epoch 1: 7 steps to go, each writing a mid-epoch checkpoint but the epochs' last
        _wait_for(lambda: os.path.exists(checkpoint_path(out, 0, 1)), procs, "epoch 1's first checkpoint")
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        _finish(procs)
    procs = [_start(cmd) for cmd in _two_processes(data_dir, out, **extra)]
    assert _finish(procs) == [0, 0], procs[0].stderr_text[-3000:] + procs[1].stderr_text[-3000:]
    assert "_iter_" in _resumed_from(out)[-1]
    _assert_repeats(uninterrupted_two, out, max_epoch=2)


def test_sigterm_to_one_process_of_two_checkpoints_and_exits_for_a_requeue(data_dir, uninterrupted_two, tmp_path):
    out = str(tmp_path / "preempted")
    procs = [_start(cmd) for cmd in _two_processes(data_dir, out)]  # no periodic checkpoint but the epochs'
    try:  # in epoch 1, with 7 steps to go
        _wait_for(lambda: len(_train_iters(out)) >= 1, procs, "the first step")
        os.killpg(procs[1].pid, signal.SIGTERM)  # process 1 and its DataLoader worker, not process 0
        codes = _finish(procs)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert codes == [128 + signal.SIGTERM] * 2, procs[0].stderr_text[-3000:] + procs[1].stderr_text[-3000:]
    written = [n for _, n in list_checkpoints(out)]
    # Written at the signal: inside epoch 1 (or at its end, had the signal come during its last step).
    assert len(written) == 1 and ("_iter_" in written[0] or written[0] == checkpoint_path(out, 1)), written
    with open(os.path.join(out, "stdout.log")) as f:
        assert "Stopping at SIGTERM: checkpoint written" in f.read()

    procs = [_start(cmd) for cmd in _two_processes(data_dir, out)]  # the same command: the requeued job
    assert _finish(procs) == [0, 0], procs[0].stderr_text[-3000:] + procs[1].stderr_text[-3000:]
    assert _resumed_from(out)[-1] == written[0]
    _assert_repeats(uninterrupted_two, out, max_epoch=2)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, aug, uninterrupted, tmp_path):
    out = str(tmp_path / "diverged")
    os.makedirs(os.path.join(out, "checkpoints"))
    good = os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth")
    shutil.copy(os.path.join(uninterrupted, "checkpoints", "checkpoint_epoch_00001.pyth"), good)
    before = open(good, "rb").read()

    # Resumed after epoch 1 with a learning rate of 1e30: the first update of epoch 2 blows the
    # weights up and the next loss is NaN.
    proc = _run(_command(data_dir, out, **aug, **{"SOLVER.BASE_LR": 1e30}))
    assert proc.returncode != 0
    last_line = proc.stderr.strip().splitlines()[-1]
    assert "TrainingDivergedError: loss is nan at epoch 2, iteration 2; stopping" in last_line, proc.stderr[-3000:]
    assert f"(last checkpoint: {good})" in last_line

    # The good checkpoint is untouched, loads, and holds finite weights; nothing else was written.
    assert [n for _, n in list_checkpoints(out)] == [good]
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["checkpoint_epoch_00001.pyth"]
    assert open(good, "rb").read() == before
    model, _ = _model_and_state(out, 1)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert [r["epoch"] for r in _records(out)] == []  # epoch 2 never finished


class _StallingFile:
    """A real file whose first write reaches the disk and then stalls (for a kill to land there)."""

    def __init__(self, path, f, markers):
        self.path, self.f, self.markers = path, f, markers

    def write(self, data):
        n = self.f.write(data)
        self.f.flush()
        open(os.path.join(self.markers, os.path.basename(self.path)), "w").close()
        time.sleep(600)
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _save_slowly(out, markers):
    """In a child process: save epoch 0 again (over its complete file) and epoch 1 (a new file) side by
    side, each stalling inside its write."""
    open_file = PathManager.open
    PathManager.open = lambda path, mode="r", **kw: _StallingFile(path, open_file(path, mode, **kw), markers)
    torch.manual_seed(1)
    model = torch.nn.Linear(256, 256)
    for epoch in (0, 1):
        threading.Thread(target=save_checkpoint, args=(out, epoch, model, None, get_cfg()), daemon=True).start()
    time.sleep(600)


def test_kill_during_checkpoint_writes_leaves_no_torn_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    model = torch.nn.Linear(256, 256)
    first = save_checkpoint(out, 0, model, None, get_cfg())
    before = open(first, "rb").read()
    markers = tmp_path / "writing"
    markers.mkdir()
    # Forked: a real process with the package already imported; the stall is patched in there only.
    proc = multiprocessing.get_context("fork").Process(target=_save_slowly, args=(out, str(markers)))
    proc.start()
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(os.listdir(markers)) < 2:  # both writes have started
            assert proc.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    assert proc.exitcode == -signal.SIGKILL
    names = sorted(os.listdir(os.path.join(out, "checkpoints")))
    torn = [n for n in names if n.startswith(".checkpoint_epoch_")]  # the partial writes stay hidden
    assert sorted(n.split(".tmp-")[0] for n in torn) == [".checkpoint_epoch_00001.pyth",
                                                        ".checkpoint_epoch_00002.pyth"]
    assert all(os.path.getsize(os.path.join(out, "checkpoints", n)) > 0 for n in torn)
    assert sorted(set(names) - set(torn)) == ["checkpoint_epoch_00001.pyth"]  # no file 2
    assert get_last_checkpoint(out) == first
    assert open(first, "rb").read() == before  # the previous complete file, not the new one
    restored = torch.nn.Linear(256, 256)
    assert load_checkpoint(first, restored) == 0
    torch.testing.assert_close(restored.weight, model.weight)


@pytest.mark.parametrize("synthetic", [False, True], ids=["data_dir", "synthetic_data"])
def test_unwritable_output_dir_stops_before_training(data_dir, tmp_path, synthetic, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file: no directory can be made under it, even by root\n")
    out = str(blocker / "out")
    opts = _opts("" if synthetic else data_dir, out, **{"STICA.SYNTHETIC.ENABLE": synthetic})
    with pytest.raises(SystemExit) as stopped:
        main(["--cfg", CFG, *opts])  # tools/run_net.py's entry, in this process
    assert stopped.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(rf"^error: OUTPUT_DIR '{out}' is not writable: .*Not a directory", last), last


def test_output_dir_without_room_for_a_checkpoint(tmp_path):
    check_output_dir(str(tmp_path / "made"), min_free_bytes=1)
    assert os.listdir(tmp_path / "made") == []  # the probe file is removed
    with pytest.raises(OutputDirError, match=r"OUTPUT_DIR .* MiB free; the run needs at least"):
        check_output_dir(str(tmp_path), min_free_bytes=2**62)


def test_resume_drops_the_records_of_unsaved_epochs(tmp_path):
    lines = [
        {"_type": "train_epoch", "epoch": "1/3", "loss": 1.0},
        {"_type": "knn_val", "epoch": "1/3", "knn_top1_acc": 50.0},
        {"_type": "test_final", "top1_acc": 40.0},
        {"_type": "train_epoch", "epoch": "2/3", "loss": 0.5},  # finished, but not checkpointed
    ]
    path = tmp_path / "json_stats.log"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"_type": "train_ep')  # torn by a kill
    assert drop_json_stats_after(str(tmp_path), 1) == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:3]
    assert drop_json_stats_after(str(tmp_path), 1) == 0


def _diverge_on_rank_1(rank, out_dir):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = out_dir
    messages = []
    try:
        _step_verdict(float("nan") if rank == 1 else 0.5, 1, 2, cfg)
    except TrainingDivergedError as err:
        messages.append(str(err))
    try:  # fails on rank 0 (the one that writes) only
        check_output_dir(os.path.join(out_dir, "file.txt", "out") if rank == 0 else out_dir)
    except OutputDirError as err:
        messages.append(str(err))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(messages, f)


def test_every_process_stops_when_one_fails(tmp_path):
    """A NaN loss on one rank, an unwritable OUTPUT_DIR on rank 0: every rank raises, none hangs."""
    (tmp_path / "file.txt").write_text("not a directory\n")
    run_gloo(_diverge_on_rank_1, 2, str(tmp_path), start_method="fork")
    nan0, dir0 = json.load(open(tmp_path / "rank0.json"))
    nan1, dir1 = json.load(open(tmp_path / "rank1.json"))
    assert nan0 == "loss is not finite at epoch 2, iteration 3 on process 1; stopping (last checkpoint: none)"
    assert nan1 == "loss is nan at epoch 2, iteration 3 on process 1; stopping (last checkpoint: none)"
    assert "is not writable" in dir0 and "failed its check on process 0" in dir1
