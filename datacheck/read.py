"""Streaming byte-level reading of uploaded dataset files.

Everything here reads a binary file object in fixed-size chunks, so memory stays flat
whatever the file size: at most one chunk plus one line (capped at ``max_line_bytes``)
is held at a time. A line longer than the cap is skipped without being kept in memory.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import BinaryIO

CHUNK_SIZE = 4 * 1024 * 1024
HEAD_SIZE = 64 * 1024
DEFAULT_MAX_LINE_BYTES = 1024 * 1024


class Marker:
    """A sentinel that prints its name (used in line batches instead of the line's bytes)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# Stands in, in a line batch, for a line longer than max_line_bytes (the line was dropped).
LONG_LINE = Marker("LONG_LINE")


def read_head(f: BinaryIO, size: int | None = None) -> bytes:
    """Read up to ``size`` bytes (fewer only at the end of the file)."""
    size = size or HEAD_SIZE
    parts: list[bytes] = []
    got = 0
    while got < size:
        part = f.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def iter_chunks(f: BinaryIO, head: bytes = b"", chunk_size: int | None = None) -> Iterator[bytes]:
    """Yield ``head`` (bytes already read from ``f``) and then the rest of ``f`` in chunks."""
    chunk_size = chunk_size or CHUNK_SIZE
    if head:
        yield head
    while chunk := f.read(chunk_size):
        yield chunk


def iter_line_batches(
    f: BinaryIO,
    head: bytes = b"",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    chunk_size: int | None = None,
) -> Iterator[list[bytes | Marker]]:
    """Yield the file's lines in batches (one batch per chunk read), without line endings.

    Line numbers are implicit: the n-th item over all batches is line n (1-based). A line
    longer than ``max_line_bytes`` appears as ``LONG_LINE``; its bytes are never held
    whole. A final line without a newline is included; the empty piece after a final
    newline is not (it is no line).
    """
    carry = b""
    skipping = False  # inside a line already known to be too long
    for chunk in iter_chunks(f, head, chunk_size):
        if skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                continue
            chunk = chunk[cut + 1 :]
            skipping = False
            batch: list[bytes | Marker] = [LONG_LINE]
        else:
            batch = []
        lines = (carry + chunk).split(b"\n") if carry else chunk.split(b"\n")
        carry = lines.pop()
        if lines and max(map(len, lines)) > max_line_bytes:
            lines = [LONG_LINE if len(x) > max_line_bytes else x for x in lines]
        batch.extend(lines)
        if len(carry) > max_line_bytes:
            carry = b""
            skipping = True
        if batch:
            yield batch
    if skipping:
        yield [LONG_LINE]
    elif carry:
        yield [LONG_LINE if len(carry) > max_line_bytes else carry]


def sniff_encoding(head: bytes) -> str | None:
    """Name the encoding problem of a file from its first bytes, or None when it may be UTF-8.

    Returns "utf16" (a UTF-16/32 byte-order mark, or the NUL-every-other-byte pattern of
    UTF-16 text without one), "binary" (NULs that are not a few stray ones in UTF-8 text, or
    many control bytes) or "latin1" (text with
    accented letters, none of them in UTF-8: Windows-1252/Latin-1). A file that is UTF-8
    with a few bad lines gets None: those lines are reported one by one.
    """
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf16"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf16"
    sample = head[:4096]
    nuls = sample.count(0)
    if nuls and not _text_with_stray_nuls(sample, nuls):
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        if max(even, odd) > len(sample) // 4 and min(even, odd) < max(even, odd) // 8 + 1:
            return "utf16"
        return "binary"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample)  # a cut last character is fine
        return None
    except UnicodeDecodeError:
        pass
    as_8bit = sample.decode("cp1252", errors="replace")
    controls = sum(1 for ch in as_8bit if ch < " " and ch not in "\t\n\r\f")
    if (controls + as_8bit.count("\ufffd") + as_8bit.count("\x7f")) > len(sample) * 0.05:
        return "binary"
    as_utf8 = sample.decode("utf-8", errors="replace")
    valid_accents = sum(1 for ch in as_utf8 if ch > "\x7f" and ch != "\ufffd")
    return None if valid_accents else "latin1"


def _text_with_stray_nuls(sample: bytes, nuls: int) -> bool:
    """True for UTF-8 text with a few NUL bytes and no other control byte: a text file with a
    stray NUL (reported on its line by the parsers), not a binary file."""
    if nuls > 8:
        return False
    text = sample.replace(b"\0", b"")
    if any(b < 32 and b not in (9, 10, 12, 13) for b in text):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(text)
    except UnicodeDecodeError:
        return False
    return True


def strip_bom(head: bytes) -> bytes:
    """Drop a UTF-8 byte-order mark (Excel writes one in CSV files)."""
    return head[3:] if head.startswith(codecs.BOM_UTF8) else head


def is_blank(line: bytes) -> bool:
    """True for a 0-byte line or one of only spaces, tabs and a carriage return."""
    return not line or line.isspace()
