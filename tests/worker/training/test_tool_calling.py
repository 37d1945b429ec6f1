"""Tool calling in the engine: conversations with tools render with the model's own template, only
the assistant's calls and answers are trained, a template without tool support is refused, and a
short run raises tool-call accuracy on held-out examples."""

from __future__ import annotations

import json

import pytest

from tests.worker.training.factories import TOOLS, tool_record
from worker.training.data import IGNORE_INDEX, DataError, tokenize_records


def trained_runs(tokenizer, example) -> list[str]:  # noqa: ANN001
    """The trained tokens as texts, one per run of consecutive trained tokens."""
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def parallel_calls_record() -> dict:
    calls = [{"id": f"c{i}", "type": "function",
              "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
             for i, city in enumerate(["Paris", "Lyon"])]
    return {"tools": TOOLS, "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": calls, "weight": 0},
        {"role": "tool", "tool_call_id": "c0", "content": "RESULT-PARIS 21 C"},
        {"role": "tool", "tool_call_id": "c1", "content": "RESULT-LYON 18 C"},
        {"role": "assistant", "content": "Let me also check the time.", "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c2", "content": "RESULT-TIME 14:05"},
        {"role": "assistant", "content": "Paris 21 C at 14:05, Lyon 18 C."}]}


def test_the_trained_tokens_are_exactly_the_assistants_calls_and_answers(tool_tokenizer):
    (example,), report = tokenize_records([tool_record("get_weather", 0, "Lyon")], tool_tokenizer, 512)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call><|im_end|>'
    assert trained_runs(tool_tokenizer, example) == [call, "Lyon: 21 C, sunny.<|im_end|>"]
    text = tool_tokenizer.decode(example.input_ids)
    assert "<tools>get_weather get_time </tools>" in text and "<tool_response>\n21 C, sunny\n</tool_response>" in text
    assert report.trained_tokens == example.trained_tokens

    (example,), _ = tokenize_records([parallel_calls_record()], tool_tokenizer, 512)
    runs = trained_runs(tool_tokenizer, example)
    # the weight-0 turn, the system text, the tools and every tool result stay untrained
    assert runs == ['Let me also check the time.\n<tool_call>\n{"name": "get_time", "arguments": {"city": "Paris"}}'
                    "\n</tool_call><|im_end|>", "Paris 21 C at 14:05, Lyon 18 C.<|im_end|>"]
    assert not any("RESULT" in r or "Checking" in r or "Lyon\"" in r for r in runs)


def test_a_template_without_tool_support_is_refused_with_models_that_have_it(tokenizer):
    assert "tool" not in tokenizer.chat_template  # SmolLM2's own template
    with pytest.raises(DataError, match="without tool support.*Qwen2.5 Instruct.*Llama 3.1"):
        tokenize_records([tool_record("get_time", 1, "Nice")], tokenizer, 512)
    # the same tokenizer still trains conversations without tools
    examples, _ = tokenize_records([{"messages": [{"role": "user", "content": "Hi"},
                                                  {"role": "assistant", "content": "Hello"}]}], tokenizer, 512)
    assert examples[0].trained_tokens > 0


@pytest.mark.slow
def test_a_short_run_raises_tool_call_accuracy_on_held_out_examples(tool_trained):
    base, tuned = tool_trained["metrics"]["base"], tool_trained["metrics"]["finetuned"]
    assert base["tool_call_accuracy"] == 0.0
    assert tuned["tool_call_accuracy"] >= 0.25, tool_trained["samples"]
    assert tool_trained["details"]["samples"] == 8
