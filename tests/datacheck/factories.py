"""Small builders for dataset files used by the dataset tests."""

from __future__ import annotations

import io

import orjson

from datacheck import ValidationOptions, ValidationReport, validate_dataset


def chat(user: str = "Where is my order?", answer: str = "It ships tomorrow.", *,
         system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def jsonl(*records: object) -> bytes:
    """One line per record: dicts/lists are dumped, bytes are kept as they are."""
    return b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records)


def chats(n: int, start: int = 0) -> list[dict]:
    return [chat(f"Question number {i}?", f"Answer number {i}.") for i in range(start, start + n)]


def validate(data: bytes, *, filename: str | None = None, eval_data: bytes | None = None,
             count_tokens=None, **options) -> ValidationReport:
    return validate_dataset(
        io.BytesIO(data), filename=filename, options=ValidationOptions(**options),
        count_tokens=count_tokens,
        eval_source=io.BytesIO(eval_data) if eval_data is not None else None)


def word_tokens(texts: list[str]) -> list[int]:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return [len(t.split()) for t in texts]


def errors_at(report: ValidationReport) -> list[tuple[int | None, str]]:
    return [(e.line, e.kind) for e in report.errors]


def near_duplicate_families(n: int = 120) -> list[dict]:
    """n questions, each with a punctuation variant, a spacing variant and a reworded variant
    (one word changed near the end: a MinHash-level near duplicate, not a normalised copy)."""
    import random

    rng = random.Random(7)
    words = ("order delivery refund invoice account password shipping parcel warranty store customer "
             "help product return exchange size colour payment card address week day hour shop").split()
    records = []
    for i in range(n):
        text = " ".join(rng.choices(words, k=40))
        answer = f"Answer {i}: " + " ".join(rng.choices(words, k=12))
        question = f"Question {i}: {text}"
        reworded = question.rsplit(" ", 3)
        records += [chat(question + "?", answer),
                    chat(question.upper() + " ?!", answer + "."),           # case and punctuation
                    chat(question.replace(" ", "  ", 5) + "?", answer.replace(" ", "\n", 2)),  # spacing
                    chat(" ".join([reworded[0], "zebra", *reworded[2:]]) + "?", answer)]    # reworded
    return records
