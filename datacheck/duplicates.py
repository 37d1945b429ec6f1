"""A compact multiset of 64-bit hashes, optionally tagged with line numbers.

Used to find exact duplicate examples and prompts shared by the training and evaluation
sets without keeping any text: 8 bytes per example (12 with a line number) in ``array``
buckets (no Python set of strings, no per-item objects). Buckets are examined one at a
time at the end, so the extra memory then is one bucket's worth.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

_BUCKETS = 256


class HashIndex:
    def __init__(self, *, tagged: bool = True) -> None:
        self._hashes = [array("q") for _ in range(_BUCKETS)]
        self._tags = [array("I") for _ in range(_BUCKETS)] if tagged else None

    def add(self, value: int, tag: int = 0) -> None:
        """Add a hash (any int: Python's ``hash`` of the text) with its line number."""
        bucket = value & 255
        self._hashes[bucket].append(value)
        if self._tags is not None:
            self._tags[bucket].append(tag)

    def groups(self) -> Iterator[list[int]]:
        """Tags (line numbers, in order) of each hash seen more than once."""
        assert self._tags is not None, "groups() needs a tagged index"
        for bucket in range(_BUCKETS):
            hashes = self._hashes[bucket]
            if len(set(hashes)) == len(hashes):  # the usual case, decided in C
                continue
            by_hash: dict[int, list[int]] = {}
            for value, tag in zip(hashes, self._tags[bucket]):
                by_hash.setdefault(value, []).append(tag)
            yield from (tags for tags in by_hash.values() if len(tags) > 1)

    def shared_with(self, other: HashIndex) -> Iterator[int]:
        """Tags of the items here whose hash ``other`` also has (this index is tagged)."""
        assert self._tags is not None, "shared_with() needs a tagged index"
        for bucket in range(_BUCKETS):
            if not self._hashes[bucket] or not other._hashes[bucket]:
                continue
            theirs = set(other._hashes[bucket])
            for value, tag in zip(self._hashes[bucket], self._tags[bucket]):
                if value in theirs:
                    yield tag
