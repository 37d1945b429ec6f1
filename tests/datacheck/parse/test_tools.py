"""Chat examples with tools (OpenAI's function-calling format): accepted, stored with their tools,
and every way one can be wrong reported on its line with the reason."""

from __future__ import annotations

import copy
import io
import json

import orjson
import pytest

from datacheck import ValidationOptions, validate_dataset
from datacheck.normalize import write_normalized
from tests.datacheck.factories import chat, jsonl, validate

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"], "additionalProperties": False}}}


def call(call_id: str = "c1", city: str = "Paris", name: str = "get_weather", arguments: str | None = None) -> dict:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments if arguments is not None else json.dumps({"city": city})}}


def good() -> dict:
    return {"tools": [WEATHER], "messages": [
        {"role": "system", "content": "You help with the weather."},
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {"role": "assistant", "content": None, "tool_calls": [call("c1", "Paris"), call("c2", "Lyon")]},
        {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
        {"role": "tool", "tool_call_id": "c2", "content": "18 C"},
        {"role": "assistant", "content": "Paris 21 C, Lyon 18 C."}]}


def ending_on_a_call() -> dict:
    return {"tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Nice?"},
        {"role": "assistant", "tool_calls": [call("x", "Nice", arguments='{"city": "Nice", "unit": "c"}')]}]}


def test_examples_with_tools_are_stored_with_their_tools_and_calls_in_openai_form():
    train = io.BytesIO()
    report = validate_dataset(io.BytesIO(jsonl(good(), ending_on_a_call(), chat())), filename="t.jsonl",
                              options=ValidationOptions(eval_fraction=0), train_out=train)
    assert report.status == "valid", report.errors
    assert report.counts.with_tools == 2 and report.counts.examples == 3
    assert "2 with tools" in report.explanation
    first, second, plain = [orjson.loads(line) for line in train.getvalue().splitlines()]
    assert first["tools"] == [WEATHER] and plain == chat()
    assistant = first["messages"][2]
    assert assistant["content"] == "" and [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert first["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "21 C"}
    assert second["messages"][-1]["tool_calls"][0]["function"]["arguments"] == '{"city":"Nice","unit":"c"}'
    # the same records come out of the conversion the worker runs
    out = io.BytesIO()
    assert write_normalized(io.BytesIO(jsonl(good())), out) == 1
    assert orjson.loads(out.getvalue()) == first


def broken(change) -> dict:  # noqa: ANN001
    example = copy.deepcopy(good())
    change(example)
    return example


def _set_args(text):  # noqa: ANN001, ANN202
    def change(e):  # noqa: ANN001, ANN202
        e["messages"][2]["tool_calls"][0]["function"]["arguments"] = text
    return change


CASES = [
    ("invalid_tool_call", "are not valid JSON", _set_args('{"city": "Paris"')),
    ("invalid_tool_call", 'at "city": 3 is not of type \'string\'', _set_args('{"city": 3}')),
    ("invalid_tool_call", "'city' is a required property", _set_args('{"unit": "c"}')),
    ("invalid_tool_call", "'kelvin' is not one of ['c', 'f']", _set_args('{"city": "Paris", "unit": "kelvin"}')),
    ("invalid_tool_call", "must be a JSON object", _set_args('["Paris"]')),
    ("invalid_tool_call", "which is not one of the example's tools",
     lambda e: e["messages"][2]["tool_calls"][0]["function"].update(name="get_time")),
    ("unanswered_call", 'tool calls "c2" were answered', lambda e: e["messages"].pop(4)),
    ("unanswered_call", 'the call "c9"', lambda e: e["messages"][3].update(tool_call_id="c9")),
    ("missing_field", 'without a "tool_call_id"', lambda e: e["messages"][3].pop("tool_call_id")),
    ("invalid_tools", "not a valid JSON Schema",
     lambda e: e["tools"][0]["function"]["parameters"].update(type="objekt")),
    ("invalid_tools", "non-empty list", lambda e: e.update(tools=[])),
    ("invalid_tools", "Two tools are named", lambda e: e["tools"].append(WEATHER)),
    ("empty_field", "empty content and no tool calls", lambda e: e["messages"][2].pop("tool_calls")),
    ("wrong_role_order", "last message is from the tool", lambda e: e["messages"].pop()),
]


@pytest.mark.parametrize(("kind", "words", "change"), CASES, ids=[c[1][:30] for c in CASES])
def test_each_problem_is_reported_on_its_line(kind, words, change):
    report = validate(jsonl(chat(), broken(change), chat("Other?")), eval_fraction=0)
    assert report.status == "invalid" and len(report.errors) == 1
    error = report.errors[0]
    assert (error.line, error.kind) == (2, kind) and words in error.message, error.message
    assert report.counts.examples == 2  # the good lines are still read


def test_a_tool_call_without_tools_is_refused_with_the_reason():
    example = {"messages": [{"role": "user", "content": "Weather?"},
                            {"role": "assistant", "content": None, "tool_calls": [call()]}]}
    report = validate(jsonl(example), eval_fraction=0)
    assert report.errors[0].kind == "invalid_tools" and 'no "tools" list' in report.errors[0].message
