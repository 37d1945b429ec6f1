"""Streamed line reading and encoding sniffing."""

from __future__ import annotations

import io

from datacheck.read import LONG_LINE, iter_line_batches, sniff_encoding


def lines(data: bytes, chunk: int, limit: int = 10) -> list:
    return [x for batch in iter_line_batches(io.BytesIO(data), max_line_bytes=limit, chunk_size=chunk)
            for x in batch]


def test_lines_are_the_same_whatever_the_chunk_size():
    data = b"a\nbb\n\nccc\r\ndddd"
    for chunk in range(1, 20):
        assert lines(data, chunk) == [b"a", b"bb", b"", b"ccc\r", b"dddd"]
    assert lines(b"a\n", 1) == [b"a"]


def test_long_lines_are_replaced_in_place_whatever_the_chunk_size():
    data = b"ok\n" + b"x" * 25 + b"\nfine\n" + b"y" * 11
    for chunk in (1, 3, 7, 64):
        assert lines(data, chunk) == [b"ok", LONG_LINE, b"fine", LONG_LINE]


def test_sniff_encoding():
    assert sniff_encoding("hello".encode("utf-16")) == "utf16"
    assert sniff_encoding('{"a": "bonjour à tous"}\n'.encode("utf-16-le")) == "utf16"
    assert sniff_encoding(b"plain \xc3\xa9 text\n") is None
    assert sniff_encoding("un café très français, déjà vu".encode("latin-1")) == "latin1"
    mostly_utf8 = "déjà vu\n".encode() + "café\n".encode("latin-1")
    assert sniff_encoding(mostly_utf8) is None  # the bad line is reported on its own
    assert sniff_encoding(b"\x00\x01\x02binary") == "binary"
