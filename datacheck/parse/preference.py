"""Preference pairs: one prompt, a better (chosen) and a worse (rejected) answer.

Two input formats, auto-detected by their keys (``detect.classify_keys``):
- ``{"prompt", "chosen", "rejected"}`` (TRL's): the prompt is text or a list of messages
  ending with a user turn; each answer is text, one assistant message, or a list of messages
  ending with the assistant answer;
- OpenAI's preference fine-tuning JSONL: ``{"input": {"messages": [...]},
  "preferred_output": [{"role": "assistant", ...}], "non_preferred_output": [...]}``.

Both become a ``Pair``; its record, written for the training engine, is::

    {"prompt": [messages...], "chosen": [{"role": "assistant", "content": str}],
     "rejected": [{"role": "assistant", "content": str}]}

The prompt follows the conversation rules of ``parse.messages`` (roles, order, non-blank
text), except that it ends with the user's turn; the two answers must be non-blank and differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datacheck.problems import Problem
from datacheck.types import DatasetFormat, Message

_ANSWER_KEYS = {
    DatasetFormat.PREFERENCE: ("chosen", "rejected"),
    DatasetFormat.OPENAI_PREFERENCE: ("preferred_output", "non_preferred_output"),
}


@dataclass
class Pair:
    """A checked preference pair."""

    prompt: list[Message]
    chosen: str
    rejected: str

    def chosen_conversation(self) -> list[Message]:
        """The prompt and the better answer, as one conversation (for statistics)."""
        return self.prompt + [{"role": "assistant", "content": self.chosen}]

    def record(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}]}


def normalize_pair(fmt: DatasetFormat, obj: dict) -> Pair:
    """One parsed example as a checked Pair, or raise Problem (the reason names the field)."""
    chosen_key, rejected_key = _ANSWER_KEYS[fmt]
    if fmt is DatasetFormat.OPENAI_PREFERENCE:
        source = obj.get("input")
        if not isinstance(source, dict) or "messages" not in source:
            raise Problem("missing_field", '"input" must be an object with a "messages" list (the prompt).')
        prompt = _prompt_messages(source["messages"], '"input.messages"')
    else:
        if "prompt" not in obj:
            raise Problem("missing_field", 'The pair has no "prompt": add the question both answers reply to.')
        prompt = _prompt_messages(obj["prompt"], '"prompt"')
    chosen = _answer(obj[chosen_key], chosen_key)
    rejected = _answer(obj[rejected_key], rejected_key)
    if chosen.strip() == rejected.strip():
        raise Problem("same_answers", f'"{chosen_key}" and "{rejected_key}" are the same answer, so there is '
                      "nothing to prefer. Make the rejected answer the worse one.")
    return Pair(prompt, chosen, rejected)


def _prompt_messages(value: Any, field: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise Problem("empty_field", f"{field} is empty.")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise Problem("wrong_type", f"{field} must be text or a non-empty list of messages.")
    messages = []
    for turn, message in enumerate(value, start=1):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise Problem("unknown_role", f'{field}, message {turn}: "role" must be system, user or assistant.')
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise Problem("empty_field", f'{field}, message {turn}: "content" must be non-empty text.')
        if message["role"] == "system" and messages and messages[-1]["role"] != "system":
            raise Problem("wrong_role_order", f"{field}, message {turn}: a system message may only come first.")
        messages.append({"role": message["role"], "content": content})
    first = next((m for m in messages if m["role"] != "system"), None)
    if first is None or first["role"] != "user":
        raise Problem("wrong_role_order", f"{field}: the first message after the system message must be from the user.")
    if messages[-1]["role"] != "user":
        raise Problem("wrong_role_order", f"{field} must end with the user's message: the answers reply to it.")
    return messages


def _answer(value: Any, field: str) -> str:
    if isinstance(value, list):
        if not value or not isinstance(value[-1], dict) or value[-1].get("role") != "assistant":
            raise Problem("unknown_role", f'"{field}" must end with an assistant message (the answer).')
        value = value[-1].get("content")
    elif isinstance(value, dict):
        if value.get("role") not in (None, "assistant"):
            raise Problem("unknown_role", f'"{field}" must be an assistant message.')
        value = value.get("content")
    if not isinstance(value, str):
        raise Problem("wrong_type", f'"{field}" must be text or an assistant message.')
    if not value.strip():
        raise Problem("empty_field", f'"{field}" is empty: both answers need text.')
    return value
