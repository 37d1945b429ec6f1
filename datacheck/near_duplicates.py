"""Near-duplicate examples: MinHash signatures and locality-sensitive hashing (datasketch).

Two examples are near duplicates when the Jaccard similarity of their word 3-grams (after
lower-casing and collapsing white space) is about ``threshold`` or more: the same question with a
word changed, a typo fixed, a different greeting. Exact copies are found too.

    near_duplicate_groups(texts)            -> [[0, 7], [3, 9, 12], ...]  (within one set)
    near_duplicates_between(train, eval)    -> [(eval_index, train_index), ...]

``near_duplicate_groups`` is the function other steps use (dedupe before the split): each group
lists the indices of texts that resemble each other, in order; keeping the first of each group
and dropping the rest leaves no near duplicates. The index keeps ``num_perm`` hash values per text (about 0.5 KB with
the defaults) and the LSH buckets; the texts themselves are not kept.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import numpy as np
from datasketch import MinHash, MinHashLSH

THRESHOLD = 0.8
NUM_PERM = 64
SHINGLE = 3  # words per shingle
CANDIDATE_MARGIN = 0.2  # LSH candidates from this much below the threshold (then confirmed)
_WORD = re.compile(r"\w+", re.UNICODE)


def example_text(record: dict) -> str:
    """The text of a normalised record ({"messages": [...]}) that near-duplicate checks compare."""
    return "\n".join(str(m.get("content") or "") for m in record.get("messages") or [])


_MASK32 = np.uint64(0xFFFFFFFF)
_K1, _K2 = np.uint64(0x9E3779B1), np.uint64(0x85EBCA77)


def shingle_hashes(text: str) -> list[int]:
    """32-bit hashes of the word 3-grams of ``text`` (lower-cased; punctuation and spacing
    ignored): each word is hashed once (CRC-32), the 3-grams are combined in numpy."""
    words = _WORD.findall(text.lower())
    if not words:
        return [0]
    h = np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint64, count=len(words))
    if len(h) < SHINGLE:
        return [int(zlib.crc32(" ".join(words).encode()))]
    return ((h[:-2] * _K1 + h[1:-1] * _K2 + h[2:]) & _MASK32).tolist()


class NearDuplicateIndex:
    """Texts seen so far, to ask which earlier one a new text resembles. Used by the functions
    below, by the cleaning scan (one streamed pass) and by augmentation (to drop generated
    examples that repeat existing ones)."""

    def __init__(self, *, threshold: float = THRESHOLD, num_perm: int = NUM_PERM) -> None:
        self.threshold, self.num_perm = threshold, num_perm
        # candidates are drawn at a lower similarity than the one confirmed: LSH tuned at the
        # threshold itself misses about one pair in ten just above it (0.84 with 64 permutations)
        self._lsh = MinHashLSH(threshold=max(threshold - CANDIDATE_MARGIN, 0.1), num_perm=num_perm)
        self._kept: list[np.ndarray] = []  # the signatures' hash values, to confirm candidates
        self._seed = MinHash(num_perm=num_perm)  # the permutations are drawn once and shared

    def __len__(self) -> int:
        return len(self._kept)

    def signature(self, text: str) -> MinHash:
        m = MinHash(num_perm=self.num_perm, permutations=self._seed.permutations, scheme=self._seed.scheme,
                    hashfunc=int)  # the values are hashes already: int() keeps them, in C
        m.update_batch(shingle_hashes(text))  # datasketch permutes them in numpy
        return m

    def matches(self, text: str | MinHash) -> list[int]:
        """The indices of every added text this one resembles. LSH gives candidates; the
        estimated Jaccard similarity of the signatures confirms them."""
        m = self.signature(text) if isinstance(text, str) else text
        values = m.hashvalues
        return [c for c in self._lsh.query(m)
                if np.count_nonzero(self._kept[c] == values) >= self.threshold * len(values)]

    def match(self, text: str | MinHash) -> int | None:
        """The index of the first added text this one resembles, or None."""
        return min(self.matches(text), default=None)

    def add(self, text: str | MinHash) -> int:
        m = self.signature(text) if isinstance(text, str) else text
        self._kept.append(m.hashvalues)
        self._lsh.insert(len(self._kept) - 1, m, check_duplication=False)
        return len(self._kept) - 1

    def add_and_match(self, text: str) -> int | None:
        """Add the text; return the first earlier text it resembles (None when it is new)."""
        m = self.signature(text)
        found = self.match(m)
        self.add(m)
        return found


class Groups:
    """Near-duplicate groups built one text at a time: a text joins the group of the first
    earlier text it resembles (single link)."""

    def __init__(self) -> None:
        self._root: dict[int, int] = {}
        self._groups: dict[int, list[int]] = {}

    def join(self, index: int, match: int) -> None:
        root = self._root.get(match, match)
        self._root[index] = root
        self._groups.setdefault(root, [root]).append(index)

    def result(self) -> list[list[int]]:
        return [sorted(g) for _, g in sorted(self._groups.items())]


def near_duplicate_groups(texts: Iterable[str], *, threshold: float = THRESHOLD,
                          num_perm: int = NUM_PERM) -> list[list[int]]:
    """Groups (of two or more indices, ascending; groups ordered by their first index) of texts
    that are near duplicates of one another. Keep the first of each group, drop the rest."""
    index, groups = NearDuplicateIndex(threshold=threshold, num_perm=num_perm), Groups()
    for i, text in enumerate(texts):
        match = index.add_and_match(text)
        if match is not None:
            groups.join(i, match)
    return groups.result()


def near_duplicates_between(train: Iterable[str], evals: Iterable[str], *,
                            threshold: float = THRESHOLD,
                            num_perm: int = NUM_PERM) -> list[tuple[int, int]]:
    """(evaluation index, first training index it resembles) for each evaluation text that is a
    near duplicate of a training text."""
    index = NearDuplicateIndex(threshold=threshold, num_perm=num_perm)
    for text in train:
        index.add(text)
    return [(i, match) for i, text in enumerate(evals) if (match := index.match(text)) is not None]
