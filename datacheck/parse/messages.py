"""How one example of any format becomes the internal record: checked messages.

The internal record, which the training engine reads one JSON object per line, is::

    {"messages": [{"role": "system" | "user" | "assistant", "content": str,
                   "weight": 0 | 1}]}     # "weight" is optional, on assistant turns only

Rules for a conversation (the same for every input format, decided here once):
- roles are "system", "user" and "assistant"; other keys of a message (e.g. "name") are
  ignored; "content" must be a non-blank string;
- system messages may only come first; the first other message must be from the user;
- two messages of the same role in a row are allowed (chat templates accept them);
- the conversation must end with an assistant message, and at least one assistant message
  must be learned from (``weight`` absent or 1); ``weight`` is 0 or 1, on assistant turns.
"""

from __future__ import annotations

import json
from operator import itemgetter

import orjson

from datacheck.parse.tools import is_tool_example, tool_example
from datacheck.problems import Problem
from datacheck.parse.preference import Pair, normalize_pair
from datacheck.types import FORMAT_LABELS, PREFERENCE_FORMATS, DatasetFormat, Message

ROLES = frozenset(("system", "user", "assistant"))
# The role sequences nearly every file consists of, accepted without walking the rules.
_USUAL_ORDERS = frozenset((("user", "assistant"), ("system", "user", "assistant")))
_role = itemgetter("role")

# Fields each flat JSON format needs; "system" is accepted by all of them.
_FLAT_FIELDS = {
    DatasetFormat.PROMPT_COMPLETION: ("prompt", "completion"),
    DatasetFormat.INPUT_OUTPUT: ("input", "output"),
}


def normalize_object(fmt: DatasetFormat, obj: object) -> list[Message] | dict | Pair:
    """Turn one parsed JSON example into checked internal messages, or raise Problem.
    A chat example with tools becomes its whole record, a dict (see ``parse.tools``); the
    preference formats give a Pair (see ``parse.preference``)."""
    if type(obj) is not dict:
        raise Problem("not_an_object", _not_object_reason(obj))
    if fmt is DatasetFormat.CHAT:
        if is_tool_example(obj):
            return tool_example(obj)
        return chat_messages(obj)
    if fmt in PREFERENCE_FORMATS:
        return normalize_pair(fmt, obj)
    if fmt is DatasetFormat.ALPACA:
        return alpaca_messages(obj)
    prompt_key, answer_key = _FLAT_FIELDS[fmt]
    prompt = required_text(obj, prompt_key, fmt)
    answer = required_text(obj, answer_key, fmt)
    return pair_messages(prompt, answer, optional_text(obj, "system"))


def pair_messages(prompt: str, answer: str, system: str | None = None) -> list[Message]:
    """The conversation for one prompt and its answer (with an optional system message)."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    messages.append({"role": "assistant", "content": answer})
    return messages


def alpaca_messages(obj: dict) -> list[Message]:
    """Alpaca: the instruction, then the optional input after a blank line, as the prompt."""
    instruction = required_text(obj, "instruction", DatasetFormat.ALPACA)
    extra = optional_text(obj, "input")
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    answer = required_text(obj, "output", DatasetFormat.ALPACA)
    return pair_messages(prompt, answer, optional_text(obj, "system"))


def required_text(obj: dict, key: str, fmt: DatasetFormat) -> str:
    value = obj.get(key)
    if value is None:
        found = ", ".join(f'"{k}"' for k in list(obj)[:6]) or "none"
        raise Problem(
            "missing_field",
            f'The "{key}" field is missing (fields found: {found}). Every example must '
            f"have the same fields as the first ones, which are in {FORMAT_LABELS[fmt]}.",
        )
    if type(value) is not str:
        raise Problem("wrong_type", f'The "{key}" field must be text, but it is {_kind(value)}.')
    if not value or value.isspace():
        raise Problem("empty_field", f'The "{key}" field is empty.')
    return value


def optional_text(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise Problem("wrong_type", f'The "{key}" field must be text, but it is {_kind(value)}.')
    return value if value and not value.isspace() else None


def chat_messages(obj: dict) -> list[Message]:
    """Check an OpenAI-style {"messages": [...]} example and return its clean messages."""
    raw = obj.get("messages")
    if raw is None:
        found = ", ".join(f'"{k}"' for k in list(obj)[:6]) or "none"
        raise Problem(
            "missing_field",
            f'The "messages" field is missing (fields found: {found}). In chat format every '
            'example is {"messages": [{"role": "user", "content": "..."}, ...]}.',
        )
    if type(raw) is not list:
        raise Problem("wrong_type",
                      f'"messages" must be a list of messages, but it is {_kind(raw)}.')
    if not raw:
        raise Problem("empty_field", 'The "messages" list is empty.')
    messages = []
    for i, m in enumerate(raw, 1):
        # The usual message, a role and a text and nothing else, is checked inline; anything else
        # goes through _chat_message, which says what is wrong or keeps the weight. Either way
        # the message is rebuilt, so that its keys come in one order (duplicates are found on
        # the normalised record).
        if (type(m) is dict and len(m) == 2 and type(content := m.get("content")) is str
                and type(role := m.get("role")) is str and role in ROLES
                and content and not content.isspace()):
            messages.append({"role": role, "content": content})
        else:
            messages.append(_chat_message(m, i))
    check_order(messages)
    return messages


def _chat_message(m: object, i: int) -> Message:
    if type(m) is not dict:
        raise Problem("wrong_type", f"Message {i} must be an object with a role and a content, "
                      f"but it is {_kind(m)}.")
    role = m.get("role")
    if role == "tool" or "tool_calls" in m:
        raise Problem("invalid_tools", f"Message {i} is a tool call or a tool result, but the example has "
                      'no "tools" list defining the tools it may call.')
    if type(role) is not str or role not in ROLES:  # a list or an object is no role either
        if role is None:
            raise Problem("missing_field", f'Message {i} has no "role" (system, user or assistant).')
        raise Problem("unknown_role", f"Message {i} has the role {_show(role)}; the role must be "
                      "system, user or assistant.")
    content = m.get("content")
    if type(content) is not str:
        if content is None:
            raise Problem("missing_field", f'Message {i} ({role}) has no "content".')
        raise Problem("wrong_type", f'The "content" of message {i} ({role}) must be text, but it '
                      f"is {_kind(content)}.")
    if not content or content.isspace():
        raise Problem("empty_field", f"Message {i} ({role}) has an empty content.")
    weight = m.get("weight")
    if weight is None:
        return {"role": role, "content": content}
    if role != "assistant":
        raise Problem("invalid_weight", f'Message {i} is a {role} message with a "weight"; only '
                      "assistant messages can have one.")
    if type(weight) is not int or weight not in (0, 1):
        raise Problem("invalid_weight", f"Message {i} has the weight {_show(weight)}; the weight "
                      "must be 0 (do not learn this answer) or 1 (learn it).")
    return {"role": role, "content": content, "weight": weight}


def check_order(messages: list[Message]) -> None:
    """Enforce the conversation rules in the module docstring."""
    roles = list(map(_role, messages))
    if len(roles) <= 3 and tuple(roles) in _USUAL_ORDERS and messages[-1].get("weight") != 0:
        return
    first = 0
    while first < len(roles) and roles[first] == "system":
        first += 1
    if first == len(roles):
        raise Problem("wrong_role_order", "The conversation has only system messages; it needs "
                      "a user message and an assistant answer.")
    if roles[first] != "user":
        raise Problem("wrong_role_order", f"Message {first + 1} is from the assistant, but the "
                      "conversation must start with a user message (after any system message).")
    if "system" in roles[first:]:
        later = roles.index("system", first) + 1
        raise Problem("wrong_role_order", f"Message {later} is a system message in the middle "
                      "of the conversation; system messages may only come first.")
    if roles[-1] != "assistant":
        raise Problem("wrong_role_order", "The conversation must end with an assistant message "
                      "(the answer to learn), but the last message is from the user.")
    if messages[-1].get("weight") == 0 and all(
            m.get("weight") == 0 for m in messages if m["role"] == "assistant"):
        raise Problem("nothing_to_learn", "Every assistant message has weight 0, so there is "
                      "nothing to learn from this example.")


def _not_object_reason(obj: object) -> str:
    if isinstance(obj, list):
        return "It is a JSON list [...], but each example must be one JSON object {...}."
    return f"It is {_kind(obj)}, but each example must be one JSON object {{...}}."


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "empty (null)" if value is None else type(value).__name__


def _show(value: object) -> str:
    """The value as it is written in the file (JSON), cut to 40 characters.

    ``json.dumps`` recurses: orjson first refuses, without recursing, what is too deep to
    write safely (more than 255 levels, or an integer past 64 bits), which is named by its kind.
    """
    if isinstance(value, str):
        text = f'"{value}"'
    else:
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return _kind(value)
        text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."
