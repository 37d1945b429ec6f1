"""Guidance from the rules of thumb per task type."""

from __future__ import annotations

import pytest

from datacheck.guidance import guidance_for
from tests.datacheck.factories import chats, jsonl, validate


@pytest.mark.parametrize(("goal", "task_type", "minimum", "low", "high"), [
    ("classification", "classification", 500, 2_000, 5_000),
    ("extraction", "extraction", 500, 2_000, 5_000),
    ("brand_voice", "style", 500, 2_000, 5_000),
    ("support_answers", "generation", 2_000, 10_000, 50_000),
    ("code", "generation", 2_000, 10_000, 50_000),
    ("other", "generation", 2_000, 10_000, 50_000),
])
def test_rules_of_thumb(goal, task_type, minimum, low, high):
    g = guidance_for(goal, 100)
    assert (g.task_type, g.minimum, g.recommended_low, g.recommended_high) == (task_type, minimum, low, high)
    assert g.verdict == "too_few"
    assert [guidance_for(goal, n).verdict for n in (minimum, low, high, high + 1)] == [
        "enough", "recommended", "recommended", "plenty"]


def test_messages_are_plain_words():
    assert guidance_for("brand_voice", 120).message.startswith(
        "You have 120 training examples. For writing in your brand's voice we advise at least 500, "
        "and 2,000 to 5,000 for good results.")
    assert "within the 2,000 to 5,000 we recommend for sorting texts into categories" in (
        guidance_for("classification", 3000).message)


def test_report_carries_guidance_and_a_warning_when_too_few():
    report = validate(jsonl(*chats(40)), goal="support_answers")
    assert report.guidance.verdict == "too_few"
    assert any(w.kind == "too_few_examples" for w in report.warnings)
    assert report.model_dump_json()  # the whole report is JSON-serialisable
