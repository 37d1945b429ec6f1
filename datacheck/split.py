"""Train/eval split, deduplicated before it is drawn: every example is assigned by a hash of
(seed, its record in lower case without punctuation or spacing: ``duplicates.record_key``), so
copies of an example (exact, or differing only in case, spacing or punctuation) always land on
the same side and no evaluation example repeats a training one. Reworded near copies are found
by the near-duplicate scan after validation (``studio.scan_dataset``), which moves the
evaluation members of every group that crosses the split into training (``move_crossing``);
runs of the dataset wait for that. The split is deterministic, streamed (no shuffle
in memory) and the same in validation and in writing. Each distinct example goes to eval with
probability ``eval_fraction``: the eval share is close to, not exactly, that fraction.

Near duplicates found elsewhere (the MinHash groups of the near-duplicate finder) plug in as
``duplicate_groups``: lists of 0-based example indices (file order); every member follows the
side of the group's first example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import BinaryIO

import orjson
from pydantic import BaseModel

from datacheck.duplicates import record_key
from datacheck.read import iter_line_batches
from datacheck.types import Message

_MASK = (1 << 64) - 1


class SplitCounts(BaseModel):
    train: int
    eval: int


def example_key(messages: list[Message]) -> int:
    """The split key of an example given by its messages, as validation keys it (the record
    ``{"messages": messages}``): equal for copies that differ only in case, spacing or
    punctuation (roles and weights included, so a masked answer is not its trained twin)."""
    return record_key(orjson.dumps({"messages": messages}))


def is_eval_key(key: int, *, seed: int, eval_fraction: float) -> bool:
    """Whether the examples of split key ``key`` belong to the eval set."""
    return eval_picker(seed, eval_fraction)(key)


class Splitter:
    """Decides the side of each example in file order, copies and groups kept together."""

    def __init__(self, seed: int, eval_fraction: float,
                 duplicate_groups: Iterable[Iterable[int]] | None = None) -> None:
        self.pick = eval_picker(seed, eval_fraction)
        self.leader: dict[int, int] = {}
        for group in duplicate_groups or ():
            members = sorted(set(group))
            for index in members:
                self.leader.setdefault(index, members[0])
        self.leader_keys: dict[int, int] = {}

    def key(self, index: int, record: bytes) -> int:
        """The side's key of example ``index``, whose normalised record (one JSONL line) is ``record``."""
        key = record_key(record)
        first = self.leader.get(index)
        if first is None:
            return key
        if first == index:
            self.leader_keys[index] = key
            return key
        return self.leader_keys.get(first, key)

    def is_eval(self, key: int) -> bool:
        return self.pick(key)


def eval_picker(seed: int, eval_fraction: float) -> Callable[[int], bool]:
    """A 64-bit key (an example's split key) -> in the eval set, with the seed and fraction bound."""
    offset = ((seed + 1) * 0xD1B54A32D192ED03) & _MASK
    threshold = int(eval_fraction * 2**64)

    def is_eval(index: int) -> bool:
        x = (index * 0x9E3779B97F4A7C15 + offset) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK  # splitmix64 finaliser
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        return (x ^ (x >> 31)) < threshold

    return is_eval


def split_normalized(source: BinaryIO, train_out: BinaryIO, eval_out: BinaryIO, *,
                     eval_fraction: float = 0.1, seed: int = 0,
                     duplicate_groups: Iterable[Iterable[int]] | None = None) -> SplitCounts:
    """Split a normalised JSONL file (one record per line) into train and eval files,
    exactly as ``validate_dataset`` counted them with the same seed, fraction and groups."""
    train = evals = 0
    index = 0
    splitter = Splitter(seed, eval_fraction, duplicate_groups)
    for batch in iter_line_batches(source, max_line_bytes=1 << 62):
        for line in batch:
            if not line:
                continue
            if splitter.is_eval(splitter.key(index, line)):
                eval_out.write(line + b"\n")
                evals += 1
            else:
                train_out.write(line + b"\n")
                train += 1
            index += 1
    return SplitCounts(train=train, eval=evals)


def move_crossing(train: BinaryIO, evals: BinaryIO, train_out: BinaryIO, eval_out: BinaryIO, *,
                  moved: Iterable[int]) -> SplitCounts:
    """Re-split stored normalised files after the near-duplicate scan: the evaluation examples
    ``moved`` (0-based, the scan's ``crossing``) join the end of the training file, in order;
    every other example keeps its side and order. Moving them into training (never the other
    way) leaves no near duplicate across the split, whatever key the first split used."""
    moving, kept, n_train, n_eval = set(moved), [], 0, 0
    for batch in iter_line_batches(train, max_line_bytes=1 << 62):
        for line in batch:
            if line:
                train_out.write(line + b"\n")
                n_train += 1
    index = 0
    for batch in iter_line_batches(evals, max_line_bytes=1 << 62):
        for line in batch:
            if not line:
                continue
            if index in moving:
                kept.append(line)
            else:
                eval_out.write(line + b"\n")
                n_eval += 1
            index += 1
    for line in kept:
        train_out.write(line + b"\n")
    return SplitCounts(train=n_train + len(kept), eval=n_eval)
