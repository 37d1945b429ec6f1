"""Near-duplicate examples: MinHash signatures and locality-sensitive hashing (datasketch).

Two examples are near duplicates when the Jaccard similarity of their word 3-grams (after
lower-casing and collapsing white space) is about ``threshold`` or more: the same question with a
word changed, a typo fixed, a different greeting. Exact copies are found too.

    near_duplicate_groups(texts)            -> [[0, 7], [3, 9, 12], ...]  (within one set)
    near_duplicates_between(train, eval)    -> [(eval_index, train_index), ...]

``near_duplicate_groups`` is the function other steps use (dedupe before the split): each group
lists the indices of texts that resemble each other, in order; keeping the first of each group
and dropping the rest leaves no near duplicates. Everything is kept in memory: a signature of
``num_perm`` 64-bit values per example (about 0.5 KB with the defaults).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import numpy as np
from datasketch import MinHash, MinHashLSH

THRESHOLD = 0.8
NUM_PERM = 64
SHINGLE = 3  # words per shingle
_WORD = re.compile(r"\w+", re.UNICODE)


def example_text(record: dict) -> str:
    """The text of a normalised record ({"messages": [...]}) that near-duplicate checks compare."""
    return "\n".join(str(m.get("content") or "") for m in record.get("messages") or [])


def _shingles(text: str) -> list[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE:
        return [" ".join(words).encode()] if words else [b""]
    return [" ".join(words[i:i + SHINGLE]).encode() for i in range(len(words) - SHINGLE + 1)]


def signatures(texts: Iterable[str], *, num_perm: int = NUM_PERM) -> Iterator[MinHash]:
    """One MinHash per text (datasketch's batch update: the hashing loop runs in numpy)."""
    seed = MinHash(num_perm=num_perm)  # the permutations are drawn once and shared
    for text in texts:
        m = MinHash(num_perm=num_perm, permutations=seed.permutations, scheme=seed.scheme)
        m.update_batch(_shingles(text))
        yield m


def _lsh(threshold: float, num_perm: int) -> MinHashLSH:
    return MinHashLSH(threshold=threshold, num_perm=num_perm)


def _similar(a: MinHash, b: MinHash, threshold: float) -> bool:
    # LSH returns candidates; the estimated Jaccard similarity confirms them.
    return float(np.count_nonzero(a.hashvalues == b.hashvalues)) / len(a.hashvalues) >= threshold


def near_duplicate_groups(texts: Iterable[str], *, threshold: float = THRESHOLD,
                          num_perm: int = NUM_PERM) -> list[list[int]]:
    """Groups (of two or more indices, ascending; groups ordered by their first index) of texts
    that are near duplicates of one another. Each text is compared with those before it; a text
    joins the group of the first earlier text it resembles (single link)."""
    lsh = _lsh(threshold, num_perm)
    kept: list[MinHash] = []
    group_of: dict[int, int] = {}  # index -> first index of its group
    groups: dict[int, list[int]] = {}
    for index, m in enumerate(signatures(texts, num_perm=num_perm)):
        kept.append(m)
        match = min((c for c in lsh.query(m) if _similar(m, kept[c], threshold)), default=None)
        if match is not None:
            root = group_of.get(match, match)
            group_of[index] = root
            groups.setdefault(root, [root]).append(index)
        lsh.insert(index, m, check_duplication=False)
    return [sorted(g) for _, g in sorted(groups.items())]


def near_duplicates_between(train: Iterable[str], evals: Iterable[str], *,
                            threshold: float = THRESHOLD,
                            num_perm: int = NUM_PERM) -> list[tuple[int, int]]:
    """(evaluation index, first training index it resembles) for each evaluation text that is a
    near duplicate of a training text."""
    lsh = _lsh(threshold, num_perm)
    kept: list[MinHash] = []
    for index, m in enumerate(signatures(train, num_perm=num_perm)):
        kept.append(m)
        lsh.insert(index, m, check_duplication=False)
    out = []
    for index, m in enumerate(signatures(evals, num_perm=num_perm)):
        match = min((c for c in lsh.query(m) if _similar(m, kept[c], threshold)), default=None)
        if match is not None:
            out.append((index, match))
    return out


class NearDuplicateIndex:
    """Texts seen so far, to ask whether a new one resembles any (augmentation uses it to drop
    generated examples that repeat existing ones)."""

    def __init__(self, *, threshold: float = THRESHOLD, num_perm: int = NUM_PERM) -> None:
        self.threshold, self.num_perm = threshold, num_perm
        self._lsh = _lsh(threshold, num_perm)
        self._kept: list[MinHash] = []
        self._seed = MinHash(num_perm=num_perm)

    def _sig(self, text: str) -> MinHash:
        m = MinHash(num_perm=self.num_perm, permutations=self._seed.permutations,
                    scheme=self._seed.scheme)
        m.update_batch(_shingles(text))
        return m

    def match(self, text: str) -> int | None:
        """The index of the first added text this one resembles, or None."""
        m = self._sig(text)
        return min((c for c in self._lsh.query(m) if _similar(m, self._kept[c], self.threshold)),
                   default=None)

    def add(self, text: str) -> int:
        m = self._sig(text)
        self._kept.append(m)
        self._lsh.insert(len(self._kept) - 1, m, check_duplication=False)
        return len(self._kept) - 1
