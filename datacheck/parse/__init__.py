"""Stage 3 of the dataset checks: a file's examples as internal messages, streamed.

``open_examples`` reads only the first 64 KiB to detect the format (``datacheck.detect``),
then hands the file to the parser of its container: ``jsonl``, ``json_array`` or ``table``.
Each turns an example into checked messages with ``messages`` and yields ``(line, item)``
(see ``items``). Whole-file problems are set on ``Detection.problem`` and nothing is read.
"""

from __future__ import annotations

from typing import BinaryIO

from datacheck.detect import Detection, detect, detect_table
from datacheck.parse import json_array, jsonl, table
from datacheck.parse.items import Examples
from datacheck.read import (
    DEFAULT_MAX_LINE_BYTES,
    iter_chunks,
    iter_line_batches,
    read_head,
    strip_bom,
)
from datacheck.types import ColumnMapping


def open_examples(
    f: BinaryIO,
    *,
    filename: str | None = None,
    mapping: ColumnMapping | dict | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> tuple[Detection, Examples]:
    """Detect the format of ``f`` (a binary file at its start) and stream its examples."""
    head = read_head(f)
    detection = detect(head)
    if detection.problem and detection.container is None:
        return detection, iter(())
    head = strip_bom(head)
    if detection.container == "json_array":
        return detection, json_array.examples(iter_chunks(f, head), detection, max_line_bytes)
    if detection.container == "jsonl":
        batches = iter_line_batches(f, head, max_line_bytes)
        return detection, jsonl.examples(batches, detection, max_line_bytes)
    mapping = ColumnMapping.model_validate(mapping) if isinstance(mapping, dict) else mapping
    detect_table(head, filename, detection)
    if detection.problem:
        return detection, iter(())
    return table.open_table(f, head, detection, mapping, max_line_bytes)
