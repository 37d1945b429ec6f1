"""Open a dataset file: detect its format, then stream its examples as internal messages.

``open_examples`` reads only the first 64 KiB to decide, then returns an iterator of
``(line, item)`` where ``item`` is a list of messages (a valid example), a ``Problem``
(an invalid one) or ``BLANK`` (a blank line, skipped). Whole-file problems (empty, UTF-16,
binary, unknown format, CSV columns) are set on ``Detection.problem`` and nothing is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

from app.datasets import json_array, table
from datacheck import read
from datacheck.problems import Problem
from app.datasets.formats import classify_keys, normalize_object
from datacheck.read import (
    DEFAULT_MAX_LINE_BYTES,
    LONG_LINE,
    _Marker,
    is_blank,
    iter_chunks,
    iter_line_batches,
    read_head,
    sniff_encoding,
    strip_bom,
)
from datacheck.types import ColumnMapping, DatasetFormat, Message

BLANK = _Marker("BLANK")
Item = list[Message] | Problem | _Marker
Examples = Iterator[tuple[int, Item]]

_EXPECTED = (
    'one of: {"messages": [...]} (chat), {"prompt", "completion"}, {"input", "output"} '
    'or {"instruction", "input", "output"} (Alpaca)'
)


@dataclass
class Detection:
    """What the file is. ``format`` may be filled in while reading (JSON arrays, or JSONL
    whose first line is longer than the 64 KiB sample)."""

    container: str | None = None  # "jsonl" | "json_array" | "table"
    format: DatasetFormat | None = None
    delimiter: str | None = None
    columns: list[str] | None = None
    mapping: ColumnMapping | None = None
    mapping_proposed: bool = False
    problem: Problem | None = None


def open_examples(
    f: BinaryIO,
    *,
    filename: str | None = None,
    mapping: ColumnMapping | dict | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> tuple[Detection, Examples]:
    """Detect the format of ``f`` (a binary file at its start) and stream its examples."""
    head = read_head(f)
    detection = Detection()
    problem = _file_problem(head)
    if problem:
        detection.problem = problem
        return detection, iter(())
    head = strip_bom(head)
    first = head.lstrip()[:1]
    if first == b"[" and not _jsonl_of_lists(head):
        detection.container = "json_array"
        return detection, json_array.examples(iter_chunks(f, head), detection, max_line_bytes)
    if first in (b"{", b"["):
        detection.container = "jsonl"
        _detect_jsonl(head, detection)
        batches = iter_line_batches(f, head, max_line_bytes)
        return detection, jsonl_examples(batches, detection, max_line_bytes)
    mapping = ColumnMapping.model_validate(mapping) if isinstance(mapping, dict) else mapping
    return table.open_table(f, head, detection, filename, mapping, max_line_bytes)


def _file_problem(head: bytes) -> Problem | None:
    if not head.strip():
        if len(head) >= read.HEAD_SIZE:
            return Problem("unknown_format", "The file starts with more than 64 KB of blank "
                           "lines or spaces. Remove them and upload the file again.")
        what = "empty (0 bytes)" if not head else "blank: it holds only spaces or empty lines"
        return Problem("empty_file", f"The file is {what}. Upload a file with one example per line.")
    encoding = sniff_encoding(head)
    if encoding == "utf16":
        return Problem(
            "utf16",
            "The file is UTF-16 (a Unicode encoding some Windows programs use). "
            "Save it as UTF-8 (for example with \"Save as\" > \"UTF-8\") and upload it again.",
        )
    if encoding == "latin1":
        return Problem(
            "not_utf8",
            "The file is not UTF-8 text: it looks saved in a Western European encoding "
            "(Windows-1252 or Latin-1), so accented letters would come out garbled. "
            "Save it as UTF-8 and upload it again.",
        )
    if encoding == "binary":
        return Problem(
            "binary",
            "The file does not look like text: it contains binary data. Upload a JSONL, "
            "JSON or CSV text file (a spreadsheet must first be exported as CSV).",
        )
    return None


def _jsonl_of_lists(head: bytes) -> bool:
    """True when the file is JSON Lines whose lines are lists (not one JSON array)."""
    lines = [x for x in head.split(b"\n")[:3] if not is_blank(x)]
    if len(lines) < 2:
        return False
    try:
        return isinstance(orjson.loads(lines[0]), list) and lines[1].lstrip()[:1] == b"["
    except orjson.JSONDecodeError:
        return False


def _detect_jsonl(head: bytes, detection: Detection) -> None:
    """Vote on the format over the complete lines of the sample."""
    lines = head.split(b"\n")
    if len(head) >= read.HEAD_SIZE:
        lines.pop()  # may be cut in the middle
    lines = [line for line in lines if not is_blank(line)]
    votes: Counter[DatasetFormat] = Counter()
    keys: Counter[str] = Counter()
    parsed = 0
    for line in lines[:200]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        parsed += 1
        fmt = classify_keys(obj)
        if fmt is not None:
            votes[fmt] += 1
        elif isinstance(obj, dict):
            keys.update(obj.keys())
    if votes:
        detection.format = votes.most_common(1)[0][0]
    elif keys:
        common = sorted(keys, key=lambda k: -keys[k])[:8]  # ties keep the file order
        found = ", ".join(f'"{k}"' for k in common)
        detection.problem = Problem(
            "unknown_format",
            f"The examples have the fields {found}, which match no format we know. "
            f"Each line must be {_EXPECTED}.",
        )
    elif not parsed and len(lines) > 2:  # several lines, none of them JSON: not JSON Lines
        detection.problem = Problem(
            "unknown_format",
            "The file starts like JSON, but its first lines are not complete JSON objects. "
            "Each example must be one JSON object on its own line (JSON Lines), "
            "or all examples must be in one JSON array [...].",
        )


def jsonl_examples(batches, detection: Detection, max_line_bytes: int) -> Examples:
    """The examples of a JSON Lines file, one per line."""
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    normalize = normalize_object
    line_no = 0
    for batch in batches:
        for line in batch:
            line_no += 1
            try:
                obj = loads(line)
            except (decode_error, TypeError):  # TypeError: the LONG_LINE marker
                yield line_no, _bad_line(line, max_line_bytes)
                continue
            fmt = detection.format
            if fmt is None:  # the first line was longer than the sample
                fmt = detection.format = classify_keys(obj)
                if fmt is None:
                    yield line_no, _unrecognised(obj)
                    continue
            try:
                yield line_no, normalize(fmt, obj)
            except Problem as problem:
                yield line_no, problem


def _unrecognised(obj: object) -> Problem:
    if not isinstance(obj, dict):
        return normalize_error(obj)
    found = ", ".join(f'"{k}"' for k in list(obj)[:8]) or "none"
    return Problem(
        "unknown_format",
        f"The fields of this example ({found}) match no format we know. "
        f"Each line must be {_EXPECTED}.",
    )


def normalize_error(obj: object) -> Problem:
    """The problem normalize_object reports for a value that is not an object."""
    try:
        normalize_object(DatasetFormat.CHAT, obj)
    except Problem as problem:
        return problem
    raise AssertionError("only for values that are not objects")


def _bad_line(line: bytes | _Marker, max_line_bytes: int) -> Problem | _Marker:
    if line is LONG_LINE:
        return Problem(
            "line_too_long",
            f"The line is longer than {max_line_bytes:,} bytes, the most one example may "
            "take; it was skipped. Shorten this example or split it into several.",
        )
    if is_blank(line):
        return BLANK
    return json_problem(line)


def json_problem(line: bytes) -> Problem:
    """Explain why a line that orjson refused is not a JSON example."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        return Problem(
            "not_utf8",
            f"The line is not valid UTF-8 text (the byte 0x{line[e.start]:02X} at position "
            f"{e.start + 1} cannot be read). Save the file with the UTF-8 encoding.",
        )
    text = line.strip()
    hint = _json_hint(text)
    if hint:
        return Problem("bad_json", hint)
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as e:
        return Problem(
            "bad_json",
            f"The line is not valid JSON ({e.msg} at character {e.pos + 1}). "
            "Each line must be one complete JSON object.",
        )
    return Problem("bad_json", "The line is not valid JSON.")


def _json_hint(text: bytes) -> str | None:
    """A plain explanation for the usual mistakes, when one fits."""
    if text.endswith(b",") and _parses(text[:-1]):
        return ("The line ends with a comma. In JSON Lines each line is one complete "
                "object, with no comma between lines.")
    if text.startswith(b"{'") or b"': '" in text[:200]:
        return ("The line uses single quotes ('...'); JSON needs double quotes (\"...\") "
                "around names and texts.")
    fragment = text in (b"[", b"]", b"{", b"}", b"},", b"],")
    if fragment or (text.startswith(b"{") and not text.endswith(b"}")):
        return ("The line is not a complete JSON object: one example seems to be spread "
                "over several lines. Each example must be on a single line.")
    return None


def _parses(text: bytes) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
