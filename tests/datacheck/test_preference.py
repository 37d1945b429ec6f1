"""Preference pairs: both formats detected, normalised to one record, errors per line, guidance in pairs."""

from __future__ import annotations

import io

import orjson

from datacheck import ValidationOptions, read_rows, validate_dataset
from datacheck.types import DatasetFormat
from tests.datacheck.factories import errors_at, jsonl, validate


def trl_pair(i: int, *, messages: bool = False) -> dict:
    prompt = f"Question number {i}?"
    if messages:
        return {"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": f"Good answer {i}."}],
                "rejected": [{"role": "assistant", "content": f"Bad answer {i}."}]}
    return {"prompt": prompt, "chosen": f"Good answer {i}.", "rejected": f"Bad answer {i}."}


def openai_pair(i: int) -> dict:
    return {"input": {"messages": [{"role": "user", "content": f"Question number {i}?"}], "tools": [],
                      "parallel_tool_calls": True},
            "preferred_output": [{"role": "assistant", "content": f"Good answer {i}."}],
            "non_preferred_output": [{"role": "assistant", "content": f"Bad answer {i}."}]}


def normalised(data: bytes) -> tuple:
    train, evals = io.BytesIO(), io.BytesIO()
    report = validate_dataset(io.BytesIO(data), options=ValidationOptions(eval_fraction=0), train_out=train,
                              eval_out=evals)
    return report, [orjson.loads(line) for line in train.getvalue().splitlines()]


EXPECTED = {"prompt": [{"role": "user", "content": "Question number 0?"}],
            "chosen": [{"role": "assistant", "content": "Good answer 0."}],
            "rejected": [{"role": "assistant", "content": "Bad answer 0."}]}


def test_plain_trl_pairs_are_detected_and_normalised():
    report, rows = normalised(jsonl(*[trl_pair(i) for i in range(5)]))
    assert report.status == "valid" and report.format is DatasetFormat.PREFERENCE
    assert rows[0] == EXPECTED and len(rows) == 5
    assert report.counts.pairs == 5 and report.counts.examples == 5
    assert "5 pairs" in report.explanation and "chosen" in report.explanation


def test_message_list_pairs_keep_the_system_prompt():
    report, rows = normalised(jsonl(trl_pair(0, messages=True)))
    assert report.status == "valid"
    assert rows[0]["prompt"][0] == {"role": "system", "content": "Be kind."}
    assert rows[0]["chosen"] == EXPECTED["chosen"]


def test_openai_preference_format_is_detected_and_normalised():
    report, rows = normalised(jsonl(*[openai_pair(i) for i in range(3)]))
    assert report.status == "valid" and report.format is DatasetFormat.OPENAI_PREFERENCE
    assert rows[0] == EXPECTED


def test_bad_pairs_get_line_level_errors():
    bad = [
        trl_pair(0),
        {"prompt": "Q?", "chosen": "Same.", "rejected": "Same."},
        {"prompt": "Q?", "chosen": "", "rejected": "No."},
        {"chosen": "A.", "rejected": "B."},
        {"prompt": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
         "chosen": "A.", "rejected": "B."},
        {"prompt": "Q?", "chosen": [{"role": "user", "content": "A."}], "rejected": "B."},
        {"input": "Q?", "preferred_output": "A.", "non_preferred_output": "B."},  # the file's format rules
    ]
    report = validate(jsonl(*bad), eval_fraction=0)
    assert report.status == "invalid"
    assert errors_at(report) == [(2, "same_answers"), (3, "empty_field"), (4, "missing_field"),
                                 (5, "wrong_role_order"), (6, "unknown_role"), (7, "missing_field")]
    assert "Line 5:" in report.errors[3].message and "end with the user's message" in report.errors[3].message


def test_openai_pairs_with_errors():
    bad = [openai_pair(0),
           {"input": "Q?", "preferred_output": [{"role": "assistant", "content": "A."}],
            "non_preferred_output": [{"role": "assistant", "content": "B."}]},
           {"input": {"messages": [{"role": "user", "content": "Q?"}]}, "preferred_output": [],
            "non_preferred_output": [{"role": "assistant", "content": "B."}]}]
    report = validate(jsonl(*bad), eval_fraction=0)
    assert errors_at(report) == [(2, "missing_field"), (3, "unknown_role")]
    assert '"preferred_output" must end with an assistant message' in report.errors[1].message


def test_guidance_counts_pairs_with_their_own_rule_of_thumb():
    report = validate(jsonl(*[trl_pair(i) for i in range(400)]), eval_fraction=0, goal="brand_voice")
    assert report.guidance.minimum == 300 and report.guidance.verdict == "enough"
    assert "400 preference pairs" in report.guidance.message
    assert any("rejected answer" in tip for tip in report.guidance.tips)
    chat_report = validate(jsonl(*[{"messages": [{"role": "user", "content": f"Q{i}"},
                                                 {"role": "assistant", "content": f"A{i}"}]} for i in range(400)]),
                           eval_fraction=0, goal="brand_voice")
    assert chat_report.guidance.verdict == "too_few"  # 500 examples are needed without pairs


def test_preview_shows_both_answers_of_a_pair():
    _, rows = normalised(jsonl(trl_pair(0), trl_pair(1)))
    stored = io.BytesIO(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (first, second) = read_rows(stored, 0, 2)
    assert first.messages == EXPECTED["prompt"]
    assert (first.chosen, first.rejected) == ("Good answer 0.", "Bad answer 0.")
    assert second.chosen == "Good answer 1."
