"""CSV and TSV files: the header, the column mapping, and the rows (the delimiter is
found by ``datacheck.detect``).

Line numbers are the file's lines: the header is line 1 and a row is reported at the line
where it starts (a quoted value may span several lines). Blank rows are skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import BinaryIO

from datacheck.detect import Detection
from datacheck.parse.items import BLANK, Examples
from datacheck.parse.messages import pair_messages
from datacheck.problems import Problem, nul_byte
from datacheck.read import LONG_LINE, iter_line_batches
from datacheck.types import ColumnMapping

_PROMPT_NAMES = ("prompt", "input", "question", "instruction", "query", "request", "user",
                 "text", "source", "message", "question_text", "customer_message")
_ANSWER_NAMES = ("completion", "output", "answer", "response", "reply", "target", "assistant",
                 "label", "result", "answer_text", "agent_reply", "category")
_SYSTEM_NAMES = ("system", "system_prompt", "system_message", "instructions", "persona")


def open_table(f: BinaryIO, head: bytes, detection: Detection, mapping: ColumnMapping | None,
               max_line_bytes: int) -> tuple[Detection, Examples]:
    """Read the header, settle the mapping (given or proposed) and stream the rows
    (the delimiter is already on ``detection``, see ``datacheck.detect.detect_table``)."""
    rows = _rows(iter_line_batches(f, head, max_line_bytes), detection.delimiter, max_line_bytes)
    header_line, header = next(((n, r) for n, r in rows if r is not BLANK), (1, None))
    if not isinstance(header, list):
        kind, reason = (header.kind, header.reason) if isinstance(header, Problem) else (
            "empty_file", "The file has no rows.")
        detection.problem = Problem(
            kind, f"The first line must hold the column names, and it could not be read. {reason}",
            header_line)
        return detection, iter(())
    detection.columns = [c.strip() for c in header]
    detection.mapping, detection.problem = _settle_mapping(detection, mapping, header_line)
    if detection.problem:
        return detection, iter(())
    return detection, _examples(rows, detection.columns, detection.mapping)


def propose_mapping(columns: list[str]) -> ColumnMapping | None:
    """Guess the prompt, answer and system columns from the header names, or None."""
    lowered = {c.lower().replace(" ", "_").replace("-", "_"): c for c in columns}

    def pick(names: tuple[str, ...], taken: set[str]) -> str | None:
        return next((lowered[n] for n in names if n in lowered and lowered[n] not in taken), None)

    prompt = pick(_PROMPT_NAMES, set())
    completion = pick(_ANSWER_NAMES, {prompt} if prompt else set())
    if prompt is None or completion is None:
        return None
    return ColumnMapping(prompt=prompt, completion=completion,
                         system=pick(_SYSTEM_NAMES, {prompt, completion}))


def _settle_mapping(detection: Detection, mapping: ColumnMapping | None, header_line: int):
    columns = detection.columns
    shown = ", ".join(f'"{c}"' for c in columns)
    if len([c for c in columns if c]) < 2:
        return None, not_examples(columns[0] if columns else "")
    if mapping is None:
        mapping = propose_mapping(columns)
        if mapping is None:
            return None, Problem(
                "mapping_required",
                f"We could not tell which column holds the prompt and which holds the answer "
                f"(the columns are {shown}). Choose them in the column mapping step.")
        detection.mapping_proposed = True
    for role, column in (("prompt", mapping.prompt), ("answer", mapping.completion),
                         ("system message", mapping.system)):
        if column is not None and column not in columns:
            return mapping, Problem(
                "missing_column",
                f'The column "{column}" chosen for the {role} is not in the file. '
                f"The file's columns are {shown}.", header_line)
    return mapping, None


def not_examples(first_line: str) -> Problem:
    """A table of one column: plain text, not examples. No column mapping can help it."""
    start = first_line[:60] + ("..." if len(first_line) > 60 else "")
    return Problem(
        "not_examples",
        f'The file does not look like examples: it was read as a table with a single column '
        f'(its first line is "{start}"). The studio learns from pairs of a question (the prompt) '
        "and the answer the model should give. Upload a CSV with a header line and at least two "
        "columns (for example prompt,completion), or JSON Lines with one example per line, such "
        'as {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": '
        '"..."}]}. Plain text to learn from as a whole is not supported.')


def _examples(rows: Examples, columns: list[str], mapping: ColumnMapping) -> Examples:
    size = len(columns)
    prompt_at, answer_at = columns.index(mapping.prompt), columns.index(mapping.completion)
    system_at = columns.index(mapping.system) if mapping.system else None
    for line, row in rows:
        if type(row) is not list:
            yield line, row
            continue
        if len(row) < size or (len(row) > size and any(v.strip() for v in row[size:])):
            yield line, _count_problem(len(row), size)
            continue
        prompt, answer = row[prompt_at], row[answer_at]
        if not prompt.strip() or not answer.strip():
            column = mapping.prompt if not prompt.strip() else mapping.completion
            what = "prompt" if column == mapping.prompt else "answer"
            yield line, Problem("empty_field",
                                f'The "{column}" column (the {what}) is empty on this row.')
            continue
        system = row[system_at] if system_at is not None and row[system_at].strip() else None
        yield line, pair_messages(prompt, answer, system)


def _count_problem(found: int, size: int) -> Problem:
    if found < size:
        return Problem("wrong_field_count",
                       f"The row has {found} value{'s' * (found != 1)} but the header has {size} "
                       "columns: a value is missing, or the row was cut.")
    return Problem("wrong_field_count",
                   f"The row has {found} values but the header has {size} columns: a text "
                   "probably contains the separator without being in double quotes.")


def _rows(batches: Iterator[list], delimiter: str, max_line_bytes: int) -> Examples:
    """Rows as lists of strings (or a Problem, or BLANK) with their first line number."""
    pending: list[tuple[int, Problem]] = []
    csv.field_size_limit(max(csv.field_size_limit(), max_line_bytes))
    lines = _text_lines(batches, pending, max_line_bytes)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)  # strict: report bad quoting
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if "field limit" in str(e):  # a value past max_line_bytes: where it ends is unknown
                yield start, Problem(
                    "line_too_long", f"A value that starts on this row is longer than "
                    f"{max_line_bytes:,} bytes, the most one example may take, or a double quote "
                    "that opens it is never closed. Shorten the value or close its quote. We "
                    "stopped reading the file there.")
                return
            end = reader.line_num
            yield start, Problem(
                "bad_csv", f"The row could not be read as CSV ({e}). Check its double quotes: a "
                "value that starts with a quote must end with one, and a quote inside a value "
                'is written twice ("").')
            continue
        end = reader.line_num
        if pending and pending[0][0] <= end:
            yield from ((n, p) for n, p in pending if n <= end)
            pending[:] = [(n, p) for n, p in pending if n > end]
            continue
        yield start, (row if any(v.strip() for v in row) else BLANK)


def _text_lines(batches: Iterator[list], pending: list, max_line_bytes: int) -> Iterator[str]:
    """Decode line by line, noting undecodable and over-long lines in ``pending``."""
    number = 0
    for batch in batches:
        for raw in batch:
            number += 1
            if raw is LONG_LINE:
                pending.append((number, Problem(
                    "line_too_long", f"The line is longer than {max_line_bytes:,} bytes, the most "
                    "one example may take; it was skipped.")))
                yield "\n"
                continue
            try:
                text = raw.decode("utf-8")
                if "\0" in text:
                    pending.append((number, nul_byte(text.index("\0") + 1)))
                    text = text.replace("\0", "")
                yield text + "\n"
            except UnicodeDecodeError as e:
                pending.append((number, Problem(
                    "not_utf8", f"The line is not valid UTF-8 text (the byte 0x{raw[e.start]:02X} "
                    f"at position {e.start + 1} cannot be read). Save the file as UTF-8.")))
                yield raw.decode("utf-8", "replace") + "\n"
