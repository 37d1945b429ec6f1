"""Train/eval split: seeded, deterministic, streamed, and equal to validation's counts."""

from __future__ import annotations

import io

from datacheck.normalize import write_normalized
from datacheck.split import is_eval_example, split_normalized
from tests.datacheck.factories import chats, jsonl, validate


def test_assignment_is_deterministic_close_to_the_fraction_and_seeded():
    picks = [is_eval_example(i, seed=0, eval_fraction=0.1) for i in range(20_000)]
    assert picks == [is_eval_example(i, seed=0, eval_fraction=0.1) for i in range(20_000)]
    assert 1_850 < sum(picks) < 2_150
    other = [is_eval_example(i, seed=1, eval_fraction=0.1) for i in range(20_000)]
    assert other != picks
    assert not any(is_eval_example(i, seed=0, eval_fraction=0.0) for i in range(1000))


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
