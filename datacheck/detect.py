"""Stage 2 of the dataset checks: which format a file is, from its first 64 KiB.

``detect`` settles the container (JSON Lines, one JSON array, or a CSV/TSV table, whose
delimiter ``detect_table`` finds) and, for JSON Lines, the format the first lines vote for.
Whole-file problems (empty, UTF-16, binary, unknown format) are set on ``Detection.problem``;
the parsers (``datacheck.parse``) may still fill in the format while reading (JSON arrays,
or JSON Lines whose first line is longer than the sample).
"""

from __future__ import annotations

import codecs
from collections import Counter
from dataclasses import dataclass

import orjson

import datacheck.read as read  # HEAD_SIZE is read at call time (tests patch it)
from datacheck.problems import Problem
from datacheck.read import is_blank, sniff_encoding, strip_bom
from datacheck.types import ColumnMapping, DatasetFormat

EXPECTED = (
    'one of: {"messages": [...]} (chat), {"prompt", "completion"}, {"input", "output"} '
    'or {"instruction", "input", "output"} (Alpaca); for preference pairs {"prompt", "chosen", '
    '"rejected"} or OpenAI\'s {"input", "preferred_output", "non_preferred_output"}'
)
_DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon"}


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


def detect(head: bytes) -> Detection:
    """The container of a file from its first bytes (a BOM included), and for JSON Lines
    its format. Neither JSON nor a problem: ``container`` is None, a table to ``detect_table``."""
    detection = Detection()
    problem = file_problem(head)
    if problem:
        detection.problem = problem
        return detection
    head = strip_bom(head)
    first = head.lstrip()[:1]
    if first == b"[" and not _jsonl_of_lists(head):
        detection.container = "json_array"
    elif first in (b"{", b"["):
        detection.container = "jsonl"
        _detect_jsonl(head, detection)
    return detection


def detect_table(head: bytes, filename: str | None, detection: Detection) -> None:
    """Settle the delimiter of a CSV/TSV table (``head`` without its BOM), or the problem."""
    delimiter = _delimiter(head, filename)
    if delimiter is None:
        detection.problem = Problem(
            "unknown_format",
            "The file is neither JSON Lines, a JSON array, nor a CSV/TSV table. Upload "
            "examples as JSONL (one JSON object per line), JSON or CSV with a header line.")
        return
    detection.container, detection.delimiter = "table", delimiter
    detection.format = DatasetFormat.TSV if delimiter == "\t" else DatasetFormat.CSV


def classify_keys(obj: object) -> DatasetFormat | None:
    """The JSON format an example's keys point to, or None."""
    if not isinstance(obj, dict):
        return None
    if "chosen" in obj and "rejected" in obj:  # preference pairs (datacheck.parse.preference)
        return DatasetFormat.PREFERENCE
    if "preferred_output" in obj and "non_preferred_output" in obj:
        return DatasetFormat.OPENAI_PREFERENCE
    if "messages" in obj:
        return DatasetFormat.CHAT
    if "instruction" in obj and "output" in obj:
        return DatasetFormat.ALPACA
    if "prompt" in obj and "completion" in obj:
        return DatasetFormat.PROMPT_COMPLETION
    if "input" in obj and "output" in obj:
        return DatasetFormat.INPUT_OUTPUT
    return None


def file_problem(head: bytes) -> Problem | None:
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
            "(Windows-1252 or Latin-1), so accented letters would come out garbled "
            "(this is the first line with one). Save it as UTF-8 and upload it again.",
            _first_undecodable_line(head),
        )
    if encoding == "binary":
        return Problem(
            "binary",
            "The file does not look like text: it contains binary data. Upload a JSONL, "
            "JSON or CSV text file (a spreadsheet must first be exported as CSV).",
        )
    return None


def _first_undecodable_line(head: bytes) -> int | None:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError as e:
        return head.count(b"\n", 0, e.start) + 1
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
            f"Each line must be {EXPECTED}.",
        )
    elif not parsed and len(lines) > 2:  # several lines, none of them JSON: not JSON Lines
        detection.problem = Problem(
            "unknown_format",
            "The file starts like JSON, but its first lines are not complete JSON objects. "
            "Each example must be one JSON object on its own line (JSON Lines), "
            "or all examples must be in one JSON array [...].",
        )


def _delimiter(head: bytes, filename: str | None) -> str | None:
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    name = (filename or "").lower()
    if name.endswith((".tsv", ".tab")):
        return "\t"
    counts = {d: first.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.get)
    if counts[best]:
        return best
    return "," if name.endswith(".csv") else None
