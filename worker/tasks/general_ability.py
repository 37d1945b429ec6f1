"""The general-ability check: does fine-tuning make the model forget what it knew?

Every run's automatic evaluation asks the base and the fine-tuned model the same small set of
questions that ships with the studio (``general_ability.jsonl``, written for it: arithmetic,
capitals and simple facts, in English and in each other language ``datacheck.language``
detects), greedy, and scores each answer by one checkable rule (``is_correct``). A drop in
the fine-tuned model's share of right answers is forgetting, full fine-tuning's main risk.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

QUESTIONS = Path(__file__).with_name("general_ability.jsonl")
MAX_NEW_TOKENS = 32
# Fewer right answers than this, against the base model, is reported as a drop; one or two
# questions either way out of ~50 is within what greedy decoding of a changed model varies by.
NOTABLE_DROP = 3
_SPACELESS = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")  # kana, Han, Hangul


@lru_cache(maxsize=1)
def questions() -> tuple[dict[str, Any], ...]:
    with open(QUESTIONS, encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def is_correct(answer: str, accepted: list[str]) -> bool:
    """The rule: one accepted answer appears in the first 200 characters of the answer, as a
    whole number (digits: "12" is not found in "120"), a whole word, or, in scripts written
    without spaces (Chinese, Japanese, Korean), anywhere."""
    text = _fold(answer[:200])
    for expected in map(_fold, accepted):
        if expected.isdigit():
            pattern = rf"(?<!\d){re.escape(expected)}(?!\d)"
        elif _SPACELESS.search(expected):
            pattern = re.escape(expected)
        else:
            pattern = rf"(?<!\w){re.escape(expected)}(?!\w)"
        if re.search(pattern, text):
            return True
    return False


def ask(model, tokenizer) -> list[str]:  # noqa: ANN001
    """The model's greedy answers to every question, in file order."""
    from worker.training.generate import generate_answers

    prompts = [[{"role": "user", "content": q["question"]}] for q in questions()]
    return generate_answers(model, tokenizer, prompts, max_new_tokens=MAX_NEW_TOKENS, batch_size=16)


def score(base_answers: list[str], tuned_answers: list[str]) -> dict[str, Any]:
    """Right answers of each model, overall and by language, and each question's outcome."""
    items, by_language = [], {}
    for q, base, tuned in zip(questions(), base_answers, tuned_answers):
        b, t = is_correct(base, q["answers"]), is_correct(tuned, q["answers"])
        items.append({"id": q["id"], "language": q["language"], "question": q["question"],
                      "base": base, "finetuned": tuned, "base_correct": b, "finetuned_correct": t})
        lang = by_language.setdefault(q["language"], {"questions": 0, "base": 0, "finetuned": 0})
        lang["questions"] += 1
        lang["base"] += b
        lang["finetuned"] += t
    n = len(items)
    base_right = sum(i["base_correct"] for i in items)
    tuned_right = sum(i["finetuned_correct"] for i in items)
    return {"questions": n, "base_correct": base_right, "finetuned_correct": tuned_right,
            "base": base_right / n if n else 0.0, "finetuned": tuned_right / n if n else 0.0,
            "dropped": base_right - tuned_right >= NOTABLE_DROP, "by_language": by_language, "items": items}
