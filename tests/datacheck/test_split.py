"""Train/eval split: seeded, deterministic, streamed, and equal to validation's counts."""

from __future__ import annotations

import io

from datacheck.normalize import write_normalized
from datacheck.split import example_key, is_eval_key, split_normalized
from tests.datacheck.factories import chat, chats, jsonl, validate


def test_assignment_is_deterministic_close_to_the_fraction_and_seeded():
    keys = [example_key(r["messages"]) for r in chats(20_000)]
    picks = [is_eval_key(k, seed=0, eval_fraction=0.1) for k in keys]
    assert picks == [is_eval_key(k, seed=0, eval_fraction=0.1) for k in keys]
    assert 1_850 < sum(picks) < 2_150
    other = [is_eval_key(k, seed=1, eval_fraction=0.1) for k in keys]
    assert other != picks
    assert not any(is_eval_key(k, seed=0, eval_fraction=0.0) for k in keys[:1000])


def test_the_split_key_ignores_case_spacing_and_punctuation_not_roles_or_words():
    a = chat("Where is my order?", "It ships tomorrow.")["messages"]
    assert example_key(a) == example_key(chat("where IS my ORDER?", "it ships tomorrow.")["messages"])
    accents = chat("Où est ma COMMANDE ?", "Elle part DEMAIN.")["messages"]
    assert example_key(accents) == example_key(chat("où est ma commande ?", "elle part demain.")["messages"])
    # spacing and punctuation too (new lines inside the JSON record included)
    assert example_key(a) == example_key(chat("Where is my order", "It ships, tomorrow")["messages"])
    assert example_key(a) == example_key(chat("where is  my order ?", "It ships\ntomorrow !")["messages"])
    assert example_key(a) == example_key(chat("Where is my order?", "It  ships\ttomorrow.")["messages"])

    assert example_key(a) != example_key(chat("Where is my parcel?", "It ships tomorrow.")["messages"])
    masked = [a[0], {**a[1], "weight": 0}]
    assert example_key(a) != example_key(masked)
    # reproducible across processes (Python's own str hash is not): a fixed value
    assert example_key(a) == example_key([dict(m) for m in a]) and example_key(a) < 2**63


def test_split_of_the_normalised_file_matches_validation():
    data = jsonl(*chats(500))
    report = validate(data, eval_fraction=0.2, seed=5)
    normalized = io.BytesIO()
    write_normalized(io.BytesIO(data), normalized)
    normalized.seek(0)
    train, evals = io.BytesIO(), io.BytesIO()
    counts = split_normalized(normalized, train, evals, eval_fraction=0.2, seed=5)
    assert (counts.train, counts.eval) == (report.counts.train_examples, report.counts.eval_examples)
    assert len(train.getvalue().splitlines()) == counts.train
    assert 70 < counts.eval < 130
