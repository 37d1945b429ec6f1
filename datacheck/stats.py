"""Dataset statistics gathered in the same single pass as validation, in constant memory.

Lengths are counted in tokens when the caller passes ``count_tokens`` (the base model's
tokenizer, supplied by the worker), else in characters, and every figure says which.
Histograms use fixed log-spaced buckets (8 per doubling, so any percentile is exact to
within 12.5 %), which needs no list of lengths.
"""

from __future__ import annotations

from array import array
from collections import Counter

from datacheck.language import LANGUAGE_NAMES, LanguageSampler
from datacheck.types import DatasetStats, HistogramBin, LanguageShare, LengthStats, Message

CHARS_PER_TOKEN = 4  # rough average for English-like text, used only for estimates
_EXACT = 32  # lengths below this have a bucket each
_SUB = 8  # buckets per doubling above that
_MAX_DISPLAY_BINS = 20
_FLUSH_EVERY = 65536


def bucket_of(value: int) -> int:
    if value < _EXACT:
        return value
    e = value.bit_length() - 1
    return _EXACT + (e - 5) * _SUB + ((value >> (e - 3)) & 7)


def bucket_bounds(index: int) -> tuple[int, int]:
    """[start, end) of a bucket."""
    if index < _EXACT:
        return index, index + 1
    e, sub = 5 + (index - _EXACT) // _SUB, (index - _EXACT) % _SUB
    step = 1 << (e - 3)
    return (8 + sub) * step, (9 + sub) * step


class LengthAccumulator:
    """Counts, total, min, max and a log-bucket histogram of a stream of lengths.

    ``pending`` takes lengths at C speed (``pending.append``); ``flush`` then folds them
    into the histogram by distinct value, so Python works per distinct length, not per
    example. ``result`` flushes first.
    """

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.counts = [0] * (_EXACT + 40 * _SUB)
        self.total = self.max = 0
        self.min = 1 << 62
        self.pending = array("q")

    @property
    def n(self) -> int:
        return sum(self.counts) + len(self.pending)

    def add(self, value: int) -> None:
        self.pending.append(value)

    def flush(self) -> None:
        values = self.pending
        if not values:
            return
        self.total += sum(values)
        self.max = max(self.max, max(values))
        self.min = min(self.min, min(values))
        for value, count in Counter(values).items():
            self.counts[bucket_of(value)] += count
        del values[:]  # in place: callers may hold values.append

    def percentile(self, q: float) -> int:
        self.flush()
        target, seen = q * self.n, 0
        for index, count in enumerate(self.counts):
            seen += count
            if count and seen >= target:
                return min(bucket_bounds(index)[1] - 1, self.max)
        return self.max

    def result(self) -> LengthStats:
        self.flush()
        n = self.n
        return LengthStats(
            unit=self.unit, count=n, total=self.total,
            mean=round(self.total / n, 1) if n else 0.0,
            min=self.min if n else 0, max=self.max, p50=self.percentile(0.5),
            p90=self.percentile(0.9), p99=self.percentile(0.99), bins=self.display_bins())

    def display_bins(self) -> list[HistogramBin]:
        """At most 20 bins from the smallest to the largest length seen."""
        used = [i for i, c in enumerate(self.counts) if c]
        if not used:
            return []
        span = range(used[0], used[-1] + 1)
        per_bin = -(-len(span) // _MAX_DISPLAY_BINS)
        bins = []
        for first in range(span.start, span.stop, per_bin):
            last = min(first + per_bin, span.stop) - 1
            bins.append(HistogramBin(start=bucket_bounds(first)[0], end=bucket_bounds(last)[1],
                                     count=sum(self.counts[first : last + 1])))
        return bins


def split_roles(messages: list[Message]) -> tuple[list[str], list[str]]:
    """(prompt texts, answer texts): answers are the assistant turns that are learned
    (weight absent or 1); everything else (system, user, weight-0 answers) is prompt."""
    n = len(messages)
    if n == 2 and "weight" not in messages[1]:  # the usual [user, assistant]
        return [messages[0]["content"]], [messages[1]["content"]]
    if (n == 3 and messages[0]["role"] == "system" and messages[1]["role"] == "user"
            and messages[2]["role"] == "assistant" and "weight" not in messages[2]):
        return [messages[0]["content"], messages[1]["content"]], [messages[2]["content"]]
    prompt, answer = [], []
    for m in messages:
        if m["role"] == "assistant" and m.get("weight", 1):
            answer.append(m["content"])
        else:
            prompt.append(m["content"])
    return prompt, answer


class StatsCollector:
    """Lengths, tokens per epoch and language of the valid examples."""

    def __init__(self, *, tokens: bool, message_overhead: int) -> None:
        unit = "tokens" if tokens else "characters"
        self.tokens = tokens
        self.message_overhead = message_overhead
        self.prompt = LengthAccumulator(unit)
        self.answer = LengthAccumulator(unit)
        self.example = LengthAccumulator(unit)
        # array.append of each accumulator's pending lengths: no Python call per length
        self._add_prompt, self._add_answer = self.prompt.pending.append, self.answer.pending.append
        self._add_example = self.example.pending.append
        self.train_total = 0
        self.languages = LanguageSampler()

    def add(self, prompt_len: int, answer_len: int, n_messages: int, train: bool) -> int:
        """Record one example's lengths; returns its total length (with template overhead)."""
        total = prompt_len + answer_len + n_messages * self.message_overhead
        self._add_prompt(prompt_len)
        self._add_answer(answer_len)
        self._add_example(total)
        if train:
            self.train_total += total
        if len(self.example.pending) >= _FLUSH_EVERY:
            self.prompt.flush()
            self.answer.flush()
            self.example.flush()
        return total

    def result(self, examples: int, duplicates: int) -> DatasetStats:
        per_epoch = self.train_total if self.tokens else -(-self.train_total // CHARS_PER_TOKEN)
        return DatasetStats(
            examples=examples, length_unit=self.prompt.unit,
            prompt_lengths=self.prompt.result(), answer_lengths=self.answer.result(),
            example_lengths=self.example.result(), tokens_per_epoch=per_epoch,
            tokens_are_estimated=not self.tokens,
            language=self.languages.main_language(),
            languages=[LanguageShare(code=c, name=LANGUAGE_NAMES.get(c, c), share=round(s, 3))
                       for c, s in self.languages.shares()],
            duplicates=duplicates)
