"""Stream the items of one JSON array ``[{...}, {...}]`` without loading the whole file.

Items are decoded one at a time from a text buffer that holds at most one item plus one
chunk. The first recognisable item fixes the format. A broken array cannot be re-synchronised,
so reading stops at the first syntax error (after reporting it with its line).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

from datacheck.detect import Detection, classify_keys
from datacheck.parse.items import Examples
from datacheck.parse.messages import normalize_object
from datacheck.problems import Problem, too_deep

_SPACE = re.compile(r"[ \t\n\r]*")


class _Buffer:
    """Decoded text with a read position and the line number of any position."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self.eof = False
        self._line = 1  # line number at self._counted
        self._counted = 0

    def more(self) -> bool:
        """Append the next chunk (dropping text already read); False at the end of the file."""
        if self.eof:
            return False
        chunk = next(self.chunks, None)
        try:
            added = self.decoder.decode(chunk or b"", final=chunk is None)
        except UnicodeDecodeError as e:
            line = self.line_at(len(self.text)) + (chunk or b"")[: e.start].count(b"\n")
            raise Problem("not_utf8", "The file is not valid UTF-8 text from this line on. "
                          "Save the file with the UTF-8 encoding.", line) from None
        self.eof = chunk is None
        self.line_at(self.pos)
        self.text = self.text[self.pos :] + added
        self._counted -= self.pos
        self.pos = 0
        return not self.eof or bool(added)

    def line_at(self, pos: int) -> int:
        """Line number of ``pos`` (positions only move forward)."""
        self._line += self.text.count("\n", self._counted, pos)
        self._counted = pos
        return self._line

    def next_char(self) -> str | None:
        """Skip whitespace; the next character (not consumed), or None at the end."""
        while True:
            self.pos = _SPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return None


def examples(chunks: Iterator[bytes], detection: Detection, max_item_bytes: int) -> Examples:
    """The examples of a JSON array file, each with the line where its item starts."""
    buf = _Buffer(chunks)
    try:
        yield from _items(buf, detection, max_item_bytes)
    except Problem as problem:
        yield problem.line or buf.line_at(buf.pos), problem


def _items(buf: _Buffer, detection: Detection, max_item_bytes: int) -> Examples:
    buf.next_char()
    buf.pos += 1  # the "[" seen by the caller
    if buf.next_char() == "]":
        buf.pos += 1
        _expect_end(buf)
        return
    index = 0
    while True:
        index += 1
        buf.next_char()
        line = buf.line_at(buf.pos)
        obj = _decode(buf, index, max_item_bytes)
        yield line, obj if isinstance(obj, Problem) else _example(obj, detection, index)
        char = buf.next_char()
        if char == ",":
            buf.pos += 1
            continue
        if char == "]":
            buf.pos += 1
            _expect_end(buf)
            return
        what = "the file ends" if char is None else f'"{char}" comes'
        raise Problem("bad_json", f"After item {index} of the JSON array, {what} where a comma "
                      "or the closing ] was expected. We stopped reading the file there.")


def _decode(buf: _Buffer, index: int, max_item_bytes: int) -> object | Problem:
    """The next item, or the Problem of an item that was read whole but is too long; a
    Problem is raised when the array cannot be read past this item.

    The limits of Python's reader are met here, where they happen: nesting deeper than its
    recursion limit (RecursionError) and integers of more than 4,300 digits (ValueError).
    """
    decode = json.JSONDecoder().raw_decode
    while True:
        try:
            obj, end = decode(buf.text, buf.pos)
        except RecursionError:
            raise too_deep(f"Item {index} of the JSON array") from None
        except json.JSONDecodeError as e:
            if len(buf.text) - buf.pos > max_item_bytes:
                raise _too_long(index, max_item_bytes, "We stopped reading the file there.") \
                    from None
            offset = e.pos - buf.pos  # more() moves the text; the item stays at buf.pos
            nul = buf.text[e.pos : e.pos + 1] == "\0"
            if buf.more():
                continue
            line = buf.line_at(buf.pos + offset)
            if nul:
                raise Problem("nul_byte", f"Item {index} of the JSON array contains a NUL byte "
                              "(an invisible character of code 0). Remove it. We stopped reading "
                              "the file there.", line) from None
            raise Problem("bad_json", f"Item {index} of the JSON array is not valid JSON "
                          f"({e.msg}). We stopped reading the file there.", line) from None
        except ValueError as e:  # int(): Python's limit on the digits of one number
            raise Problem("bad_json", f"Item {index} of the JSON array holds a number too long "
                          f"to read ({str(e).split(';')[0]}). Write it as text, or remove it. "
                          "We stopped reading the file there.") from None
        if end == len(buf.text) and buf.more():  # a number may go on in the next chunk
            continue
        start, buf.pos = buf.pos, end
        if end - start > max_item_bytes // 4 and _utf8_size(buf.text, start, end) > max_item_bytes:
            return _too_long(index, max_item_bytes, "It was skipped.")
        return obj


def _utf8_size(text: str, start: int, end: int) -> int:
    return len(text[start:end].encode("utf-8", "surrogatepass"))


def _too_long(index: int, max_item_bytes: int, then: str) -> Problem:
    return Problem("line_too_long", f"Item {index} of the JSON array is longer than "
                   f"{max_item_bytes:,} bytes, the most one example may take. Shorten it or "
                   f"split it into several. {then}")


def _example(obj: object, detection: Detection, index: int):
    """The item's messages or Problem; the first recognisable item fixes the format."""
    if detection.format is None:
        detection.format = classify_keys(obj)
        if detection.format is None:
            found = ", ".join(f'"{k}"' for k in list(obj)[:8]) if isinstance(obj, dict) else ""
            what = f"has the fields {found}" if found else "is not a JSON object"
            return Problem("unknown_format", f"Item {index} of the JSON array {what}, which "
                           "matches no format we know (chat, prompt/completion, input/output "
                           "or Alpaca).")
    try:
        return normalize_object(detection.format, obj)
    except Problem as problem:
        return problem


def _expect_end(buf: _Buffer) -> None:
    if buf.next_char() is not None:
        raise Problem("bad_json", "There is more text after the end of the JSON array (the "
                      "closing ]). We stopped reading the file there.")
