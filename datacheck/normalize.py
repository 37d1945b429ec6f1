"""Write the internal record form of a dataset, one JSON object per line, streamed: the
parse stage's examples as they are, stopping at the first problem (no validation pass)."""

from __future__ import annotations

from typing import BinaryIO

import orjson

from datacheck.parse import open_examples
from datacheck.parse.items import BLANK
from datacheck.problems import Problem
from datacheck.read import DEFAULT_MAX_LINE_BYTES
from datacheck.types import ColumnMapping


class InvalidDatasetError(ValueError):
    """The source has a problem (validate it first to get the full report)."""

    def __init__(self, problem: Problem, line: int | None) -> None:
        where = f"Line {line}: " if line is not None else ""
        super().__init__(where + problem.reason)
        self.problem = problem
        self.line = line


def write_normalized(
    source: BinaryIO,
    out: BinaryIO,
    *,
    filename: str | None = None,
    mapping: ColumnMapping | dict | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> int:
    """Convert every example of ``source`` to ``{"messages": [...]}`` lines in ``out``.

    Returns the number of records written. Blank lines are skipped; the first problem
    raises ``InvalidDatasetError`` (``out`` then holds a partial result to discard).
    """
    detection, items = open_examples(source, filename=filename, mapping=mapping,
                                     max_line_bytes=max_line_bytes)
    if detection.problem:
        raise InvalidDatasetError(detection.problem, detection.problem.line)
    written = 0
    for line, item in items:
        if type(item) is list:
            out.write(orjson.dumps({"messages": item}) + b"\n")
            written += 1
        elif type(item) is dict:  # a conversation with tools: its whole record
            out.write(orjson.dumps(item) + b"\n")
            written += 1
        elif item is not BLANK:
            raise InvalidDatasetError(item, line)
    return written
