"""The kinds of problems a dataset file can have, and the exception that carries one.

Every kind has a short plain-language title (for counts in the UI); every problem carries a
full sentence that a person who never heard of JSON can act on.
"""

from __future__ import annotations

ERROR_TITLES: dict[str, str] = {
    "empty_file": "The file is empty",
    "utf16": "The file is UTF-16, not UTF-8",
    "binary": "The file is not text",
    "not_utf8": "Text that is not UTF-8",
    "unknown_format": "Format not recognised",
    "not_examples": "Not shaped like examples",
    "line_too_long": "Line too long",
    "bad_json": "Not valid JSON",
    "too_deep": "Nested too deeply",
    "nul_byte": "NUL byte in the text",
    "not_an_object": "Not a JSON object",
    "missing_field": "Missing field",
    "empty_field": "Empty field",
    "wrong_type": "Wrong type of value",
    "unknown_role": "Unknown role",
    "wrong_role_order": "Messages in the wrong order",
    "invalid_weight": "Invalid weight",
    "nothing_to_learn": "No answer to learn from",
    "invalid_tools": "Invalid tool definitions",
    "invalid_tool_call": "Invalid tool call",
    "unanswered_call": "Tool call without its result",
    "too_many_tokens": "Longer than the model can read",
    "mapping_required": "Columns not chosen",
    "missing_column": "Column not found",
    "wrong_field_count": "Wrong number of columns",
    "bad_csv": "Broken CSV row",
    "same_answers": "Chosen and rejected answers are the same",
}

WARNING_TITLES: dict[str, str] = {
    "blank_lines": "Blank lines skipped",
    "duplicates": "Duplicate examples",
    "near_empty_answers": "Very short answers",
    "truncated": "Examples that will be cut short",
    "leakage": "Same prompt in training and evaluation",
    "kept_together": "Copies kept on one side of the split",
    "small_eval": "Small evaluation set",
    "mixed_languages": "Several languages",
    "too_few_examples": "Few examples",
}


def too_deep(what: str) -> Problem:
    """JSON nested past the parser's limit: orjson's 1,024 levels for JSON Lines, Python's
    recursion limit (about 1,000 levels, less the reader's own stack) for JSON arrays."""
    return Problem("too_deep", f"{what} is nested too deeply (about 1,000 levels or more of [ or "
                   "{ inside one another). An example needs only a few levels, as in "
                   '{"messages": [{"role": "user", "content": "..."}]}: check the program that '
                   "wrote this file.")


def nul_byte(position: int) -> Problem:
    return Problem("nul_byte", f"The line contains a NUL byte (an invisible character of code 0) "
                   f"at position {position:,}. Remove it: text never holds one, it is usually left "
                   "by a program that wrote the file badly.")


class Problem(Exception):
    """One problem with one example (or with the whole file when ``line`` is None).

    ``reason`` is a sentence that does not mention the line; the report adds it.
    """

    def __init__(self, kind: str, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        assert kind in ERROR_TITLES, kind
        self.kind = kind
        self.reason = reason
        self.line = line

    def __repr__(self) -> str:
        return f"Problem({self.kind!r}, {self.reason!r}, line={self.line})"
