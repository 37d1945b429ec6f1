"""Statistics: length histograms, tokens per epoch, language, and their units."""

from __future__ import annotations

import random

from datacheck.stats import LengthAccumulator, bucket_bounds, bucket_of, split_roles
from tests.datacheck.factories import chat, jsonl, validate, word_tokens


def test_buckets_cover_every_length_once():
    for value in list(range(300)) + [10**6, 2**31 - 1, 123_456_789]:
        start, end = bucket_bounds(bucket_of(value))
        assert start <= value < end
        assert end - start <= max(1, start // 8)


def test_percentiles_are_within_a_bucket_and_bins_add_up():
    rng = random.Random(1)
    values = [int(rng.lognormvariate(6, 1)) for _ in range(5000)]
    acc = LengthAccumulator("characters")
    for v in values:
        acc.add(v)
    result = acc.result()
    exact = sorted(values)
    for q, got in ((0.5, result.p50), (0.9, result.p90), (0.99, result.p99)):
        want = exact[int(q * len(exact)) - 1]
        assert want <= got <= want * 1.13 + 1
    assert (result.min, result.max, result.count) == (exact[0], exact[-1], 5000)
    assert sum(b.count for b in result.bins) == 5000 and len(result.bins) <= 20
    assert result.bins[0].start <= exact[0] and result.bins[-1].end > exact[-1]
    assert all(a.end == b.start for a, b in zip(result.bins, result.bins[1:]))


def test_character_statistics_are_labelled_and_tokens_estimated():
    data = jsonl(chat("abcd", "0123456789", system="xy"), chat("ab", "0123"))
    stats = validate(data, eval_fraction=0).stats
    assert stats.length_unit == "characters" and stats.tokens_are_estimated
    assert (stats.prompt_lengths.total, stats.answer_lengths.total) == (8, 14)
    assert (stats.prompt_lengths.max, stats.answer_lengths.min) == (6, 4)
    assert stats.tokens_per_epoch == 6  # 22 characters / 4, rounded up


def test_token_statistics_with_a_tokenizer():
    calls = []

    def count(texts):
        calls.append(len(texts))
        return word_tokens(texts)

    data = jsonl(*[chat("one two three", "four five") for _ in range(300)])
    stats = validate(data, count_tokens=count, eval_fraction=0, message_overhead_tokens=4).stats
    assert stats.length_unit == "tokens" and not stats.tokens_are_estimated
    assert stats.prompt_lengths.p50 == 3 and stats.answer_lengths.max == 2
    assert stats.example_lengths.max == 3 + 2 + 2 * 4
    assert stats.tokens_per_epoch == 300 * 13
    assert calls == [512, 88]  # batched: 256 examples, two texts each


def test_tokens_per_epoch_counts_training_examples_only():
    data = jsonl(*[chat(f"q {i}", "a b c") for i in range(100)])
    report = validate(data, count_tokens=word_tokens, message_overhead_tokens=0)
    assert report.stats.tokens_per_epoch == 5 * report.counts.train_examples
    assert report.counts.eval_examples > 0


def test_weight_zero_answers_count_as_prompt():
    conv = {"messages": [
        {"role": "user", "content": "aaaa"},
        {"role": "assistant", "content": "bbbbbbbb", "weight": 0},
        {"role": "user", "content": "cc"},
        {"role": "assistant", "content": "d"},
    ]}
    stats = validate(jsonl(conv)).stats
    assert (stats.prompt_lengths.total, stats.answer_lengths.total) == (14, 1)


def test_language_of_a_german_dataset():
    rows = [chat("Wo ist meine Bestellung?", "Sie ist auf dem Weg und wir melden uns bald bei Ihnen.")] * 3
    stats = validate(jsonl(*rows)).stats
    assert stats.language == "de" and stats.languages[0].name == "German"


def test_statistics_do_not_depend_on_when_lengths_are_folded_in(monkeypatch):
    import datacheck.stats as stats_module

    data = jsonl(*[chat("q" * (i % 97 + 1), "a" * (i * 7 % 300 + 1)) for i in range(500)])
    reference = validate(data).stats
    monkeypatch.setattr(stats_module, "_FLUSH_EVERY", 7)
    assert validate(data).stats == reference


def test_split_roles_fast_paths_agree_with_the_rules():
    def message(role: str, content: str, **extra) -> dict:
        return {"role": role, "content": content, **extra}

    assert split_roles([message("system", "s"), message("user", "u"), message("assistant", "a")]) == (
        ["s", "u"], ["a"])
    # three messages that are not [system, user, learned answer] take the general rule
    assert split_roles([message("system", "s"), message("user", "u"), message("user", "v")]) == (
        ["s", "u", "v"], [])
    assert split_roles([message("system", "s"), message("assistant", "a"), message("assistant", "b")]) == (
        ["s"], ["a", "b"])
    assert split_roles([message("system", "s"), message("user", "u"), message("assistant", "a", weight=0)]) == (
        ["s", "u", "a"], [])
    assert split_roles([message("user", "u"), message("assistant", "a"), message("assistant", "b")]) == (
        ["u"], ["a", "b"])
