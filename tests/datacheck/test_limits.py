"""The limits of the parsers: a file that reaches one gets an error on its line that says what
to fix, never a crash of the check ("unexpected error on our side").

The limits found, and where they are handled (the stage that reads or parses):
- orjson (JSON Lines) refuses more than 1,024 levels of nesting and numbers past a double:
  ``parse/jsonl.json_problem`` names both;
- Python's ``json`` (JSON arrays) recurses: it raises RecursionError at about 1,000 levels less
  the caller's stack, and ValueError for integers of more than 4,300 digits; ``parse/json_array``
  catches both at its one decode call, and measures items that fit in a chunk;
- ``csv`` holds a quoted value until ``field_size_limit``; past it, where the value ends is unknown,
  so ``parse/table`` reports it once and stops (it reported every later line, 20 s for 10 MB);
- ``orjson.dumps`` (not ``json.dumps``, which recursed) writes a wrong value into a message.
"""

from __future__ import annotations

import codecs
import io
import sys
import time

import orjson
import pytest

from datacheck import validate_dataset
from tests.datacheck.factories import chat, chats, errors_at, jsonl, validate

GOOD = jsonl(*chats(3))


def only_error(data: bytes, **kwargs):
    started = time.monotonic()
    report = validate(data, **kwargs)
    assert time.monotonic() - started < 5
    assert report.status == "invalid"
    assert len(report.errors) == 1, report.errors
    return report.errors[0]


def test_100000_brackets_on_a_line_of_json_lines():
    error = only_error(GOOD + b"[" * 100_000 + b"\n")
    assert (error.line, error.kind) == (4, "too_deep")
    assert error.message.startswith("Line 4: The line is nested too deeply")
    assert '{"messages": [{"role": "user"' in error.message  # what a line should look like


def test_100000_brackets_in_a_json_array_file():
    """The reported case: Python's JSON reader recursed and the check died of RecursionError."""
    error = only_error(b"[" * 100_000)
    assert (error.line, error.kind) == (1, "too_deep")
    assert "Item 1 of the JSON array is nested too deeply" in error.message
    items = orjson.dumps(chats(2))[:-1] + b",\n" + b"[" * 100_000 + b"]" * 100_000 + b"]"
    error = only_error(items)
    assert (error.line, error.kind) == (2, "too_deep") and "Item 3 " in error.message


def test_deep_nesting_is_refused_even_from_a_deep_stack():
    """A worker calls the check from deep inside Celery: the limit moves, the answer does not."""
    def nested(depth: int):
        return nested(depth - 1) if depth else validate(b"[" + b"[" * 5000 + b"]" * 5000 + b"]")

    assert sys.getrecursionlimit() - 300 > 200
    report = nested(sys.getrecursionlimit() - 300)
    assert errors_at(report) == [(1, "too_deep")]


@pytest.mark.parametrize("depth", [200, 900])
def test_a_deep_value_inside_a_valid_example(depth):
    """Nesting the parsers accept in a field the studio ignores keeps the example valid; in a
    field it reads, it is named without being written out whole."""
    deep = b"[" * depth + b"]" * depth
    extra = orjson.dumps(chat())[:-1] + b', "meta": ' + deep + b"}"
    assert validate(jsonl(extra, *chats(2))).status == "valid"
    bad = b'{"messages": [{"role": ' + deep + b', "content": "Hi"}, ' \
          b'{"role": "assistant", "content": "Hello"}]}'
    for data in (jsonl(*chats(2), bad), orjson.dumps(chats(2))[:-1] + b",\n" + bad + b"]"):
        error = only_error(data)
        assert error.kind == "unknown_role" and error.line == 3 - (data[:1] == b"[")
        assert "Message 1 has the role " in error.message and len(error.message) < 200


def test_huge_numbers():
    error = only_error(GOOD + b'{"messages": [], "id": ' + b"9" * 100_000 + b"}\n")
    assert (error.line, error.kind) == (4, "bad_json")
    assert "number too large to read" in error.message and "Write it as text" in error.message
    array = orjson.dumps(chats(1))[:-1] + b',\n{"prompt": "a", "id": ' + b"9" * 5000 + b"}]"
    error = only_error(array)
    assert (error.line, error.kind) == (2, "bad_json")
    assert "Item 2 of the JSON array holds a number too long to read" in error.message


def test_a_very_long_line_and_a_line_that_is_one_giant_string():
    for line in (b'{"messages": "' + b"a" * 3_000_000 + b'"}', b'"' + b"a" * 20_000_000 + b'"'):
        error = only_error(GOOD + line + b"\n" + GOOD)
        assert (error.line, error.kind) == (4, "line_too_long")
        assert "longer than 1,048,576 bytes" in error.message and "Shorten" in error.message


def test_a_json_array_item_over_the_limit_that_fits_in_one_chunk():
    big = {"prompt": "a" * 2_000_000, "completion": "b"}
    small = {"prompt": "q", "completion": "a"}
    report = validate(orjson.dumps([small, big, small]))
    assert errors_at(report) == [(1, "line_too_long")]
    assert "Item 2 of the JSON array is longer than 1,048,576 bytes" in report.errors[0].message
    assert report.counts.examples == 2  # the next item is still read


def test_a_json_array_that_is_one_unclosed_giant_string():
    error = only_error(b'[{"prompt": "' + b"a" * 20_000_000)
    assert (error.line, error.kind) == (1, "line_too_long")
    assert "We stopped reading the file there" in error.message


def test_invalid_utf8_on_one_line():
    """In the first 64 KiB it names the whole file's likely encoding, at its first line; later,
    the line and the byte."""
    bad = b'{"prompt": "caf\xe9", "completion": "b"}\n'
    error = only_error(GOOD + bad + GOOD)
    assert (error.line, error.kind) == (4, "not_utf8")
    assert "Windows-1252" in error.message and "Save it as UTF-8" in error.message
    error = only_error(jsonl(*chats(3000)) + bad)
    assert (error.line, error.kind) == (3001, "not_utf8")
    assert "0xE9 at position 16" in error.message and "UTF-8" in error.message
    table = only_error(b"prompt,completion\nhi,there\ncaf\xe9,b\n", filename="a.csv")
    assert (table.line, table.kind) == (3, "not_utf8")


@pytest.mark.parametrize("where", ["first lines", "after the sample"])
def test_a_nul_byte_is_an_error_on_its_line(where):
    before = GOOD if where == "first lines" else jsonl(*chats(3000))  # > 64 KiB
    line = len(before.splitlines()) + 1
    error = only_error(before + b'{"prompt": "a\x00b", "completion": "c"}\n')
    assert (error.line, error.kind) == (line, "nul_byte")
    assert "NUL byte" in error.message and "at position 14" in error.message
    assert "Remove it" in error.message


def test_a_nul_byte_in_a_csv_value_and_in_a_json_array():
    error = only_error(b"prompt,completion\nhi,there\nhi\x00,there\n", filename="a.csv")
    assert (error.line, error.kind) == (3, "nul_byte")
    error = only_error(b'[{"prompt": "a", "completion": "b"},\n{"prompt": "a\x00"}]')
    assert (error.line, error.kind) == (2, "nul_byte")


def test_binary_files_are_still_refused_whole():
    error = only_error(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)) * 8)
    assert (error.line, error.kind) == (None, "binary")


def test_a_bom():
    assert validate(codecs.BOM_UTF8 + GOOD).status == "valid"
    assert validate(codecs.BOM_UTF8 + orjson.dumps(chats(3))).status == "valid"
    assert validate(codecs.BOM_UTF8 + b"prompt,completion\nhi,there\n", filename="a.csv"
                    ).status == "valid"
    error = only_error(GOOD + codecs.BOM_UTF8 + GOOD)  # two files joined together
    assert (error.line, error.kind) == (4, "bad_json")
    assert "byte-order mark (BOM)" in error.message and "Remove it" in error.message


def test_a_csv_with_a_10_mb_cell():
    cell = b"x" * 10_000_000
    error = only_error(b"prompt,completion\nhi,there\nq," + cell + b"\nq,a\n", filename="a.csv")
    assert (error.line, error.kind) == (3, "line_too_long")


@pytest.mark.parametrize("closed", [True, False])
def test_a_csv_with_a_10_mb_quoted_cell_over_many_lines(closed):
    """The reader holds the value until its limit; the rest of the file cannot be trusted."""
    cell = b'"' + b"word\n" * 2_000_000 + (b'"' if closed else b"")
    error = only_error(b"prompt,completion\nhi,there\nq," + cell + b"\nq,a\n", filename="a.csv")
    assert (error.line, error.kind) == (3, "line_too_long")
    assert "longer than 1,048,576 bytes" in error.message
    assert "never closed" in error.message and "We stopped reading the file there" in error.message


def test_valid_examples_before_a_limit_are_written_but_the_report_is_invalid():
    """The check streams: records before the bad line are written; the caller throws them
    away for an invalid file (tests/datasets/test_tasks.py checks that the task does)."""
    out = io.BytesIO()
    report = validate_dataset(io.BytesIO(GOOD + b"[" * 100_000 + b"\n"), train_out=out,
                              eval_out=io.BytesIO())
    assert report.status == "invalid" and out.getvalue().count(b"\n") >= 1
