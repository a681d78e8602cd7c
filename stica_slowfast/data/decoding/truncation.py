"""Truncation check: whether a local MP4/MOV or AVI file is cut short, before FFmpeg sees it.

An MP4/MOV box or AVI chunk that runs past the end of the file makes such a file "truncated"
(:class:`~stica_slowfast.data.decoding.errors.DecodeError` reason). FFmpeg would otherwise decode
what is left and silently lose frames or the whole audio track. Other containers are not checked.
"""

import struct
from typing import Optional

__all__ = ["find_truncation"]

# Top-level ISO BMFF (MP4, MOV, M4A, 3GP) box types a file may start with.
_ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp", b"sidx"}


def _iso_truncation(f, size: int) -> Optional[str]:
    """Walk the top-level boxes of an ISO BMFF file: the first one that runs past ``size`` bytes."""
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        head = f.read(16)
        box_size, box_type = struct.unpack(">I4s", head[:8])
        if not all(32 <= c < 127 for c in box_type):
            return None  # trailing bytes that are not a box: leave them to FFmpeg
        if box_size == 1:  # 64-bit size after the type
            if len(head) < 16:
                return f"the {box_type.decode()!r} box at byte {offset} is cut inside its header"
            box_size = struct.unpack(">Q", head[8:16])[0]
        elif box_size == 0:  # the last box, up to the end of the file
            return None
        if box_size < 8:
            return None  # not a valid box: leave it to FFmpeg
        if offset + box_size > size:
            return (f"the {box_type.decode()!r} box at byte {offset} needs {box_size} bytes, the file "
                    f"ends {size - offset} bytes after its start")
        offset += box_size
    return None


def _riff_truncation(f, size: int) -> Optional[str]:
    """Walk the top-level RIFF chunks of an AVI file (OpenDML adds "RIFF AVIX" chunks)."""
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        if chunk_id != b"RIFF" or chunk_size in (0, 0xFFFFFFFF):
            return None  # junk after the chunks, or a size left unset by a streaming writer
        if offset + 8 + chunk_size > size:
            return (f"the RIFF chunk at byte {offset} needs {8 + chunk_size} bytes, the file ends "
                    f"{size - offset} bytes after its start")
        offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even size
    return None


def find_truncation(local_path: str, size: int) -> Optional[str]:
    """Why a local MP4/MOV or AVI file of ``size`` bytes is cut short (a box or chunk runs past its
    end), else None.

    Other containers are not checked. Reads a few bytes per top-level box or chunk.
    """
    with open(local_path, "rb") as f:
        head = f.read(12)
        if len(head) >= 8 and head[4:8] in _ISO_FIRST_BOXES:
            return _iso_truncation(f, size)
        if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return _riff_truncation(f, size)
    return None
