"""Each supported format is detected, explained and normalised to the internal record."""

from __future__ import annotations

import io

import orjson

from datacheck import validate_dataset
from datacheck.normalize import write_normalized
from datacheck.types import DatasetFormat
from tests.datacheck.factories import chat, chats, jsonl, validate


def normalized(data: bytes, **kwargs) -> list[dict]:
    out = io.BytesIO()
    write_normalized(io.BytesIO(data), out, **kwargs)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def pair(prompt: str, answer: str, system: str | None = None) -> dict:
    return chat(prompt, answer, system=system)


def test_chat_with_system_multi_turn_and_weights():
    multi = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help?", "weight": 0},
        {"role": "user", "content": "Track my parcel"},
        {"role": "assistant", "content": "Here is the link.", "weight": 1, "name": "bot"},
    ]}
    data = jsonl(multi, chat(system="You are kind."), chat(), chat("Other?", "Yes."))
    report = validate(data)
    assert report.status == "valid"
    assert report.format is DatasetFormat.CHAT and report.container == "jsonl"
    assert report.explanation.startswith(
        "Chat format (OpenAI): 4 conversations, 2 with a system message, 1 with several turns.")
    first = normalized(data)[0]["messages"]
    assert first[2] == {"role": "assistant", "content": "Hello, how can I help?", "weight": 0}
    assert first[4] == {"role": "assistant", "content": "Here is the link.", "weight": 1}


def test_prompt_completion_and_input_output():
    for keys, fmt in ((("prompt", "completion"), DatasetFormat.PROMPT_COMPLETION),
                      (("input", "output"), DatasetFormat.INPUT_OUTPUT)):
        data = jsonl({keys[0]: "2+2?", keys[1]: "4"}, {keys[0]: "Hi", keys[1]: "Hello", "system": "Be nice."})
        report = validate(data)
        assert (report.status, report.format) == ("valid", fmt)
        assert report.explanation.startswith(f"{report.format_label}: 2 examples.")
        assert normalized(data) == [pair("2+2?", "4"), pair("Hi", "Hello", "Be nice.")]


def test_alpaca_jsonl_joins_instruction_and_input():
    data = jsonl({"instruction": "Translate", "input": "chat", "output": "cat"},
                 {"instruction": "Say hi", "input": "", "output": "Hi!"})
    report = validate(data)
    assert (report.status, report.format) == ("valid", DatasetFormat.ALPACA)
    assert normalized(data) == [pair("Translate\n\nchat", "cat"), pair("Say hi", "Hi!")]


def test_alpaca_as_json_array_even_when_named_jsonl():
    items = [{"instruction": f"Task {i}", "input": "", "output": f"Done {i}"} for i in range(3)]
    data = orjson.dumps(items, option=orjson.OPT_INDENT_2)
    report = validate(data, filename="data.jsonl")
    assert (report.status, report.format, report.container) == ("valid", DatasetFormat.ALPACA, "json_array")
    assert "one JSON array; each item is read as one example" in report.explanation
    assert normalized(data)[2] == pair("Task 2", "Done 2")


def test_chat_as_json_array_on_one_line_with_large_items():
    items = chats(3) + [chat("x" * 200_000, "y")]
    report = validate(orjson.dumps(items))
    assert (report.status, report.counts.examples) == ("valid", 4)


def test_json_array_items_are_read_across_chunk_boundaries(monkeypatch):
    import datacheck.read as reader
    monkeypatch.setattr(reader, "CHUNK_SIZE", 7)
    monkeypatch.setattr(reader, "HEAD_SIZE", 5)
    items = [{"prompt": f"p{i}", "completion": f"c{i}", "n": 12345678901234} for i in range(20)]
    data = orjson.dumps(items, option=orjson.OPT_INDENT_2)
    out = io.BytesIO()
    assert write_normalized(io.BytesIO(data), out) == 20


def test_csv_with_proposed_mapping_crlf_bom_and_quoted_newlines():
    data = ("\ufeffQuestion,Answer,System\r\n"
            'Hi,Hello,\r\n'
            '"Two\r\nlines, with comma",ok,Be brief\r\n').encode()
    report = validate(data, filename="faq.csv")
    assert (report.status, report.format) == ("valid", DatasetFormat.CSV)
    assert report.columns == ["Question", "Answer", "System"]
    assert report.mapping.model_dump() == {"prompt": "Question", "completion": "Answer", "system": "System"}
    assert report.mapping_proposed
    assert 'prompt from "Question", answer from "Answer"' in report.explanation
    assert normalized(data) == [pair("Hi", "Hello"), pair("Two\r\nlines, with comma", "ok", "Be brief")]


def test_tsv_and_semicolon_csv_with_a_given_mapping():
    mapping = {"prompt": "q", "completion": "a"}
    tsv = b"q\ta\nhello, there\thi; you\n"
    report = validate(tsv, filename="x.tsv", mapping=mapping)
    assert (report.status, report.format, report.mapping_proposed) == ("valid", DatasetFormat.TSV, False)
    assert normalized(tsv, mapping=mapping) == [pair("hello, there", "hi; you")]
    semicolon = b"q;a\nbonjour;salut\n"
    assert normalized(semicolon, mapping=mapping) == [pair("bonjour", "salut")]


def test_validation_writes_the_same_records_split_into_train_and_eval():
    data = jsonl(*chats(200))
    train, evals = io.BytesIO(), io.BytesIO()
    report = validate_dataset(io.BytesIO(data), train_out=train, eval_out=evals)
    train_rows, eval_rows = train.getvalue().splitlines(), evals.getvalue().splitlines()
    assert (len(train_rows), len(eval_rows)) == (report.counts.train_examples, report.counts.eval_examples)
    assert sorted(train_rows + eval_rows) == sorted(orjson.dumps(r) for r in normalized(data))
