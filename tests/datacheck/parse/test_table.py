"""CSV/TSV: mapping proposal and errors, with the file's line numbers."""

from __future__ import annotations

from datacheck.parse.table import propose_mapping
from tests.datacheck.factories import errors_at, validate


def test_mapping_is_proposed_from_header_names():
    assert propose_mapping(["Question", "Answer"]).model_dump() == {
        "prompt": "Question", "completion": "Answer", "system": None}
    assert propose_mapping(["id", "instruction", "response", "system prompt"]).model_dump() == {
        "prompt": "instruction", "completion": "response", "system": "system prompt"}
    assert propose_mapping(["col1", "col2"]) is None


def test_columns_are_reported_when_no_mapping_can_be_guessed():
    report = validate(b"left,right\nhi,there\n", filename="a.csv")
    assert report.status == "invalid" and report.columns == ["left", "right"]
    assert [(e.line, e.kind) for e in report.errors] == [(None, "mapping_required")]
    assert 'the columns are "left", "right"' in report.errors[0].message
    assert "Choose them in the column mapping step" in report.explanation


def test_a_mapped_column_missing_from_the_file():
    report = validate(b"question,reply\nhi,there\n", filename="a.csv",
                      mapping={"prompt": "question", "completion": "answer"})
    assert errors_at(report) == [(1, "missing_column")]
    assert report.errors[0].message == (
        'Line 1: The column "answer" chosen for the answer is not in the file. '
        "The file's columns are \"question\", \"reply\".")
    system = validate(b"question,reply\nhi,there\n",
                      mapping={"prompt": "question", "completion": "reply", "system": "persona"})
    assert errors_at(system) == [(1, "missing_column")]
    assert 'The column "persona" chosen for the system message' in system.errors[0].message


def test_rows_with_too_few_or_too_many_fields_and_empty_cells():
    data = (b"question,answer\n"
            b"hi,hello\n"
            b"only one field\n"
            b'"multi\nline",fine\n'
            b"a,b,c\n"
            b"trailing,commas,,\n"
            b",no prompt\n")
    report = validate(data, filename="faq.csv")
    assert errors_at(report) == [(3, "wrong_field_count"), (6, "wrong_field_count"), (8, "empty_field")]
    assert "The row has 1 value but the header has 2 columns" in report.errors[0].message
    assert "probably contains the separator without being in double quotes" in report.errors[1].message
    assert 'The "question" column (the prompt) is empty on this row.' in report.errors[2].message
    assert report.counts.examples == 3  # line 2, the row of lines 4-5, line 7 (extra empty cells)


def test_undecodable_and_over_long_csv_lines():
    data = "question,answer\nhé,hello\n".encode() + b"caf\xe9,oui\n" + b"x," + b"y" * 3000 + b"\nok,fine\n"
    report = validate(data, filename="a.csv", max_line_bytes=1000)
    assert errors_at(report) == [(3, "not_utf8"), (4, "line_too_long")]
    assert report.counts.examples == 2


def test_blank_rows_are_skipped():
    report = validate(b"question,answer\n\nhi,hello\n,\n", filename="a.csv")
    assert report.status == "valid" and report.counts.blank_lines == 2
    assert report.warnings[0].lines == [2, 4]


def test_broken_quotes_are_reported_at_the_row_start():
    report = validate(b'question,answer\nhi,hello\nbye,"never closed\nok,fine\n', filename="a.csv")
    assert errors_at(report) == [(3, "bad_csv")]
    assert "Check its double quotes" in report.errors[0].message
    stray = validate(b'question,answer\n"quoted"x,1\nc,d\n', filename="a.csv")
    assert errors_at(stray) == [(2, "bad_csv")] and stray.counts.examples == 1
