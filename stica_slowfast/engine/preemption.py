"""Leaving a training run cleanly on a scheduler's signal (preemption, a time limit).

SLURM sends SIGTERM to every task of a job it preempts (then SIGKILL after its grace time), and the
signal asked for with ``--signal=USR1@90`` before a time limit; submitit asks for SIGUSR2
(``SUBMITIT_PREEMPT_SIGNAL``). While :class:`StopSignals` is active those signals (``TRAIN.PREEMPT_SIGNALS``)
are recorded instead of ending the process: the training finishes the step it is in, every process
learns of the signal in the step's all-reduce (one signalled process is enough), process 0 writes a
checkpoint, and every process leaves with :class:`Preempted`. Its exit status is 128 + the signal's
number, the status the signal would have given (143 for SIGTERM): a job script or scheduler that
requeues on it requeues, and the same command then resumes from that checkpoint (``TRAIN.AUTO_RESUME``).

A handler installed before (submitit's, which requeues the job) is called once the checkpoint is on
disk, so it requeues a job that will resume from that checkpoint. A signal ignored before (``nohup``)
stays ignored.
"""

import logging
import signal
import threading
from typing import Callable, Dict, Optional, Sequence, Union

from stica_slowfast.utils.signals import signal_number

__all__ = ["Preempted", "StopSignals", "signal_number"]

logger = logging.getLogger(__name__)

_Handler = Union[Callable, int, None]


class Preempted(SystemExit):
    """Training stopped at a signal after writing a checkpoint; exit status 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name} after writing a checkpoint"


class StopSignals:
    """Record the given signals while active (a context manager); see the module docstring.

    Signals can only be handled in the main thread: elsewhere (training started from a thread) the
    signals keep their handlers, with a warning.

    Args:
        names: the signals to record (``TRAIN.PREEMPT_SIGNALS``).
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.received: Optional[int] = None
        self._numbers = [signal_number(name) for name in names]
        self._previous: Dict[int, _Handler] = {}

    def __enter__(self) -> "StopSignals":
        if self._numbers and threading.current_thread() is not threading.main_thread():
            logger.warning("Training runs outside the main thread: %s end it at once, without a checkpoint",
                           ", ".join(signal.Signals(n).name for n in self._numbers))
            return self
        for signum in self._numbers:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def _record(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum

    def restore(self) -> None:
        """Put the handlers that were there before back."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def leave(self, signum: int) -> None:
        """After the checkpoint: call the handler that was there before for ``signum`` (if it was a
        Python function), then raise :class:`Preempted`."""
        previous = self._previous.get(signum)
        self.restore()
        logger.warning("Stopping at %s: checkpoint written", signal.Signals(signum).name)
        if callable(previous):
            previous(signum, None)
        raise Preempted(signum)
