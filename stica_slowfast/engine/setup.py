"""Per-process start-up shared by training and testing: OUTPUT_DIR check and run lock, logging, seeding,
device, TensorBoard."""

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from typing import Any, Dict, Iterator, Optional

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode

from stica_slowfast.models import build_model, to_channels_last, uses_channels_last
from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.io import PathManager, local_path
from stica_slowfast.utils.logging import setup_logging
from stica_slowfast.utils.misc import set_seed

logger = logging.getLogger(__name__)

# Free space (bytes) OUTPUT_DIR needs at the least: logs, json stats, metrics, a small checkpoint.
MIN_FREE_BYTES = 16 * 2**20


class OutputDirError(RuntimeError):
    """OUTPUT_DIR cannot be created or written, or lacks the free space the run needs."""


class OutputDirBusyError(OutputDirError):
    """Another live run holds OUTPUT_DIR's run lock (the message, one line, names its process and host)."""


def _probe_output_dir(output_dir: str, min_free_bytes: int) -> None:
    """Create ``output_dir``, write and remove a probe file, compare free space; OutputDirError."""
    where = f"OUTPUT_DIR {output_dir!r}"
    probe = os.path.join(output_dir, f".write_probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        PathManager.mkdirs(output_dir)
        with PathManager.open(probe, "w") as f:
            f.write("probe\n")
        PathManager.rm(probe)
    except OSError as err:
        raise OutputDirError(f"{where} is not writable: {err}") from err
    local = local_path(output_dir)
    if local is None:  # a remote backend: no free-space query
        return
    free = shutil.disk_usage(local).free
    if free < min_free_bytes:
        raise OutputDirError(
            f"{where} has {free / 2**20:.1f} MiB free; the run needs at least "
            f"{min_free_bytes / 2**20:.1f} MiB there (logs and checkpoints)")


def check_output_dir(output_dir: str, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Stop before any work, naming OUTPUT_DIR and the cause, when the run could not write there.

    The master process (the one that writes logs, checkpoints and metrics) creates the directory,
    writes and removes a probe file, and compares the free space with ``min_free_bytes`` (local file
    systems only). Collective when distributed: every process raises when the master's check failed,
    so that none waits for it in a later collective.

    Args:
        output_dir: the run's OUTPUT_DIR.
        min_free_bytes: free space needed there, e.g. an estimate of a checkpoint's size.

    Raises:
        OutputDirError: on every process, when the check failed on the master.
    """
    error: Optional[OutputDirError] = None
    if output_dir and du.is_master_proc():
        try:
            _probe_output_dir(output_dir, int(min_free_bytes))
        except OutputDirError as err:
            error = err
    if du.get_world_size() > 1:
        failed = du.all_reduce_tensor(torch.tensor([float(error is not None)]), average=False)
        if error is None and failed.item() > 0:
            error = OutputDirError(f"OUTPUT_DIR {output_dir!r} failed its check on process 0 (see its error)")
    if error is not None:
        raise error


# ------------------------------------------------------------------------------------------------ #
# Run lock: one run per OUTPUT_DIR
# ------------------------------------------------------------------------------------------------ #
# The lock file, OUTPUT_DIR/run.lock: kept between runs; empty when no run holds it.
RUN_LOCK_NAME = "run.lock"
# Seconds between the holder's touches of the lock file (its modification time is the heartbeat).
LOCK_HEARTBEAT_SECONDS = 30.0
# A record of another host whose heartbeat is older than this (seconds) is a dead run's: more than the
# heartbeat plus NFS's attribute cache (acregmax, 60 s by default), with a wide margin.
LOCK_STALE_SECONDS = 300.0

# Lock files held by this process: a POSIX lock is per process, so a second RunLock on the same file
# here would "succeed", and closing its descriptor would drop the first one's lock.
_HELD: Dict[str, "RunLock"] = {}
# A forked child (a DataLoader worker) does not hold its parent's POSIX locks.
os.register_at_fork(after_in_child=_HELD.clear)


class RunLock:
    """``OUTPUT_DIR/run.lock``, held by one run for its whole life; a second run there stops at start-up.

    Two runs writing one OUTPUT_DIR lose and duplicate records of ``json_stats.log`` and, with different
    configs, mix checkpoints, silently. The lock has two parts:

    * A POSIX record lock (``fcntl.lockf``) on the open file. The kernel releases it when the process
      ends in any way, so a killed run's lock never blocks its resume on the same host. It belongs to
      the process (not inherited by forked DataLoader workers, which may outlive a killed parent by a
      few seconds), and on NFS it is forwarded to the server (NLM / NFSv4 locks), so it also excludes
      a run on another host where the mount supports locking. (``flock`` would be inherited by the
      workers, and on NFS is emulated by the same POSIX locks.)
    * A record in the file: ``{"pid", "host", "started", "argv"}`` (and ``"job"``, the SLURM job id,
      under SLURM), cleared when the run ends, whose
      modification time the holder refreshes every ``heartbeat_s`` seconds. It names the holder in the
      error, and covers mounts where the lock does not reach other hosts (``nolock``,
      ``local_lock=posix``): a record of another host with a heartbeat younger than ``stale_s`` blocks;
      an older one is a crashed host's and is taken over with a warning, as is one of the same SLURM job
      (a preempted job requeued onto another node). On the same host the POSIX lock
      decides (a record left by a killed run is taken over). Two runs started on two hosts within the
      same instant on a mount without locking are not told apart.

    Remote (non-file) OUTPUT_DIRs get no lock (a warning says so).
    """

    def __init__(self, output_dir: str, *, heartbeat_s: float = LOCK_HEARTBEAT_SECONDS,
                 stale_s: float = LOCK_STALE_SECONDS) -> None:
        self.output_dir = output_dir
        local = local_path(output_dir)
        self.path = os.path.join(local, RUN_LOCK_NAME) if local is not None else None
        self.heartbeat_s, self.stale_s = float(heartbeat_s), float(stale_s)
        self._fd: Optional[int] = None
        self._record: Dict[str, Any] = {}
        self._stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None

    # -- public -------------------------------------------------------------------------------- #
    def acquire(self) -> None:
        """Take the lock or raise.

        Raises:
            OutputDirBusyError: another live run holds it (one line: its pid, host, start time, and
                for another host's record the file to delete if that run is gone).
            OutputDirError: the lock file cannot be created.
        """
        if self.path is None:
            logger.warning("OUTPUT_DIR %s is not a local path: no run lock, so a second run there "
                           "would not be detected", self.output_dir)
            return
        key = os.path.realpath(self.path)
        if key in _HELD:
            raise OutputDirBusyError(self._busy(_HELD[key]._record, "this very process already runs there"))
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise OutputDirError(f"OUTPUT_DIR {self.output_dir!r} is not writable: {err}") from err
        try:
            locked = self._lock(fd)
            held = self._read(fd)
            if held:
                self._judge(fd, held, locked)
            self._record = {
                "pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "argv": " ".join(sys.argv)[:500],
            }
            if _job_id():
                self._record["job"] = _job_id()
            self._write(fd, json.dumps(self._record) + "\n")
        except OSError as err:  # ENOSPC, EIO, ... while reading or writing the record
            os.close(fd)  # also drops a lock taken above
            raise OutputDirError(f"OUTPUT_DIR {self.output_dir!r}: its run lock {self.path} cannot be "
                                 f"written: {err}") from err
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HELD[key] = self
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        """Clear the record and drop the lock (the file stays: removing it would let two runs lock
        two different files of one name)."""
        if self._fd is None:
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        fd, self._fd = self._fd, None
        _HELD.pop(os.path.realpath(self.path), None)
        try:
            held = self._read(fd)
            if held.get("pid") == self._record["pid"] and held.get("host") == self._record["host"]:
                self._write(fd, "")  # not if a run on another host took over a lock it thought stale
        except OSError as err:
            logger.warning("Could not clear the run lock %s: %s", self.path, err)
        finally:
            os.close(fd)  # releases the POSIX lock

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- private ------------------------------------------------------------------------------- #
    def _lock(self, fd: int) -> bool:
        """Take the POSIX lock without waiting: True when taken, False where the file system has no
        locks; OutputDirBusyError when another process holds it."""
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):  # ENOLCK, EOPNOTSUPP, ...
                logger.warning("The file system of %s has no file locks (%s): the run lock relies on its "
                               "record and heartbeat alone", self.path, err.strerror)
                return False
        # Held: the holder writes its record right after locking; give it a moment if it is empty.
        deadline = time.monotonic() + 1.0
        held = self._read(fd)
        while not held and time.monotonic() < deadline:
            time.sleep(0.05)
            held = self._read(fd)
        raise OutputDirBusyError(self._busy(held))

    def _judge(self, fd: int, held: Dict[str, Any], locked: bool) -> None:
        """A record is there although this process could lock (or the file system has no locks):
        raise when its run may still live, else say whose lock is taken over."""
        age = time.time() - os.fstat(fd).st_mtime
        who = f"process {held.get('pid', '?')} on host {held.get('host', '?')}, started {held.get('started', '?')}"
        if held.get("host") == socket.gethostname():
            if not locked and _pid_alive(held.get("pid")):
                raise OutputDirBusyError(self._busy(held))
            # The lock is free on this host, so that process has ended without clearing its record.
            logger.warning("Run lock %s: %s ended without releasing it (killed?); taking it over",
                           self.path, who)
            return
        if _job_id() and held.get("job") == _job_id():
            # The same scheduler job: an earlier run of it (preempted, requeued onto another node).
            logger.warning("Run lock %s: %s was an earlier run of this job (%s); taking it over",
                           self.path, who, _job_id())
            return
        if age < self.stale_s:
            raise OutputDirBusyError(self._busy(
                held, f"its heartbeat is {age:.0f} s old; if that run is gone, delete {self.path} (or wait "
                      f"{self.stale_s - age:.0f} s, after which the lock counts as stale)"))
        logger.warning("Run lock %s: %s has not updated it for %.0f s (> %.0f s); taking it over",
                       self.path, who, age, self.stale_s)

    def _busy(self, held: Dict[str, Any], hint: str = "") -> str:
        """The one-line error naming the run that holds the lock."""
        if held:
            who = (f"process {held.get('pid', '?')} on host {held.get('host', '?')}, started "
                   f"{held.get('started', '?')}")
        else:
            who = "a process that left no record"
        hint = hint or "wait for it to end, stop it, or give this run another OUTPUT_DIR"
        return f"OUTPUT_DIR {self.output_dir!r} is in use by another run: {who} (lock file {self.path}); {hint}"

    def _beat(self) -> None:
        """Refresh the lock file's modification time until released."""
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self._fd)
            except OSError:  # a transient NFS error: the next beat tries again
                pass

    @staticmethod
    def _read(fd: int) -> Dict[str, Any]:
        """The record in the lock file ({} when empty or unreadable)."""
        data = os.pread(fd, 4096, 0)
        try:
            record = json.loads(data.decode("utf-8")) if data.strip() else {}
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    @staticmethod
    def _write(fd: int, text: str) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8"), 0)
        os.fsync(fd)


def _job_id() -> str:
    """The SLURM job of this process ("" outside SLURM); a requeued job keeps its id."""
    return os.environ.get("SLURM_JOB_ID", "")


def _pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` exists on this host."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


@contextlib.contextmanager
def output_dir_lock(output_dir: str) -> Iterator[Optional[RunLock]]:
    """Hold OUTPUT_DIR's :class:`RunLock` for the block: one run per OUTPUT_DIR.

    Only the master process (global rank 0, the one that writes) takes it, after
    :func:`check_output_dir`; the other processes of the same job take nothing, so a multi-process job
    never locks itself out. Collective when distributed: when the master could not take it, every
    process raises (none waits for it in a later collective).

    Yields:
        The lock on the master (None elsewhere, or without OUTPUT_DIR).

    Raises:
        OutputDirBusyError: another run holds the lock (on the other processes: "see process 0").
        OutputDirError: OUTPUT_DIR is not writable or has too little free space.
    """
    check_output_dir(output_dir)
    lock: Optional[RunLock] = None
    error: Optional[OutputDirError] = None
    if output_dir and du.is_master_proc():
        lock = RunLock(output_dir)
        try:
            lock.acquire()
        except OutputDirError as err:
            lock, error = None, err
    if du.get_world_size() > 1:
        try:
            failed = du.all_reduce_tensor(torch.tensor([float(error is not None)]), average=False)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if error is None and failed.item() > 0:
            error = OutputDirBusyError(f"OUTPUT_DIR {output_dir!r} could not be locked for this run on process 0 "
                                       f"(see its error)")
    if error is not None:
        raise error
    try:
        yield lock
        # Every process is done with OUTPUT_DIR before the lock goes (not after an error: a process
        # that failed alone would leave the others waiting here).
        du.synchronize()
    finally:
        if lock is not None:
            lock.release()


def check_same_checkpoint(path: str) -> None:
    """Raise on every process when the processes of the job loaded different checkpoints (each chose
    the newest usable file itself, and one of them read a file differently): they would train or score
    different weights. A collective.
    """
    paths = du.all_gather_objects(path)
    if len(set(paths)) > 1:
        listed = ", ".join(f"process {rank}: {p or 'none'}" for rank, p in enumerate(paths))
        raise RuntimeError(f"the processes of this job loaded different checkpoints ({listed}); stopping")


def build_model_on(cfg: CfgNode, device: torch.device) -> nn.Module:
    """``build_model(cfg)`` on ``device``, its convolutions in the layout ``STICA.MEMORY_FORMAT`` gives
    for that device (before an optimiser or DDP sees the parameters).

    The weights are drawn from ``RNG_SEED`` alone, so a random initialisation is the same on every
    process (a multi-process probe of a random-init encoder probes one network) and for every model
    built this way in a process; the process's own random stream (RNG_SEED + rank) is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.RNG_SEED)
        model = build_model(cfg)
    model = model.to(device)
    return to_channels_last(model) if uses_channels_last(cfg, device) else model


def setup_process(cfg: CfgNode, phase: str) -> torch.device:
    """Check OUTPUT_DIR, set up logging to it, seed this process (RNG_SEED + rank), return its device.

    Raises:
        OutputDirError: OUTPUT_DIR is not writable or has less than MIN_FREE_BYTES free.
    """
    check_output_dir(cfg.OUTPUT_DIR)
    setup_logging(cfg.OUTPUT_DIR)
    set_seed(cfg.RNG_SEED + du.get_rank())
    device = du.get_device(cfg.NUM_GPUS)
    logger.info(
        "%s on %s, process %d of %d, %d compute thread(s); config:\n%s",
        phase, device, du.get_rank(), du.get_world_size(), torch.get_num_threads(), cfg.dump(),
    )
    return device


class TensorBoardWriter:
    """TensorBoard events under TENSORBOARD.LOG_DIR (default OUTPUT_DIR/tensorboard); master only."""

    def __init__(self, cfg: CfgNode):
        from torch.utils.tensorboard import SummaryWriter

        log_dir = cfg.TENSORBOARD.LOG_DIR or os.path.join(cfg.OUTPUT_DIR, "tensorboard")
        self._writer = SummaryWriter(log_dir=log_dir)

    def add_scalars(self, scalars: Dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        self._writer.close()
