"""Forking a process that has used PyAV (a DataLoader starting its workers).

FFmpeg's codecs run their own threads (the H.264 decoder's slice threads, x264's lookahead). A PyAV
codec context is often freed by the cyclic garbage collector, not at once: a container and its
streams refer to each other until the container is closed, and a caught exception's traceback keeps
the frames that were decoding, with their streams, alive in a cycle (``pytest.raises`` makes one).
A forked child inherits such garbage but none of its parent's threads; when a collection in the child
frees an inherited codec context, FFmpeg waits for threads that are not there, and the child never
gets past its start (a DataLoader whose first batch never comes).

:func:`guard_forks` makes every later ``fork()`` of the process freeze the collector's objects
(``gc.freeze``) just before it, and unfreeze them in the parent just after: the child's collections
then never visit what it inherited (Python's ``gc`` documentation gives this pattern for fork without
exec; it also spares the child copy-on-write of the parent's pages), and the parent collects its own
garbage as before. It costs no collection at fork time (a full ``gc.collect`` of a training process
takes ~0.1 s, per worker started).
"""

import gc
import os

__all__ = ["guard_forks"]

_guarded = False
_unfreeze_after_fork = False


def _freeze() -> None:
    global _unfreeze_after_fork
    # A process that froze objects itself manages its frozen set: they (and what this adds) stay.
    _unfreeze_after_fork = gc.get_freeze_count() == 0
    gc.freeze()


def _unfreeze() -> None:
    if _unfreeze_after_fork:
        gc.unfreeze()


def guard_forks() -> None:
    """Keep a forked child's garbage collections off the objects it inherited (idempotent)."""
    global _guarded
    if not _guarded:
        os.register_at_fork(before=_freeze, after_in_parent=_unfreeze)
        _guarded = True
