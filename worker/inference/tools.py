"""The prompt of a chat request with tools (see planner.tools): rendered with the base model's own
chat template, tools included, and the text the answer is made to start with for tool_choice."""

from __future__ import annotations

from planner.tools import choose_tools, template_messages


def render_prompt(tokenizer, messages: list[dict], tools: list[dict] | None, tool_choice) -> tuple[str, str]:
    """(prompt text, forced start of the answer: it ends the prompt and begins the answer's text)."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    shown, start = choose_tools(tools, tool_choice, template)
    uses_tools = any(m.get("tool_calls") or m["role"] == "tool" for m in messages)
    if shown is None and not uses_tools:
        plain = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
        return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True), ""
    if uses_tools and not tools:
        raise ValueError("The messages hold tool calls or tool results, but the request has no tools.")
    text = tokenizer.apply_chat_template(template_messages(messages), tools=shown or tools, tokenize=False,
                                         add_generation_prompt=True)
    return text + start, start
