"""Every kind of error is reported with its exact line and a sentence a person can act on."""

from __future__ import annotations

import codecs
import random

import orjson
import pytest

from datacheck import validate_dataset
from tests.datacheck.factories import chat, chats, errors_at, jsonl, validate, word_tokens


def single_error(data: bytes, **kwargs):
    report = validate(data, **kwargs)
    assert report.status == "invalid"
    assert len(report.errors) == 1, report.errors
    return report.errors[0]


def test_bad_json_with_its_line_and_position():
    error = single_error(jsonl(*chats(2), b'{"messages": [}', *chats(1)))
    assert (error.line, error.kind) == (3, "bad_json")
    assert error.message.startswith("Line 3: The line is not valid JSON (")
    assert "at character 15" in error.message


@pytest.mark.parametrize(("line", "words"), [
    (orjson.dumps(chat()) + b",", "ends with a comma"),
    (b"{'messages': []}", "single quotes"),
    (b'{"messages": [', "spread over several lines"),
])
def test_bad_json_common_mistakes_are_named(line, words):
    error = single_error(jsonl(chat(), line))
    assert (error.line, error.kind) == (2, "bad_json")
    assert words in error.message


def test_not_an_object():
    report = validate(jsonl(chat(), [1, 2], b'"text"', 42, chat()))
    assert errors_at(report) == [(2, "not_an_object"), (3, "not_an_object"), (4, "not_an_object")]
    assert "is a JSON list [...], but each example must be one JSON object" in report.errors[0].message
    assert "It is text, but each example must be one JSON object" in report.errors[1].message


def test_missing_fields():
    report = validate(jsonl(
        chat(),
        {"prompt": "a", "completion": "b"},
        {"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]},
    ))
    assert errors_at(report) == [(2, "missing_field"), (3, "missing_field"), (4, "missing_field")]
    assert ('The "messages" field is missing (fields found: "prompt", "completion")'
            in report.errors[0].message)
    assert 'Message 1 has no "role"' in report.errors[1].message
    assert 'Message 2 (assistant) has no "content"' in report.errors[2].message


def test_missing_field_in_flat_format_names_the_format():
    error = single_error(jsonl({"prompt": "a", "completion": "b"}, {"prompt": "c"}))
    assert (error.line, error.kind) == (2, "missing_field")
    assert 'The "completion" field is missing' in error.message
    assert "Prompt/completion format" in error.message


def test_empty_fields():
    report = validate(jsonl(
        {"prompt": "a", "completion": "b"},
        {"prompt": "", "completion": "b"},
        {"prompt": "a", "completion": "  \n"},
    ))
    assert errors_at(report) == [(2, "empty_field"), (3, "empty_field")]
    assert report.errors[0].message == 'Line 2: The "prompt" field is empty.'
    chat_report = validate(jsonl(chat(), {"messages": []}, chat(answer=" ")))
    assert errors_at(chat_report) == [(2, "empty_field"), (3, "empty_field")]
    assert "Message 2 (assistant) has an empty content" in chat_report.errors[1].message


def test_wrong_types():
    report = validate(jsonl(
        chat(),
        {"messages": "hello"},
        {"messages": [{"role": "user", "content": [{"type": "text"}]},
                      {"role": "assistant", "content": "x"}]},
        {"messages": ["hi", {"role": "assistant", "content": "x"}]},
    ))
    assert errors_at(report) == [(2, "wrong_type"), (3, "wrong_type"), (4, "wrong_type")]
    assert '"messages" must be a list of messages, but it is text' in report.errors[0].message
    assert 'The "content" of message 1 (user) must be text, but it is a list' in report.errors[1].message
    flat = single_error(jsonl({"input": "a", "output": "b"}, {"input": 3, "output": "b"}))
    assert (flat.line, flat.kind) == (2, "wrong_type")
    assert 'The "input" field must be text, but it is a number' in flat.message


def test_unknown_role():
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"},
                        {"role": "assistant", "content": "y"}]}
    error = single_error(jsonl(chat(), chat(), bad))
    assert (error.line, error.kind) == (3, "unknown_role")
    assert 'Message 2 has the role "bot"; the role must be system, user or assistant.' in error.message
    # a tool result is a known role, but only in an example with tools (tests/datacheck/parse/test_tools.py)
    bad["messages"][1]["role"] = "tool"
    error = single_error(jsonl(chat(), chat(), bad))
    assert (error.line, error.kind) == (3, "invalid_tools") and 'no "tools" list' in error.message


def test_a_role_that_is_a_list_or_an_object_is_an_unknown_role_not_a_crash():
    as_list = {"messages": [{"role": ["user"], "content": "hi"}, {"role": "assistant", "content": "y"}]}
    as_object = {"messages": [{"role": "user", "content": "hi"}, {"role": {"who": "bot"}, "content": "y"}]}
    report = validate(jsonl(chat(), as_list, as_object))
    assert [(e.line, e.kind) for e in report.errors] == [(2, "unknown_role"), (3, "unknown_role")]
    assert 'Message 1 has the role ["user"]; the role must be' in report.errors[0].message
    assert 'Message 2 has the role {"who": "bot"}; the role must be' in report.errors[1].message


def test_wrong_role_order():
    def msgs(*roles):
        return {"messages": [{"role": r, "content": "text"} for r in roles]}

    report = validate(jsonl(
        msgs("user", "assistant"),
        msgs("user", "assistant", "user"),
        msgs("assistant", "user", "assistant"),
        msgs("user", "system", "assistant"),
        msgs("system"),
        msgs("system", "user", "user", "assistant", "assistant"),  # allowed: same role twice
    ))
    assert errors_at(report) == [(2, "wrong_role_order"), (3, "wrong_role_order"),
                                 (4, "wrong_role_order"), (5, "wrong_role_order")]
    messages = [e.message for e in report.errors]
    assert "must end with an assistant message" in messages[0]
    assert "must start with a user message" in messages[1]
    assert "system message in the middle" in messages[2]
    assert "only system messages" in messages[3]


def test_invalid_weights_and_nothing_to_learn():
    def conv(weight_user=None, weight_assistant=None):
        user = {"role": "user", "content": "hi"}
        answer = {"role": "assistant", "content": "yo"}
        if weight_user is not None:
            user["weight"] = weight_user
        if weight_assistant is not None:
            answer["weight"] = weight_assistant
        return {"messages": [user, answer]}

    report = validate(jsonl(conv(None, 1), conv(None, 2), conv(1, None), conv(None, "1"),
                            conv(None, True), conv(None, 0)))
    assert errors_at(report) == [(2, "invalid_weight"), (3, "invalid_weight"), (4, "invalid_weight"),
                                 (5, "invalid_weight"), (6, "nothing_to_learn")]
    assert "the weight must be 0 (do not learn this answer) or 1 (learn it)" in report.errors[0].message
    assert "only assistant messages can have one" in report.errors[1].message
    assert "nothing to learn" in report.errors[4].message


def test_line_not_utf8():
    latin1 = '{"prompt": "café", "completion": "oui"}'.encode("latin-1")
    error = single_error(jsonl({"prompt": "é", "completion": "b"}, latin1))
    assert (error.line, error.kind) == (2, "not_utf8")
    assert "not valid UTF-8 text (the byte 0xE9 at position 16" in error.message
    assert "Save the file with the UTF-8 encoding" in error.message


def test_line_too_long_with_a_configured_limit():
    report = validate(jsonl(chat(), chat("x" * 5000), chat()), max_line_bytes=1000)
    assert errors_at(report) == [(2, "line_too_long")]
    assert "longer than 1,000 bytes" in report.errors[0].message
    assert report.counts.examples == 2


def test_example_over_the_model_context_length_in_tokens():
    long_answer = " ".join(["word"] * 50)
    report = validate(jsonl(chat(), chat(answer=long_answer), chat()), count_tokens=word_tokens,
                      max_tokens=40)
    assert errors_at(report) == [(2, "too_many_tokens")]
    assert ("The example is 62 tokens long, more than the 40 tokens the model can read"
            in report.errors[0].message)
    without_tokenizer = validate(jsonl(chat(), chat(answer=long_answer)), max_tokens=40)
    assert without_tokenizer.status == "valid"


def test_empty_file_and_blank_file():
    for data, words in ((b"", "The file is empty (0 bytes)"), (b"\n \n\t\n", "The file is blank")):
        error = single_error(data)
        assert (error.line, error.kind) == (None, "empty_file")
        assert words in error.message
    array = single_error(b"[ ]")
    assert array.kind == "empty_file" and "contains no examples" in array.message


def test_random_bytes():
    rng = random.Random(7)
    for size in (40, 3000, 100_000):
        error = single_error(bytes(rng.randrange(256) for _ in range(size)))
        assert (error.line, error.kind) == (None, "binary")
        assert "does not look like text" in error.message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_files(encoding):
    text = orjson.dumps(chat()).decode() + "\n" + orjson.dumps(chat("Où?", "Là.")).decode() + "\n"
    error = single_error(text.encode(encoding))
    assert error.kind == "utf16"
    assert "The file is UTF-16" in error.message and "Save it as UTF-8" in error.message


def test_a_latin1_file_is_one_clear_error():
    data = '{"prompt": "Où est mon colis ?", "completion": "Il arrive demain, désolé."}\n'.encode("latin-1")
    error = single_error(data * 20)
    assert (error.line, error.kind) == (1, "not_utf8")  # the first line with such a letter
    assert "Windows-1252 or Latin-1" in error.message and "Save it as UTF-8" in error.message


def test_utf8_bom_is_accepted():
    assert validate(codecs.BOM_UTF8 + jsonl(chat())).status == "valid"


def test_jsonl_whose_lines_are_arrays():
    report = validate(jsonl([chat()], [chat()]))
    assert errors_at(report) == [(1, "not_an_object"), (2, "not_an_object")]
    assert "It is a JSON list [...], but each example must be one JSON object" in report.errors[0].message


def test_broken_json_array_reports_the_item_line_and_stops():
    data = b'[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "c", "completion": }\n]\n'
    error = single_error(data)
    assert (error.line, error.kind) == (3, "bad_json")
    assert "Item 2 of the JSON array is not valid JSON" in error.message
    missing_comma = single_error(b'[{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}]')
    assert (missing_comma.line, missing_comma.kind) == (2, "bad_json")
    assert "where a comma or the closing ] was expected" in missing_comma.message


def test_unknown_formats():
    fields = single_error(jsonl({"question": "a", "reply": "b"}))
    assert fields.kind == "unknown_format"
    assert 'The examples have the fields "question", "reply", which match no format we know' in fields.message
    prose = single_error(b"Just some notes\nabout my data\n", filename="notes.txt")
    assert prose.kind == "unknown_format"
    assert "neither JSON Lines, a JSON array, nor a CSV/TSV table" in prose.message


def test_errors_are_capped_but_all_counted():
    report = validate(jsonl(*([b"{oops"] * 150), chat()))
    assert len(report.errors) == 100 and report.errors_truncated
    assert report.error_counts == {"bad_json": 150}
    assert [e.line for e in report.errors[:3]] == [1, 2, 3]
    assert "We found 150 problems (Not valid JSON: 150)" in report.explanation


def test_mutated_files_never_raise():
    """Cut, flip and splice bytes of valid files: every result is a report, never a crash."""
    rng = random.Random(3)
    seeds = [jsonl(*chats(5)), orjson.dumps(chats(5)), b"q,a\nhi,there\n\"x\",y\n"]
    for _ in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) or 1)
            action = rng.randrange(3)
            if action == 0 and data:
                data[at] = rng.randrange(256)
            elif action == 1:
                del data[at : at + rng.randint(1, 20)]
            else:
                data[at:at] = rng.choice([b"\n", b"[", b"{", b'"', b",", b"\xff", b"\x00"])
        report = validate(bytes(data), filename=rng.choice([None, "a.csv"]))
        assert report.status in ("valid", "invalid")
        assert all(e.message for e in report.errors)


def test_zero_byte_lines_are_skipped_with_a_warning():
    report = validate(jsonl(chat(), b"", chat("Other?"), b"   ") + b"\n")
    assert report.status == "valid" and report.counts.examples == 2
    assert report.counts.blank_lines == 3
    (warning,) = [w for w in report.warnings if w.kind == "blank_lines"]
    assert warning.lines == [2, 4, 5]
    assert warning.message.startswith("3 blank lines were skipped (lines 2, 4, 5)")


def test_a_10_mb_single_line_is_rejected_without_holding_it(tmp_path):
    import tracemalloc

    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"messages": [{"role": "user", "content": "' + b"a" * (10 * 2**20)
                     + b'"}]}\n' + jsonl(chat()))
    tracemalloc.start()
    with path.open("rb") as f:
        report = validate_dataset(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert errors_at(report) == [(1, "line_too_long")]
    assert "The line is longer than 1,048,576 bytes" in report.errors[0].message
    assert report.counts.examples == 1
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.1f} MiB: the line was held whole"


def test_pretty_printed_objects_are_not_json_lines():
    pretty = orjson.dumps(chat(), option=orjson.OPT_INDENT_2)
    data = pretty + b"\n" + pretty
    error = single_error(data)
    assert (error.line, error.kind) == (None, "unknown_format")
    assert "Each example must be one JSON object on its own line (JSON Lines)" in error.message


def test_json_array_items_of_no_known_format():
    data = orjson.dumps([{"question": "a"}, {"prompt": "p", "completion": "c"}, {"q": 1}])
    report = validate(data)
    assert errors_at(report) == [(1, "unknown_format"), (1, "missing_field")]
    assert 'Item 1 of the JSON array has the fields "question"' in report.errors[0].message
    assert report.format == "prompt_completion"


def test_a_text_file_named_csv_is_not_taken_for_a_one_column_table():
    """Random words uploaded as CSV: say what was expected instead of a column mapping step
    that can only fail."""
    from tests.datacheck.factories import validate

    report = validate(b"lorem ipsum dolor\nsit amet again\nmore plain words here\n", filename="notes.csv")
    assert report.status == "invalid" and list(report.error_counts) == ["not_examples"]
    message = report.errors[0].message
    assert 'its first line is "lorem ipsum dolor"' in message
    assert "at least two columns (for example prompt,completion)" in message
    assert "mapping_required" not in report.error_counts


def test_a_two_column_table_still_reaches_the_mapping_step():
    from tests.datacheck.factories import validate

    report = validate(b"left,right\nhello,world\n", filename="pairs.csv")
    assert list(report.error_counts) == ["mapping_required"]
