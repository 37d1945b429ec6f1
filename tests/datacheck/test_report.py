"""Warnings: duplicates, near-empty answers, truncation, train/eval leakage, small eval."""

from __future__ import annotations

import io

import orjson

from datacheck import ValidationOptions, validate_dataset

from datacheck.split import example_key, is_eval_key
from tests.datacheck.factories import chat, chats, jsonl, validate, word_tokens


def warning(report, kind):
    (found,) = [w for w in report.warnings if w.kind == kind]
    return found


def test_exact_duplicates_with_their_lines():
    rows = chats(30)
    report = validate(jsonl(*rows[:10], rows[2], *rows[10:], rows[2], rows[5]), eval_fraction=0)
    dup = warning(report, "duplicates")
    assert dup.count == 3 and dup.lines == [11, 32, 33]
    assert dup.message.startswith("3 examples are an exact copy of an earlier one "
                                  "(for example line 11 repeats line 3)")
    assert report.stats.duplicates == 3
    assert report.status == "valid"


def test_same_content_with_different_key_order_is_a_duplicate():
    a = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}'
    b = b'{"messages": [{"content": "hi", "role": "user"}, {"content": "yo", "role": "assistant"}]}'
    assert warning(validate(jsonl(a, b)), "duplicates").lines == [2]


def test_near_empty_answers():
    report = validate(jsonl(chat(), chat(answer="ok"), chat(answer=" k "), chat(answer="yes")))
    near = warning(report, "near_empty_answers")
    assert (near.count, near.lines) == (2, [2, 3])
    assert "shorter than 3 characters (lines 2, 3)" in near.message
    assert "short labels on purpose (for classification), ignore this" in near.message


def test_examples_longer_than_the_training_length():
    long = chat(answer=" ".join(["w"] * 30))
    report = validate(jsonl(chat(), long, long, chat()), count_tokens=word_tokens, max_length=20,
                      max_tokens=100)
    cut = warning(report, "truncated")
    assert (cut.count, cut.lines) == (2, [2, 3])
    assert "longer than 20 tokens, the training length, so their end will be cut off" in cut.message
    assert report.status == "valid"


def _side(record) -> bool:
    return is_eval_key(example_key(record["messages"]), seed=0, eval_fraction=0.1)


def test_leakage_between_the_split_parts():
    """Same prompt, another answer: a different example (the split may part them), so it is
    reported; the prompt matches apart from case."""
    rows = chats(60)
    train_index = next(i for i in range(60) if not _side(rows[i]))
    prompt = rows[train_index]["messages"][0]["content"].upper()
    other = next(chat(prompt, f"A different answer {n}.") for n in range(1000)
                 if _side(chat(prompt, f"A different answer {n}.")))
    rows.append(other)
    leak = warning(validate(jsonl(*rows)), "leakage")
    assert leak.count == 1 and leak.lines == [61]
    assert leak.message.startswith(
        "1 evaluation example has the same prompt as a training example, apart from case (line 61).")


def test_copies_are_kept_on_one_side_of_the_split():
    """The new user's case: many exact (and case) copies; none may reach the
    evaluation set while its twin trains, and the page says the split was deduplicated."""
    rows = chats(300)
    copies = [rows[i * 3] for i in range(82)]
    near = [chat(r["messages"][0]["content"].lower(), r["messages"][1]["content"].upper()) for r in rows[1:40:3]]
    data = jsonl(*rows, *copies, *near)
    report = validate(data, eval_fraction=0.2, seed=3)
    assert report.counts.eval_examples > 30
    assert [w.kind for w in report.warnings if w.kind == "leakage"] == []
    kept = warning(report, "kept_together")
    assert kept.count == 82 + len(near) and kept.lines[0] == 301
    assert "no evaluation example also appears in training" in kept.message
    # the exact copies are still reported as duplicates
    assert warning(report, "duplicates").count == 82


def test_near_duplicate_groups_from_elsewhere_follow_their_first_example():
    """A MinHash source passes groups of example indices: each member takes its first one's side."""
    rows = chats(200)
    groups = [[i, i + 100] for i in range(100)]
    train_out, eval_out = io.BytesIO(), io.BytesIO()
    validate_dataset(io.BytesIO(jsonl(*rows)), options=ValidationOptions(
        eval_fraction=0.3, duplicate_groups=groups), train_out=train_out, eval_out=eval_out)
    evals = {orjson.loads(x)["messages"][0]["content"] for x in eval_out.getvalue().splitlines()}
    assert evals
    for first, second in groups:
        a, b = (rows[i]["messages"][0]["content"] for i in (first, second))
        assert (a in evals) == (b in evals)


def test_leakage_with_a_separate_eval_file():
    train = jsonl(*chats(30))
    evals = jsonl(*chats(3, start=100), chat("Question number 7?", "Other answer."))
    report = validate(train, eval_data=evals)
    assert report.eval_from == "file"
    assert (report.counts.train_examples, report.counts.eval_examples) == (30, 4)
    leak = warning(report, "leakage")
    assert leak.eval_lines == [4] and leak.lines == []
    assert "(evaluation file line 4)" in leak.message
    assert "30 training examples and 4 in the evaluation file" in report.explanation


def test_errors_in_the_eval_file_are_labelled():
    report = validate(jsonl(*chats(5)), eval_data=jsonl(chat(), b"{nope"))
    assert [(e.file, e.line, e.kind) for e in report.errors] == [("eval", 2, "bad_json")]
    assert report.errors[0].message.startswith("Evaluation file, line 2: ")
    empty = validate(jsonl(*chats(5)), eval_data=b"")
    assert [(e.file, e.kind) for e in empty.errors] == [("eval", "empty_file")]
    assert empty.errors[0].message.startswith("Evaluation file: The file is empty")


def test_small_eval_set():
    report = validate(jsonl(*chats(12)))
    small = warning(report, "small_eval")
    assert "so evaluation scores will be missing or noisy" in small.message
    assert all(w.kind != "small_eval" for w in validate(jsonl(*chats(12)), eval_fraction=0).warnings)


def test_mixed_languages():
    french = [chat(f"Bonjour, où est ma commande {i} ?",
                   "Votre commande est en route et nous vous écrivons demain.") for i in range(8)]
    english = [chat(f"Hello, where is my order {i}?",
                    "Your order is on the way and we will write to you.") for i in range(4)]
    report = validate(jsonl(*french, *english))
    mixed = warning(report, "mixed_languages")
    assert "67% French, 33% English" in mixed.message
    assert report.stats.language == "fr"
