"""Preview: rows by position and a paged substring search over a normalised file."""

from __future__ import annotations

import io

import orjson

from datacheck.preview import read_rows, search_rows
from tests.datacheck.factories import chat


def normalized(n: int) -> io.BytesIO:
    rows = [chat(f"Question {i} about {'Parcels' if i % 3 == 0 else 'refunds'}", f"Answer {i} \"quoted\" é")
            for i in range(n)]
    return io.BytesIO(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def test_read_rows_from_any_position(monkeypatch):
    import datacheck.read as reader
    monkeypatch.setattr(reader, "CHUNK_SIZE", 100)  # positions cross many chunks
    rows = read_rows(normalized(50), 47, 10)
    assert [r.index for r in rows] == [47, 48, 49]
    assert rows[0].messages[0]["content"] == "Question 47 about refunds"
    assert read_rows(normalized(50), 0, 2)[1].index == 1
    assert read_rows(normalized(5), 9, 3) == []


def test_search_is_case_insensitive_and_paged():
    first = search_rows(normalized(100), "parcels", page=0, page_size=10)
    assert [r.index for r in first.rows] == list(range(0, 30, 3)) and first.has_more
    last = search_rows(normalized(100), "PARCELS", page=3, page_size=10)
    assert [r.index for r in last.rows] == [90, 93, 96, 99] and not last.has_more
    assert [r.index for r in search_rows(normalized(10), '"quoted" é').rows] == list(range(10))
    assert search_rows(normalized(10), "nothing like this").rows == []
    assert len(search_rows(normalized(30), "", page_size=25).rows) == 25
