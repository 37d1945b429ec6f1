"""Chat examples with tools (OpenAI's function-calling fine-tuning format), checked.

``tool_example`` turns ``{"tools": [...], "messages": [...]}`` into the internal record
``{"messages": [...], "tools": [...]}`` or raises ``Problem``. Rules, on top of the
conversation rules of ``parse.messages``:
- ``tools`` is a non-empty list of ``{"type": "function", "function": {"name", "description"?,
  "parameters"?}}`` with distinct names; ``parameters`` must be a valid JSON Schema;
- roles are system, user, assistant and tool; an assistant message has a text, calls
  (``tool_calls``), or both; each call is ``{"id", "type": "function", "function": {"name",
  "arguments"}}`` whose name is one of the tools and whose arguments are JSON text (or an object)
  that the tool's ``parameters`` schema accepts;
- every call is answered by a ``tool`` message with its ``tool_call_id`` before the conversation
  goes on; only calls in the last message may stay unanswered (the example then teaches the call);
- a tool message answers a call of the assistant message just before it.

Stored calls keep OpenAI's form, arguments as compact JSON text.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from datacheck.problems import Problem
from datacheck.types import Message

ROLES = frozenset(("system", "user", "assistant", "tool"))
MAX_TOOLS = 128


def is_tool_example(obj: dict) -> bool:
    return "tools" in obj or "functions" in obj


def tool_example(obj: dict) -> dict[str, Any]:
    """The checked record of one example with tools, or raise Problem."""
    if "functions" in obj and "tools" not in obj:
        raise Problem("invalid_tools", 'The example uses the old "functions" field; write the same '
                      'definitions as "tools": [{"type": "function", "function": {...}}].')
    tools, validators = _tools(obj.get("tools"))
    raw = obj.get("messages")
    if type(raw) is not list or not raw:
        raise Problem("missing_field", 'An example with tools needs a non-empty "messages" list.')
    messages: list[Message] = []
    pending: dict[str, str] = {}  # call id -> function name, not answered yet
    for i, m in enumerate(raw, 1):
        message = _message(m, i, validators)
        role = message["role"]
        if role == "tool":
            call_id = message["tool_call_id"]
            if call_id not in pending:
                raise Problem("unanswered_call", f'Message {i} is a tool result for the call "{call_id}", '
                              "but no call with that id waits for an answer in the assistant message before it.")
            del pending[call_id]
        elif pending:
            ids = ", ".join(f'"{c}"' for c in pending)
            raise Problem("unanswered_call", f"Message {i} ({role}) comes before the tool calls {ids} were "
                          'answered: add a "tool" message with the matching "tool_call_id" for each call.')
        if message.get("tool_calls"):
            pending = {c["id"]: c["function"]["name"] for c in message["tool_calls"]}
        messages.append(message)
    _check_order(messages)
    return {"messages": messages, "tools": tools}


def text_view(messages: list[Message]) -> list[Message]:
    """The messages with text contents only (calls written out), for statistics and duplicates."""
    view = []
    for m in messages:
        content = m.get("content") or ""
        if m.get("tool_calls"):
            calls = "\n".join(f'{c["function"]["name"]}({c["function"]["arguments"]})' for c in m["tool_calls"])
            content = f"{content}\n{calls}" if content else calls
        item = {"role": "user" if m["role"] == "tool" else m["role"], "content": content}
        if "weight" in m:
            item["weight"] = m["weight"]
        view.append(item)
    return view


def _tools(raw: object) -> tuple[list[dict], dict[str, Draft202012Validator | None]]:
    if type(raw) is not list or not raw:
        raise Problem("invalid_tools", '"tools" must be a non-empty list of tool definitions '
                      '({"type": "function", "function": {"name": ..., "parameters": {...}}}).')
    if len(raw) > MAX_TOOLS:
        raise Problem("invalid_tools", f'"tools" lists {len(raw)} tools; at most {MAX_TOOLS} are accepted.')
    tools, validators = [], {}
    for i, tool in enumerate(raw, 1):
        function = tool.get("function") if type(tool) is dict else None
        if type(tool) is not dict or tool.get("type", "function") != "function" or type(function) is not dict:
            raise Problem("invalid_tools", f'Tool {i} must be {{"type": "function", "function": '
                          '{"name": ..., "description": ..., "parameters": {...}}}.')
        name = function.get("name")
        if type(name) is not str or not name.strip():
            raise Problem("invalid_tools", f'Tool {i} has no "name".')
        if name in validators:
            raise Problem("invalid_tools", f'Two tools are named "{name}"; tool names must be distinct.')
        description = function.get("description")
        if description is not None and type(description) is not str:
            raise Problem("invalid_tools", f'The "description" of tool "{name}" must be text.')
        parameters = function.get("parameters")
        validator = None
        if parameters is not None:
            if type(parameters) is not dict:
                raise Problem("invalid_tools", f'The "parameters" of tool "{name}" must be a JSON Schema '
                              'object, such as {"type": "object", "properties": {...}}.')
            try:
                Draft202012Validator.check_schema(parameters)
            except SchemaError as error:
                raise Problem("invalid_tools", f'The "parameters" of tool "{name}" is not a valid JSON '
                              f"Schema: {error.message}.") from None
            validator = Draft202012Validator(parameters)
        validators[name] = validator
        clean = {"name": name}
        if description is not None:
            clean["description"] = description
        if parameters is not None:
            clean["parameters"] = parameters
        tools.append({"type": "function", "function": clean})
    return tools, validators


def _message(m: object, i: int, validators: dict) -> Message:
    if type(m) is not dict:
        raise Problem("wrong_type", f"Message {i} must be an object with a role and a content.")
    role = m.get("role")
    if type(role) is not str or role not in ROLES:
        raise Problem("unknown_role", f"Message {i} has the role {json.dumps(role)[:40]}; with tools the "
                      "role must be system, user, assistant or tool.")
    content = m.get("content")
    calls = m.get("tool_calls") if role == "assistant" else None
    if content is not None and type(content) is not str:
        raise Problem("wrong_type", f'The "content" of message {i} ({role}) must be text.')
    blank = content is None or not content.strip()
    if role == "tool":
        call_id = m.get("tool_call_id")
        if type(call_id) is not str or not call_id:
            raise Problem("missing_field", f'Message {i} is a tool result without a "tool_call_id" '
                          "(the id of the call it answers).")
        if content is None:
            raise Problem("missing_field", f'Message {i} (tool) has no "content" (the result of the call).')
        return {"role": "tool", "tool_call_id": call_id, "content": content}
    if "tool_calls" in m and role != "assistant":
        raise Problem("wrong_role_order", f'Message {i} is a {role} message with "tool_calls"; only the '
                      "assistant calls tools.")
    if calls is not None:
        if type(calls) is not list or not calls:
            raise Problem("invalid_tool_call", f'The "tool_calls" of message {i} must be a non-empty list.')
        message: Message = {"role": role, "content": "" if blank else content,
                            "tool_calls": [_call(c, i, j, validators) for j, c in enumerate(calls, 1)]}
        ids = [c["id"] for c in message["tool_calls"]]
        if len(set(ids)) != len(ids):
            raise Problem("invalid_tool_call", f"Two calls of message {i} have the same id.")
    else:
        if blank:
            raise Problem("empty_field", f"Message {i} ({role}) has an empty content"
                          + (" and no tool calls." if role == "assistant" else "."))
        message = {"role": role, "content": content}
    weight = m.get("weight")
    if weight is not None:
        if role != "assistant" or type(weight) is not int or weight not in (0, 1):
            raise Problem("invalid_weight", f"Message {i} has a weight; only assistant messages have "
                          "one, and it is 0 (do not learn) or 1 (learn).")
        message["weight"] = weight
    return message


def _call(c: object, i: int, j: int, validators: dict) -> dict:
    where = f"Call {j} of message {i}"
    function = c.get("function") if type(c) is dict else None
    if type(function) is not dict:
        raise Problem("invalid_tool_call", f'{where} must be {{"id": ..., "type": "function", '
                      '"function": {"name": ..., "arguments": "{...}"}}.')
    call_id = c.get("id")
    if type(call_id) is not str or not call_id:
        raise Problem("invalid_tool_call", f'{where} has no "id" (the tool message that answers it '
                      'names it in "tool_call_id").')
    name = function.get("name")
    if name not in validators:
        known = ", ".join(f'"{n}"' for n in list(validators)[:8])
        raise Problem("invalid_tool_call", f"{where} calls {json.dumps(name)[:60]}, which is not one of "
                      f"the example's tools ({known}).")
    arguments = function.get("arguments", "{}")
    if type(arguments) is str:
        try:
            value = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as error:
            raise Problem("invalid_tool_call", f'The arguments of {where.lower()} ("{name}") are not valid '
                          f"JSON ({error.msg} at character {error.pos + 1}).") from None
    else:
        value = arguments
    if type(value) is not dict:
        raise Problem("invalid_tool_call", f'The arguments of {where.lower()} ("{name}") must be a JSON '
                      "object of parameter names and values.")
    validator = validators[name]
    if validator is not None:
        error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
        if error is not None:
            at = "/".join(map(str, error.absolute_path))
            place = f' at "{at}"' if at else ""
            raise Problem("invalid_tool_call", f'The arguments of {where.lower()} do not match the parameters '
                          f'of "{name}"{place}: {error.message}.')
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(value, ensure_ascii=False, separators=(",", ":"))}}


def _check_order(messages: list[Message]) -> None:
    roles = [m["role"] for m in messages]
    first = 0
    while first < len(roles) and roles[first] == "system":
        first += 1
    if first == len(roles) or roles[first] != "user":
        raise Problem("wrong_role_order", "The conversation must start with a user message (after any "
                      "system message).")
    if "system" in roles[first:]:
        raise Problem("wrong_role_order", f"Message {roles.index('system', first) + 1} is a system message "
                      "in the middle of the conversation; system messages may only come first.")
    if roles[-1] != "assistant":
        raise Problem("wrong_role_order", "The conversation must end with an assistant message (an answer "
                      f"or a tool call to learn), but the last message is from the {roles[-1]}.")
    if all(m.get("weight") == 0 for m in messages if m["role"] == "assistant"):
        raise Problem("nothing_to_learn", "Every assistant message has weight 0, so there is nothing to "
                      "learn from this example.")
