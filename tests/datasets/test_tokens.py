"""The stored trained-token preview cut at a training length, as the trainer cuts (pure view code;
the preview itself is drawn by worker.training.data, see tests/worker/training/test_data.py)."""

from __future__ import annotations

from app.datasets import tokens
from app.models import Dataset

# "ab|cd|ef|gh" (4 tokens of 2 characters): tokens 0-1 context, 2-3 trained
EXAMPLE = {"tokens": 4, "first_trained": 2, "segments": [
    {"text": "abcd", "trained": False, "start": 0, "end": 2, "breaks": [0, 2]},
    {"text": "efgh", "trained": True, "start": 2, "end": 4, "breaks": [0, 2]}]}


def _dataset(entry: dict) -> Dataset:
    return Dataset(report={"token_preview": {"complete": True, "examples_scanned": 1, "models": {"7": entry}}})


def test_the_cut_falls_on_the_token_where_the_trainer_cuts():
    d = _dataset({"model_name": "M", "examples": [EXAMPLE], "first_trained_min": 2})
    whole = tokens.preview(d, 7, 8).examples[0]
    assert [(p.text, p.kind) for p in whole.pieces] == [("abcd", "context"), ("efgh", "trained")]
    assert (whole.kept, whole.trained, whole.cut) == (4, 2, 0)
    cut = tokens.preview(d, 7, 3).examples[0]
    assert [(p.text, p.kind) for p in cut.pieces] == [("abcd", "context"), ("ef", "trained"), ("gh", "cut")]
    assert (cut.kept, cut.trained, cut.cut) == (3, 1, 1)
    nothing = tokens.preview(d, 7, 1).examples[0]
    assert [(p.text, p.kind) for p in nothing.pieces] == [("ab", "context"), ("cdefgh", "cut")]
    assert nothing.trained == 0
    assert tokens.preview(d, 8, 3) is None  # no preview drawn for that model


def test_nothing_trained_only_when_known_for_every_example():
    d = _dataset({"model_name": "M", "examples": [EXAMPLE], "first_trained_min": 2})
    assert tokens.nothing_trained(d, 7, 3) is None
    assert "earliest answer starts at token 2" in tokens.nothing_trained(d, 7, 2)
    assert tokens.nothing_trained(d, 8, 2) is None
    d.report["token_preview"]["complete"] = False
    assert tokens.nothing_trained(d, 7, 2) is None
    broken = _dataset({"model_name": "M", "error": "no chat template"})
    assert tokens.nothing_trained(broken, 7, 2) is None and tokens.preview(broken, 7, 2).error
