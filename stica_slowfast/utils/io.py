"""File I/O goes through iopath's PathManager, as in PySlowFast, so any registered backend works."""

import contextlib
import logging
import os
import re
import uuid
from typing import IO, Iterator, Optional

from iopath.common.file_io import g_pathmgr as PathManager

__all__ = ["PathManager", "atomic_open", "local_path"]

logger = logging.getLogger(__name__)


def local_path(path: str) -> Optional[str]:
    """The file-system path of a plain or ``file://`` path, None for remote backends."""
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) else path


def _replace(src: str, dst: str) -> None:
    """Rename ``src`` over ``dst``: atomic on a local file system."""
    local_src, local_dst = local_path(src), local_path(dst)
    if local_src is not None and local_dst is not None:
        os.replace(local_src, local_dst)
        with contextlib.suppress(OSError):  # persist the directory entry too
            fd = os.open(os.path.dirname(local_dst) or ".", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return
    # Remote backends: iopath's mv refuses to overwrite and reports failure by returning False.
    if PathManager.exists(dst):
        PathManager.rm(dst)
    if not PathManager.mv(src, dst):
        raise OSError(f"could not move {src} to {dst}")


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing so that readers see either the old or the complete new file.

    Writes go to a hidden temporary file in the same directory (so the rename never crosses file
    systems), which is flushed to disk and renamed over ``path`` when the block exits cleanly; on any
    error, KeyboardInterrupt included, the temporary file is removed and ``path`` is untouched.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with PathManager.open(tmp, mode) as f:
            yield f
            f.flush()
            with contextlib.suppress(OSError, ValueError, AttributeError):  # not a real file
                os.fsync(f.fileno())
        _replace(tmp, path)
    except BaseException:
        try:
            if PathManager.exists(tmp):
                PathManager.rm(tmp)
        except Exception:  # cleanup must not mask the original error
            logger.warning("could not remove temporary file %s", tmp)
        raise
