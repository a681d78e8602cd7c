"""Text files as people write them: the encoding a byte-order mark announces, bytes that do not
decode, and files that are not text at all.

Split files and YAML configs are written by hand, by spreadsheets, by PowerShell (UTF-16 with a BOM)
and by Excel (UTF-8 with a BOM); some arrive gzip-compressed, and sometimes a video is passed by
mistake. Readers decode with :func:`decode_text`, whose text marks each undecodable byte so that
only the lines holding one need to be rejected (:func:`undecodable`), and call
:func:`looks_binary` first to refuse, in one line, a file that is not text.
"""

import codecs
import re
from typing import List, Optional, Tuple

__all__ = ["decode_text", "looks_binary", "split_lines", "undecodable"]

# Byte-order marks, longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
# Leading bytes of the files most often passed where text is expected.
_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed data (decompress it first, e.g. with gunzip)"),
    (b"PK\x03\x04", "a zip archive (extract it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (decompress it first, e.g. with unxz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it first, e.g. with unzstd)"),
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)
# Undecodable byte b becomes U+DC00 + b, a lone surrogate no strict decoder produces (like Python's
# "surrogateescape", which UTF-16/32 decoders refuse, and which leaves bytes < 0x80 unmarked).
_ERRORS = "stica_slowfast.mark_bytes"
_MARK = re.compile("[\udc00-\udcff]+")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # Python's universal newlines (not str.splitlines' \x0c, \u2028, ...)
_SNIFF = 4096  # bytes looked at to tell binary data


def _mark_bytes(err: UnicodeError) -> Tuple[str, int]:
    """Decoding error handler: each undecodable byte b as the character U+DC00 + b."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return "".join(chr(0xDC00 + b) for b in err.object[err.start:err.end]), err.end


codecs.register_error(_ERRORS, _mark_bytes)


def looks_binary(data: bytes) -> Optional[str]:
    """What the file starting with ``data`` looks like when it is not text (None when it may be).

    Known signatures (compressed archives, videos, images) and, without a byte-order mark, a head
    with many NUL bytes (binary data, or UTF-16 written without a BOM) are not text. A few NUL bytes
    are left to the line that holds them.
    """
    if any(data.startswith(bom) for bom, _, _ in _BOMS):
        return None
    for magic, what in _SIGNATURES:
        if data.startswith(magic):
            return what
    # Signatures of printable bytes need more than their first bytes to be told from text.
    if data[4:8] == b"ftyp":
        return "an MP4/MOV video"
    if data[:4] == b"RIFF" and data[8:12] in (b"AVI ", b"WAVE"):
        return "an AVI video" if data[8:12] == b"AVI " else "a WAV audio file"
    if data[:3] == b"BZh" and data[4:10] == b"1AY&SY":
        return "bzip2-compressed data (decompress it first, e.g. with bunzip2)"
    head = data[:_SNIFF]
    nuls = head.count(0)
    if nuls >= 2 and nuls * 8 >= len(head):
        # ASCII text in UTF-16: every second byte is NUL (the odd ones in LE, the even ones in BE).
        if max(head[0::2].count(0), head[1::2].count(0)) * 4 >= len(head):
            return f"UTF-16 text without a byte-order mark ({nuls} of its first {len(head)} bytes are NUL)"
        return f"binary data ({nuls} of its first {len(head)} bytes are NUL)"
    return None


def decode_text(data: bytes) -> Tuple[str, str]:
    """``data`` as text, and the name of its encoding.

    A byte-order mark selects UTF-8, UTF-16 or UTF-32 (and is dropped); without one the text is
    UTF-8. Bytes that do not decode are kept as marks (see :func:`undecodable`), so one bad
    byte spoils one line, not the file.
    """
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(codec, _ERRORS), name
    return data.decode("utf-8", _ERRORS), "UTF-8"


def split_lines(text: str) -> List[str]:
    """Lines of ``text`` split at ``\\n``, ``\\r\\n`` or ``\\r``, as Python reads text files."""
    return _NEWLINE.split(text)


def undecodable(line: str, encoding: str) -> Optional[str]:
    """``"byte 0xe9 at column 4 is not valid UTF-8"`` for the first run of undecodable bytes in a
    line of :func:`decode_text` (columns count characters, from 1); None when every byte decoded."""
    match = _MARK.search(line)
    if match is None:
        return None
    codes = " ".join(f"0x{ord(c) - 0xDC00:02x}" for c in match.group())
    many = len(match.group()) > 1
    return (f"byte{'s' if many else ''} {codes} at column {match.start() + 1} "
            f"{'are' if many else 'is'} not valid {encoding}")
