"""File I/O goes through iopath's PathManager, as in PySlowFast, so any registered backend works."""

from iopath.common.file_io import g_pathmgr as PathManager

__all__ = ["PathManager"]
