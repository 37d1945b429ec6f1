"""Tool calling in `/v1/chat/completions`: the request's `tools` and `tool_choice`, the messages
that carry calls and results, and the answer's `tool_calls`, parsed from the model's text
(planner.tools.parse_tool_calls). Text that holds no valid call is returned as content."""

from __future__ import annotations

import json
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, Field

from app.errors import InvalidInput
from planner.tools import openai_tool_calls, parse_tool_calls


class FunctionDef(BaseModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class CallFunction(BaseModel):
    name: str = Field(max_length=64)
    arguments: str = Field(max_length=200_000)


class ToolCall(BaseModel):
    id: str = Field(max_length=128)
    type: Literal["function"] = "function"
    function: CallFunction


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


def tool_params(tools: list[ToolDef] | None, tool_choice: ToolChoice | None) -> dict[str, Any]:
    """What the inference process needs of a request's tools (checked here, with the reason)."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise InvalidInput("tool_choice asks for a tool call, but the request has no tools.", param="tool_choice")
        return {}
    for tool in tools:
        if tool.function.parameters is not None:
            try:
                Draft202012Validator.check_schema(tool.function.parameters)
            except SchemaError as error:
                raise InvalidInput(f"The parameters of tool {tool.function.name!r} are not a valid JSON Schema: "
                                   f"{error.message}.", param="tools") from None
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidInput("Two tools have the same name; tool names must be distinct.", param="tools")
    if isinstance(tool_choice, NamedToolChoice) and tool_choice.function.name not in names:
        raise InvalidInput(f"tool_choice names {tool_choice.function.name!r}, which is not one of the tools.",
                           param="tool_choice")
    choice = tool_choice.model_dump() if isinstance(tool_choice, BaseModel) else (tool_choice or "auto")
    return {"tools": [t.model_dump(exclude_none=True) for t in tools], "tool_choice": choice}


def message_dict(role: str, content: str | None, tool_calls: list[ToolCall] | None,
                 tool_call_id: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": role, "content": content or ""}
    if tool_calls:
        if role != "assistant":
            raise InvalidInput("Only assistant messages carry tool_calls.", param="messages")
        for call in tool_calls:
            try:
                json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError:
                raise InvalidInput(f"The arguments of the call {call.id!r} are not valid JSON.",
                                   param="messages") from None
        message["tool_calls"] = [c.model_dump() for c in tool_calls]
    if role == "tool":
        if not tool_call_id:
            raise InvalidInput("A tool message needs the tool_call_id of the call it answers.", param="messages")
        message["tool_call_id"] = tool_call_id
    return message


def split_answer(text: str, finish_reason: str, with_tools: bool) -> tuple[str | None, list[dict] | None, str]:
    """(content, tool_calls, finish_reason) of a generated answer."""
    if not with_tools:
        return text, None, finish_reason
    content, calls = parse_tool_calls(text)
    if not calls:
        return text, None, finish_reason
    return content or None, openai_tool_calls(calls), "tool_calls"
