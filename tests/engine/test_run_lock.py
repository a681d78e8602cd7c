"""One run per OUTPUT_DIR (OUTPUT_DIR/run.lock), with real processes and files: a live holder blocks a
second run with one line naming its process, host and start; a killed holder does not block (also while
its forked children live on); a record of another host blocks until its heartbeat is stale; one
multi-process (gloo) job takes one lock; and end to end, a second tools/run_net.py on a live OUTPUT_DIR
exits with one line naming the first run's pid, while a resume after a kill runs."""

import json
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from stica_slowfast.engine.setup import (
    RUN_LOCK_NAME,
    OutputDirBusyError,
    RunLock,
    output_dir_lock,
)
from stica_slowfast.synthetic import generate_dataset

from gloo import run_gloo  # tests/gloo.py

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_NET = os.path.join(REPO, "tools", "run_net.py")
CFG = os.path.join(REPO, "configs", "demo", "rho_byol_tiny.yaml")
TIMEOUT = 180
FORK = multiprocessing.get_context("fork")  # a real process with the package already imported


def _hold(output_dir, ready, with_worker):
    """In a child process: take the lock (and fork a worker, as a DataLoader does), then wait."""
    lock = RunLock(output_dir)
    lock.acquire()
    worker = None
    if with_worker:
        worker = FORK.Process(target=time.sleep, args=(120,), daemon=False)
        worker.start()
    ready.send(worker.pid if worker else 0)
    time.sleep(120)


def _start_holder(output_dir, with_worker=False):
    parent, child = FORK.Pipe()
    proc = FORK.Process(target=_hold, args=(output_dir, child, with_worker))
    proc.start()
    assert parent.poll(60), "the holder did not start"
    return proc, parent.recv()


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _record(output_dir):
    with open(os.path.join(output_dir, RUN_LOCK_NAME)) as f:
        text = f.read()
    return json.loads(text) if text.strip() else {}


def test_live_holder_blocks_with_one_line_and_a_killed_one_does_not(tmp_path, caplog):
    out = str(tmp_path / "out")
    holder, _ = _start_holder(out)
    try:
        with pytest.raises(OutputDirBusyError) as info:
            RunLock(out).acquire()
        message = str(info.value)
        started = _record(out)["started"]
        assert message == (
            f"OUTPUT_DIR {out!r} is in use by another run: process {holder.pid} on host "
            f"{socket.gethostname()}, started {started} (lock file {os.path.join(out, RUN_LOCK_NAME)}); "
            f"wait for it to end, stop it, or give this run another OUTPUT_DIR")
    finally:
        _kill(holder.pid)
        holder.join()
    assert _record(out)["pid"] == holder.pid  # the killed run's record is still there

    with caplog.at_level(logging.WARNING):
        lock = RunLock(out)
        lock.acquire()
    try:
        assert _record(out)["pid"] == os.getpid()
        assert any(f"process {holder.pid} on host" in r.getMessage() and "ended without releasing it"
                   in r.getMessage() for r in caplog.records)
    finally:
        lock.release()
    assert _record(out) == {} and os.path.exists(os.path.join(out, RUN_LOCK_NAME))  # cleared, kept


def test_forked_children_of_a_killed_run_do_not_hold_its_lock(tmp_path):
    """DataLoader workers are forked from the run and may outlive a SIGKILL of it for a few seconds."""
    out = str(tmp_path / "out")
    holder, worker = _start_holder(out, with_worker=True)
    _kill(holder.pid)
    holder.join()
    try:
        os.kill(worker, 0)  # the worker still lives
        with RunLock(out):
            assert _record(out)["pid"] == os.getpid()
    finally:
        _kill(worker)


def test_one_process_cannot_take_its_own_lock_twice(tmp_path):
    out = str(tmp_path / "out")
    with RunLock(out):
        with pytest.raises(OutputDirBusyError, match=rf"process {os.getpid()} .*this very process already runs"):
            RunLock(out).acquire()
    with RunLock(out):  # free again once released
        pass


def test_record_of_another_host_blocks_until_its_heartbeat_is_stale(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    path = out / RUN_LOCK_NAME
    path.write_text(json.dumps({"pid": 4242, "host": "node-elsewhere", "started": "2024-01-02T03:04:05+00:00"}))
    with pytest.raises(OutputDirBusyError) as info:
        RunLock(str(out), stale_s=300).acquire()
    assert "\n" not in str(info.value)
    assert "process 4242 on host node-elsewhere, started 2024-01-02T03:04:05+00:00" in str(info.value)
    assert f"if that run is gone, delete {path} (or wait" in str(info.value)

    old = time.time() - 3600
    os.utime(path, (old, old))  # no heartbeat for an hour: that host's run is dead
    with caplog.at_level(logging.WARNING):
        with RunLock(str(out), stale_s=300):
            assert _record(str(out))["host"] == socket.gethostname()
    assert any("node-elsewhere" in r.getMessage() and "taking it over" in r.getMessage() for r in caplog.records)


def test_a_requeued_slurm_job_takes_over_its_own_record_from_another_node(tmp_path, monkeypatch, caplog):
    # Preempted on one node, requeued at once on another: the record's heartbeat is still fresh.
    out = tmp_path / "out"
    out.mkdir()
    (out / RUN_LOCK_NAME).write_text(json.dumps({"pid": 4242, "host": "node-elsewhere", "job": "777"}))
    monkeypatch.setenv("SLURM_JOB_ID", "778")  # another job: blocked
    with pytest.raises(OutputDirBusyError, match="process 4242 on host node-elsewhere"):
        RunLock(str(out), stale_s=300).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    with caplog.at_level(logging.WARNING):
        with RunLock(str(out), stale_s=300):
            assert _record(str(out))["job"] == "777" and _record(str(out))["pid"] == os.getpid()
    assert any("earlier run of this job (777)" in r.getMessage() for r in caplog.records)


def test_holder_refreshes_its_heartbeat(tmp_path):
    out = str(tmp_path / "out")
    path = os.path.join(out, RUN_LOCK_NAME)
    with RunLock(out, heartbeat_s=0.05):
        old = time.time() - 1000
        os.utime(path, (old, old))
        deadline = time.monotonic() + 10
        while os.stat(path).st_mtime < old + 500:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.02)


def _lock_in_job(rank, out_dir, results):
    outcome = {"pid": os.getpid()}
    try:
        with output_dir_lock(out_dir) as lock:
            outcome["holds"] = lock is not None
            # The holder reads through its own descriptor: closing another one of the same file
            # would drop its POSIX lock.
            outcome["record_pid"] = (RunLock._read(lock._fd) if lock is not None else _record(out_dir))["pid"]
    except OutputDirBusyError as err:
        outcome["error"] = str(err)
    with open(os.path.join(results, f"rank{rank}.json"), "w") as f:
        json.dump(outcome, f)


def test_a_two_process_job_takes_one_lock_on_process_0(tmp_path):
    out, results = str(tmp_path / "out"), str(tmp_path)
    run_gloo(_lock_in_job, 2, out, results, start_method="fork")
    rank0, rank1 = (json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1))
    assert rank0["holds"] and not rank1["holds"]  # the job does not lock itself out
    assert rank0["record_pid"] == rank1["record_pid"] == rank0["pid"]
    assert _record(out) == {}  # released at the end

    holder, _ = _start_holder(out)  # another run: every process of the job stops, none waits
    try:
        run_gloo(_lock_in_job, 2, out, results, start_method="fork")
    finally:
        _kill(holder.pid)
        holder.join()
    rank0, rank1 = (json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1))
    assert f"is in use by another run: process {holder.pid} on host" in rank0["error"]
    assert rank1["error"] == f"OUTPUT_DIR {out!r} could not be locked for this run on process 0 (see its error)"


# ------------------------------------------------------------------------------------------------ #
# End to end: tools/run_net.py
# ------------------------------------------------------------------------------------------------ #
def _command(data_dir, out_dir, max_epoch):
    opts = {
        "DATA.PATH_TO_DATA_DIR": data_dir, "OUTPUT_DIR": out_dir, "MODEL.NUM_CLASSES": 4,
        "SOLVER.MAX_EPOCH": max_epoch, "SOLVER.WARMUP_EPOCHS": 0.5, "TRAIN.BATCH_SIZE": 4,
        "TRAIN.CHECKPOINT_PERIOD": 1, "TEST.ENABLE": False, "STICA.KNN.ENABLE": False,
        "DATA_LOADER.NUM_WORKERS": 0, "LOG_PERIOD": 1, "LOG_MODEL_INFO": False, "TENSORBOARD.ENABLE": False,
        "CONTRASTIVE.DIM": 16, "CONTRASTIVE.MLP_DIM": 32, "DATA.TRAIN_JITTER_SCALES": "[20, 24]",
        "DATA.TRAIN_CROP_SIZE": 16,
    }
    return [sys.executable, RUN_NET, "--cfg", CFG, *[str(x) for kv in opts.items() for x in kv]]


def test_second_run_net_on_a_live_output_dir_stops_naming_the_first(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    generate_dataset(data, num_classes=4, train_per_class=2, val_per_class=1, test_per_class=1,
                     width=40, height=32, fps=15, duration=1.2, audio_rate=8000, seed=5)
    # The first run trains "forever" (until killed); its own process group, to kill it whole.
    first = subprocess.Popen(_command(data, out, 10_000), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (os.path.exists(os.path.join(out, RUN_LOCK_NAME)) and _record(out).get("pid") == first.pid):
            assert first.poll() is None, "the first run ended"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # (1 epoch: were it not refused, it would end in seconds with status 0.)
        second = subprocess.run(_command(data, out, 1), capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
        assert first.poll() is None  # still live: the refusal was about a live run
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr[-3000:]
    assert lines[0].startswith(f"error: OUTPUT_DIR {out!r} is in use by another run: process {first.pid} on "
                               f"host {socket.gethostname()}, started 20")
    with open(os.path.join(out, "stdout.log")) as f:
        assert sum(" process 0 of 1," in line for line in f) == 1  # the second run wrote nothing there

    # The killed run's record is left; the resume (now 1 epoch long) is not blocked by it.
    assert _record(out)["pid"] == first.pid
    resumed = subprocess.run(_command(data, out, 1), capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"process {first.pid} on host" in resumed.stderr and "ended without releasing it" in resumed.stderr
    assert _record(out) == {}
