"""Stop signals (engine/preemption.py, the launcher's forwarding): recorded, handed on, exit status.

End to end (a signalled 2-process run checkpoints, exits for a requeue and resumes exactly):
tests/engine/test_faults.py.
"""

import os
import signal
import threading
import time

import pytest
import torch.multiprocessing as mp

from stica_slowfast.config import ConfigError, get_cfg, merge_from_list
from stica_slowfast.config.validation import assert_and_infer_cfg
from stica_slowfast.engine.launch import join_forwarding_signals
from stica_slowfast.engine.preemption import Preempted, StopSignals, signal_number


def test_preempted_exits_with_the_status_the_signal_would_have_given():
    err = Preempted(signal.SIGTERM)
    assert isinstance(err, SystemExit) and err.code == 143 and err.signum == signal.SIGTERM
    assert str(err) == "stopped by SIGTERM after writing a checkpoint"
    assert signal_number("sigusr1") == signal.SIGUSR1
    with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
        signal_number("SIGNOPE")


def test_signals_are_recorded_then_handed_to_the_handler_there_before():
    calls = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))  # e.g. submitit's
    usr1 = signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # e.g. nohup
    try:
        with StopSignals(["SIGUSR2", "SIGUSR1"]) as stop:
            os.kill(os.getpid(), signal.SIGUSR1)  # ignored before: stays ignored
            os.kill(os.getpid(), signal.SIGUSR2)
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.01)  # handlers run between bytecodes of the main thread
            assert stop.received == signal.SIGUSR2 and calls == []  # the run goes on to its checkpoint
            with pytest.raises(Preempted) as raised:
                stop.leave(stop.received)
        assert raised.value.code == 128 + signal.SIGUSR2
        assert calls == [signal.SIGUSR2]  # after the checkpoint: submitit's handler would requeue
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGUSR2) is not stop._record  # restored
    finally:
        signal.signal(signal.SIGUSR2, before)
        signal.signal(signal.SIGUSR1, usr1)


def test_handlers_are_restored_when_the_run_ends_without_a_signal():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(["SIGTERM"]) as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._record
    assert signal.getsignal(signal.SIGTERM) is before and stop.received is None


def test_preempt_signals_are_checked_at_start_up():
    cfg = get_cfg()
    merge_from_list(cfg, ["TRAIN.PREEMPT_SIGNALS", "['SIGTERM', 'SIGTERN']"])
    with pytest.raises(ConfigError, match=r"TRAIN.PREEMPT_SIGNALS holds \['SIGTERN'\]"):
        assert_and_infer_cfg(cfg)
    cfg = get_cfg()
    merge_from_list(cfg, ["TRAIN.CHECKPOINT_KEEP", "0"])
    with pytest.raises(ConfigError, match="CHECKPOINT_KEEP >= 1"):
        assert_and_infer_cfg(cfg)


def _wait_for_a_signal(index, ready_dir):
    with StopSignals(["SIGTERM"]) as stop:
        open(os.path.join(ready_dir, str(index)), "w").close()
        deadline = time.monotonic() + 60
        while stop.received is None and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.leave(stop.received or signal.SIGKILL)


def test_the_launcher_hands_its_signals_to_its_processes_and_exits_as_they_did(tmp_path):
    context = mp.start_processes(_wait_for_a_signal, args=(str(tmp_path),), nprocs=2, join=False,
                                 start_method="fork")

    def signal_the_launcher():  # as SLURM or a user does, once both processes listen
        while len(os.listdir(tmp_path)) < 2:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_the_launcher, daemon=True).start()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as raised:
        join_forwarding_signals(context, ["SIGTERM"])
    assert raised.value.code == 128 + signal.SIGTERM
    assert [p.exitcode for p in context.processes] == [128 + signal.SIGTERM] * 2
    assert signal.getsignal(signal.SIGTERM) is before


def _fail_or_wait(index):
    if index == 1:
        raise ValueError("a real error")
    time.sleep(60)  # stuck in a collective that will never complete


def test_the_launcher_reports_a_failed_process_and_ends_the_others():
    context = mp.start_processes(_fail_or_wait, nprocs=2, join=False, start_method="fork")
    start = time.monotonic()
    with pytest.raises(mp.ProcessRaisedException, match="a real error"):
        join_forwarding_signals(context, ["SIGTERM"])
    assert time.monotonic() - start < 30 and not any(p.is_alive() for p in context.processes)
