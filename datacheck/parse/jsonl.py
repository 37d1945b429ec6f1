"""JSON Lines: one example per line, each a JSON object in the format the file was
detected as (or, when the first line was longer than the sample, as its first line says)."""

from __future__ import annotations

import codecs
from collections.abc import Iterator

import orjson

from datacheck.detect import EXPECTED, Detection, classify_keys
from datacheck.parse.items import BLANK, Examples
from datacheck.parse.messages import normalize_object
from datacheck.problems import Problem, nul_byte, too_deep
from datacheck.read import LONG_LINE, Marker, is_blank
from datacheck.types import DatasetFormat


def examples(batches: Iterator[list], detection: Detection, max_line_bytes: int) -> Examples:
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
        f"Each line must be {EXPECTED}.",
    )


def normalize_error(obj: object) -> Problem:
    """The problem normalize_object reports for a value that is not an object."""
    try:
        normalize_object(DatasetFormat.CHAT, obj)
    except Problem as problem:
        return problem
    raise AssertionError("only for values that are not objects")


def _bad_line(line: bytes | Marker, max_line_bytes: int) -> Problem | Marker:
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
    if (nul := line.find(b"\0")) >= 0:
        return nul_byte(nul + 1)
    text = line.strip()
    try:
        orjson.loads(text)
        error = None
    except orjson.JSONDecodeError as e:
        error = e
    if error is not None and error.msg.startswith("depth limit"):
        return too_deep("The line")
    hint = _json_hint(text)
    if hint:
        return Problem("bad_json", hint)
    if error is not None and error.msg.startswith("number"):
        return Problem("bad_json", f"The line holds a number too large to read ({error.msg} at "
                       f"character {error.pos + 1}). Write it as text (in quotes) or remove it.")
    if error is not None:
        return Problem(
            "bad_json",
            f"The line is not valid JSON ({error.msg} at character {error.pos + 1}). "
            "Each line must be one complete JSON object.",
        )
    return Problem("bad_json", "The line is not valid JSON.")


def _json_hint(text: bytes) -> str | None:
    """A plain explanation for the usual mistakes, when one fits."""
    if text.startswith(codecs.BOM_UTF8):
        return ("The line starts with an invisible byte-order mark (BOM), usually left where "
                "files were joined together. Remove it, or save the file as UTF-8 without BOM.")
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
