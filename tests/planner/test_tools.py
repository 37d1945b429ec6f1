"""Tool calls parsed out of a model's text, compared, and the tool_choice rules of a request."""

from __future__ import annotations

import pytest

from planner.tools import calls_match, choose_tools, has_tool_support, parse_tool_calls

HERMES = "{% for t in tools %}{{ t }}{% endfor %}{% for m in messages %}{{ m.tool_calls }}<tool_call>{% endfor %}"
TOOLS = [{"type": "function", "function": {"name": "get_weather"}},
         {"type": "function", "function": {"name": "get_time"}}]


def test_hermes_blocks_and_a_bare_llama_object_become_calls():
    text = ('Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
            '<tool_call>{"name": "get_time", "arguments": "{\\"city\\": \\"Lyon\\"}"}</tool_call>')
    content, calls = parse_tool_calls(text)
    assert content == "Let me look."
    assert calls == [{"name": "get_weather", "arguments": {"city": "Paris"}},
                     {"name": "get_time", "arguments": {"city": "Lyon"}}]
    assert parse_tool_calls('{"name": "get_time", "parameters": {"city": "Nice"}}') == (
        "", [{"name": "get_time", "arguments": {"city": "Nice"}}])
    # cut off by max_tokens after a complete call: the unterminated block still counts
    assert parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {}}')[1] == [{"name": "f", "arguments": {}}]


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>',  # broken JSON
    '<tool_call>{"arguments": {}}</tool_call>',  # no name
    '<tool_call>{"name": "f", "arguments": [1]}</tool_call>',  # arguments not an object
    '<tool_call>{"name": "f", "arguments": {}}</tool_call><tool_call>oops</tool_call>',  # one bad block
    '{"city": "Paris"}', "Just words.",
])
def test_text_that_is_not_a_valid_call_stays_text(text):
    assert parse_tool_calls(text) == (text, [])


def test_same_calls_means_same_function_and_same_arguments_in_any_order():
    a, b = {"name": "f", "arguments": {"x": 1, "y": [1, 2]}}, {"name": "g", "arguments": {}}
    assert calls_match([a, b], [b, {"name": "f", "arguments": {"y": [1, 2], "x": 1}}])
    assert not calls_match([a], [{"name": "f", "arguments": {"x": 1}}])
    assert not calls_match([a], [{"name": "g", "arguments": a["arguments"]}])
    assert not calls_match([a], [a, b]) and not calls_match([a], [])


def test_tool_choice():
    assert not has_tool_support("{{ messages }}") and has_tool_support(HERMES)
    assert choose_tools(TOOLS, "none", "{{ messages }}") == (None, "")
    assert choose_tools(TOOLS, None, HERMES) == (TOOLS, "")
    assert choose_tools(TOOLS, "required", HERMES) == (TOOLS, '<tool_call>\n{"name": "')
    chosen = {"type": "function", "function": {"name": "get_time"}}
    assert choose_tools(TOOLS, chosen, HERMES) == ([TOOLS[1]], '<tool_call>\n{"name": "get_time", "arguments": ')
    with pytest.raises(ValueError, match="no tool support.*Qwen2.5"):
        choose_tools(TOOLS, "auto", "{{ messages }}")
    with pytest.raises(ValueError, match="not in tools"):
        choose_tools(TOOLS, {"type": "function", "function": {"name": "nope"}}, HERMES)
    with pytest.raises(ValueError, match="<tool_call>"):
        choose_tools(TOOLS, "required", "{{ tools }}{{ tool_calls }}")
