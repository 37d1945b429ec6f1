"""Preview a normalised dataset (one ``{"messages": [...]}`` per line, or for preference
pairs one ``{"prompt", "chosen", "rejected"}``): rows by position, and a plain substring
search with paging. Both stream the file; nothing is indexed. A pair's row holds the prompt
as ``messages`` and the two answers as ``chosen`` and ``rejected``, to show side by side."""

from __future__ import annotations

from typing import Any, BinaryIO

import orjson
from pydantic import BaseModel

from datacheck.read import iter_chunks, iter_line_batches

_NO_LIMIT = 1 << 62


class Row(BaseModel):
    index: int  # 0-based position in the normalised file
    messages: list[dict[str, Any]]
    chosen: str | None = None  # preference pairs: the better answer
    rejected: str | None = None  # and the worse one


def _row(index: int, line: bytes) -> Row:
    record = orjson.loads(line)
    if "chosen" in record:
        return Row(index=index, messages=record["prompt"], chosen=record["chosen"][-1]["content"],
                   rejected=record["rejected"][-1]["content"])
    return Row(index=index, messages=record["messages"])


def _texts(row: Row) -> list[str]:
    return [m["content"] for m in row.messages] + [t for t in (row.chosen, row.rejected) if t is not None]


class SearchPage(BaseModel):
    query: str
    page: int
    page_size: int
    rows: list[Row]
    has_more: bool  # another page exists (the search stops once it knows)


def _skip_lines(f: BinaryIO, count: int) -> bytes:
    """Advance past ``count`` lines by counting newlines per chunk; returns the leftover."""
    for chunk in iter_chunks(f):
        found = chunk.count(b"\n")
        if found < count:
            count -= found
            continue
        cut = -1
        for _ in range(count):
            cut = chunk.index(b"\n", cut + 1)
        return chunk[cut + 1 :]
    return b""


def read_rows(f: BinaryIO, start: int, count: int) -> list[Row]:
    """Rows ``start`` to ``start + count - 1`` (0-based) of a normalised file."""
    if count <= 0 or start < 0:
        return []
    head = _skip_lines(f, start) if start else b""
    rows: list[Row] = []
    for batch in iter_line_batches(f, head, max_line_bytes=_NO_LIMIT):
        for line in batch:
            if line:
                rows.append(_row(start + len(rows), line))
            if len(rows) == count:
                return rows
    return rows


def search_rows(f: BinaryIO, query: str, *, page: int = 0, page_size: int = 20) -> SearchPage:
    """Rows whose message contents contain ``query`` (ignoring case), page by page.

    An empty query matches every row. The scan stops as soon as the page is full and
    one more match shows that another page exists.
    """
    needle = query.lower()
    skip, rows = page * page_size, []
    prefilter = needle.encode() if needle.isascii() and not any(c in needle for c in '"\\') else None
    index = -1
    for batch in iter_line_batches(f, max_line_bytes=_NO_LIMIT):
        for line in batch:
            if not line:
                continue
            index += 1
            if prefilter is not None and prefilter not in line.lower():
                continue
            row = _row(index, line)
            if needle and not any(needle in text.lower() for text in _texts(row)):
                continue
            if skip:
                skip -= 1
            elif len(rows) < page_size:
                rows.append(row)
            else:
                return SearchPage(query=query, page=page, page_size=page_size, rows=rows, has_more=True)
    return SearchPage(query=query, page=page, page_size=page_size, rows=rows, has_more=False)
