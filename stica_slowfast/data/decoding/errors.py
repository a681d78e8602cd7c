"""Why a video cannot be decoded: :class:`DecodeError`, and the errors a corrupt file causes mapped to it.

Every failure is a :class:`DecodeError` whose ``reason`` is one of
``stica_slowfast.data.bad_input.SKIP_REASONS``: "missing", "empty" (0 bytes), "truncated" (see
:mod:`~stica_slowfast.data.decoding.truncation`), "no_video", "undecodable" (anything else: not a
media file, corrupt data, no frame); and for what decodes but is wrong (see
:mod:`~stica_slowfast.data.decoding.one_pass`), "corrupt" (concealed damage in a clip's frames, or
frames missing from a damaged sample table) and "non_finite_audio" (NaN or infinite audio samples).
Errors PyAV, numpy or the arithmetic on a broken header raise are mapped to it by
:func:`as_decode_error`.
"""

import contextlib
from typing import Iterator

import av

from stica_slowfast.data.bad_input import reason_index

__all__ = ["DecodeError", "FILE_ERRORS", "as_decode_error"]

# What a corrupt file makes PyAV / FFmpeg, numpy or the arithmetic on its header values raise; each
# means "this file cannot be decoded" and becomes a DecodeError.
FILE_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, ArithmeticError, IndexError, MemoryError)


class DecodeError(RuntimeError):
    """A video cannot be decoded.

    Args:
        message: what failed, naming the file.
        reason: why, one of ``stica_slowfast.data.bad_input.SKIP_REASONS`` ("missing", "empty",
            "truncated", "undecodable", "no_video", "corrupt", "non_finite_audio"; the datasets add
            "no_audio").
    """

    def __init__(self, message: str, reason: str = "undecodable"):
        super().__init__(message)
        reason_index(reason)  # an unknown reason is a bug here, not a bad file
        self.reason = reason

    def __reduce__(self):  # keep the reason through pickling (worker processes)
        return type(self), (str(self), self.reason)


@contextlib.contextmanager
def as_decode_error(path: str) -> Iterator[None]:
    """Re-raise the errors a corrupt file causes (:data:`FILE_ERRORS`) as DecodeError("undecodable")."""
    try:
        yield
    except DecodeError:
        raise
    except FILE_ERRORS as err:
        raise DecodeError(f"error decoding {path}: {type(err).__name__}: {err}") from err
