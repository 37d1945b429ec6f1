"""Tool calling (function calling): the rules the web, the inference process and the engine share.

Torch-free. A conversation with tools is in OpenAI's chat fine-tuning format::

    {"tools": [{"type": "function", "function": {"name", "description", "parameters"}}],
     "messages": [..., {"role": "assistant", "content": null,
                        "tool_calls": [{"id", "type": "function",
                                        "function": {"name", "arguments": "<JSON text>"}}]},
                  {"role": "tool", "tool_call_id": "...", "content": "..."}, ...]}

- ``has_tool_support``: a chat template can render such a conversation when it reads the tool
  definitions and the assistant's calls (Qwen2.5, Llama 3.1+, Mistral v0.3, Hermes templates do;
  SmolLM2's does not);
- ``template_messages``: the messages as transformers' chat templates expect them (arguments as
  an object, not as JSON text);
- ``parse_tool_calls``: the calls a model wrote, in the ``<tool_call>{...}</tool_call>`` form of
  Hermes/Qwen templates or as one bare ``{"name", "arguments"|"parameters"}`` object (Llama 3.1);
  text that is not a valid call stays text;
- ``same_call``: right function, same arguments (compared as JSON values, not as text).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

# Models whose chat template renders tools, named where a base model without that support is refused.
MODELS_WITH_TOOL_SUPPORT = (
    "Qwen2.5 Instruct (e.g. Qwen/Qwen2.5-0.5B-Instruct)",
    "Llama 3.1 / 3.2 Instruct",
    "Mistral-7B-Instruct-v0.3",
    "Hermes 3 (NousResearch)",
)

_TOOLS_VAR = re.compile(r"\btools\b")
_CALLS_VAR = re.compile(r"\btool_calls\b")
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)


def has_tool_support(template: str | None) -> bool:
    """True when a chat template reads both the tool definitions and the assistant's calls."""
    return bool(template) and bool(_TOOLS_VAR.search(template)) and bool(_CALLS_VAR.search(template))


def no_tool_support_message(model: str) -> str:
    return (f"The base model {model} has a chat template without tool support, so it cannot learn from "
            "examples with tools and tool calls. Pick a base model whose chat template has it, for example "
            + ", ".join(MODELS_WITH_TOOL_SUPPORT) + ".")


def arguments_object(arguments: Any) -> Any:
    """A call's arguments as a JSON value (OpenAI sends them as JSON text)."""
    if isinstance(arguments, str):
        return json.loads(arguments) if arguments.strip() else {}
    return arguments


def template_messages(messages: list[dict]) -> list[dict]:
    """Messages for ``apply_chat_template``: no studio-only keys, calls' arguments as objects."""
    out = []
    for m in messages:
        message: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            message["tool_calls"] = [
                {"id": c.get("id"), "type": "function",
                 "function": {"name": c["function"]["name"],
                              "arguments": arguments_object(c["function"].get("arguments"))}}
                for c in m["tool_calls"]]
        if m["role"] == "tool":
            message["tool_call_id"] = m.get("tool_call_id")
            if m.get("name"):
                message["name"] = m["name"]
        out.append(message)
    return out


def _one_call(data: Any) -> dict | None:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"name": data["name"], "arguments": arguments}


def parse_tool_calls(text: str) -> tuple[str, list[dict]]:
    """(text left for ``content``, calls as {"name", "arguments": dict}).

    Every ``<tool_call>`` block must hold one valid call, else nothing is a call and the whole
    text is returned as it is (a model that writes broken JSON gets its words back, not an error).
    """
    blocks = _CALL_BLOCK.findall(text)
    if blocks:
        calls = []
        for block in blocks:
            try:
                call = _one_call(json.loads(block.strip()))
            except json.JSONDecodeError:
                call = None
            if call is None:
                return text, []
            calls.append(call)
        return _CALL_BLOCK.sub("", text).strip(), calls
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            call = _one_call(json.loads(stripped))
        except json.JSONDecodeError:
            call = None
        if call is not None:
            return "", [call]
    return text, []


def openai_tool_calls(calls: list[dict]) -> list[dict]:
    """Parsed calls in the OpenAI response form (arguments as JSON text, a fresh id each)."""
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for c in calls]


def expected_calls(message: dict) -> list[dict]:
    """An assistant message's calls as {"name", "arguments": object} (for comparison)."""
    return [{"name": c["function"]["name"], "arguments": arguments_object(c["function"].get("arguments"))}
            for c in message.get("tool_calls") or []]


def same_call(expected: dict, got: dict) -> bool:
    """Right function, same arguments (JSON values compared, so key order and spacing do not matter)."""
    return expected["name"] == got["name"] and expected["arguments"] == got["arguments"]


def calls_match(expected: list[dict], got: list[dict]) -> bool:
    """Every expected call made, nothing else (parallel calls in any order)."""
    if len(expected) != len(got):
        return False
    left = list(got)
    for call in expected:
        hit = next((i for i, g in enumerate(left) if same_call(call, g)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def choose_tools(tools: list[dict] | None, tool_choice: Any, template: str | None) -> tuple[list[dict] | None, str]:
    """The tools to show the model and the text its answer is made to start with, for a request.

    ``tool_choice``: "none" shows no tools; "auto" (the default) lets the model choose; "required"
    and {"type": "function", "function": {"name": ...}} start the answer with a call, which only
    templates that write ``<tool_call>`` blocks (Hermes, Qwen2.5) make possible. Raises ValueError
    with the reason when the request cannot be served.
    """
    if not tools or tool_choice == "none":
        return None, ""
    if not has_tool_support(template):
        raise ValueError("This model's chat template has no tool support, so it cannot be given tools. Use a "
                         "model whose template has it, for example " + ", ".join(MODELS_WITH_TOOL_SUPPORT) + ".")
    if tool_choice in (None, "auto"):
        return tools, ""
    forced = "<tool_call>" in (template or "")
    if tool_choice == "required":
        if not forced:
            raise ValueError('tool_choice "required" needs a chat template that writes <tool_call> blocks '
                             '(Hermes, Qwen2.5); use "auto" with this model.')
        return tools, '<tool_call>\n{"name": "'
    name = ((tool_choice or {}).get("function") or {}).get("name") if isinstance(tool_choice, dict) else None
    chosen = [t for t in tools if (t.get("function") or {}).get("name") == name]
    if not chosen:
        raise ValueError(f"tool_choice names the function {name!r}, which is not in tools.")
    if not forced:
        raise ValueError("Choosing the function in tool_choice needs a chat template that writes <tool_call> "
                         'blocks (Hermes, Qwen2.5); use "auto" with this model.')
    return chosen, '<tool_call>\n{"name": ' + json.dumps(name) + ', "arguments": '
