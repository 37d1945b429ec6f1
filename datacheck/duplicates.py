"""A compact multiset of 64-bit hashes, optionally tagged with line numbers.

Used to find exact duplicate examples and prompts shared by the training and evaluation
sets without keeping any text: 8 bytes per example (12 with a line number) in two flat
``array`` columns that the validation hot path appends to directly (``hashes.append``,
``tags.append``: C calls, no Python call per example). Duplicates are found at the end
with numpy (a sort, then a stable argsort only where some hash repeats; a binary search in
the other index's sorted hashes for those two indexes share), which holds sorted copies of
the columns while it runs: 9 bytes per example without duplicates, up to ~30 with them.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator, Sequence

import numpy as np
import xxhash

# Normalisation deletes punctuation and collapses white space. ASCII marks are deleted on the
# UTF-8 bytes (bytes.translate runs in C; ASCII bytes never occur inside a multi-byte character),
# the usual marks of the other detected languages, and non-ASCII spaces, only in text that has
# non-ASCII characters. No split/join: that was two thirds of the time on the validation hot path.
_ASCII_PUNCTUATION = b'!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'
_SPACES = bytes.maketrans(b"\t\n\r\x0b\x0c", b"     ")
_OTHER = str.maketrans({**{c: None for c in "¿¡«»“”„‘’‚…–—·。、，！？：；「」『』（）،؛؟"},
                        **{c: " " for c in "\u00a0\u2002\u2003\u2009\u200b\u3000"}})


def normalise(text: str) -> bytes:
    """The words of ``text`` in lower case without punctuation, one space apart, as UTF-8:
    copies that differ only in case, spacing or punctuation ("Where is my order?" / "where is
    my order") become equal. Bytes, because the key is hashed from them."""
    folded = text.casefold()
    if not folded.isascii():
        folded = folded.translate(_OTHER)
    out = folded.encode().translate(_SPACES, _ASCII_PUNCTUATION)
    while b"  " in out:
        out = out.replace(b"  ", b" ")
    return out.strip()


def normalise_text(text: str) -> str:
    return normalise(text).decode()


def key_of(normalised: Sequence[bytes]) -> int:
    """A 63-bit key of already normalised texts, the same in every process (Python's ``hash``
    of a string is not): the train/eval split is decided on it, so it must be reproducible."""
    digest = hashlib.blake2b(b"\x1f".join(normalised), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# The split key's normalisation of a record (a JSONL line): every ASCII mark and white space is
# deleted (JSON's own escapes of white space too), so "Where is my order ?" and "where is  my
# order" agree. Words run together, so "a bc" and "ab c" share a key as well: such rare pairs then
# land on the same side, which costs the split nothing. One bytes.translate, in C.
_KEY_DELETED = _ASCII_PUNCTUATION + b" \t\n\r\x0b\x0c"
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def record_key(record: bytes, _hash=xxhash.xxh3_64_intdigest) -> int:
    """The split key of a normalised record (its JSONL line): a 63-bit xxh3 of the record in lower
    case (case-folded when it has non-ASCII text) with punctuation and spacing normalised, the same
    in every process, so validation and the later split agree. Copies that differ only in case,
    spacing or punctuation ("Where is my order?" / "where is  my order") share it, so they land on
    the same side of the split. Reworded near copies are grouped by the near-duplicate scan, which
    then moves them to one side (``datacheck.split.move_crossing``)."""
    text = record if record.isascii() else record.decode().casefold().encode()
    if b"\\" in text:  # JSON's escapes of new lines and tabs
        text = text.replace(b"\\n", b"").replace(b"\\t", b"")
    return _hash(text.translate(_LOWER, _KEY_DELETED)) >> 1  # lower case and marks gone in one pass


def stable_key(texts: Sequence[str]) -> int:
    """``key_of`` the normalised texts."""
    return key_of([normalise(t) for t in texts])


_MASK = (1 << 64) - 1


class HashIndex:
    def __init__(self, *, tagged: bool = True) -> None:
        # Unsigned: the hot path appends xxh3 digests and split keys as they are (see ``add``).
        self.hashes = array("Q")
        self.tags: array | None = array("I") if tagged else None

    def add(self, value: int, tag: int = 0) -> None:
        """Add a hash (any int: taken modulo 2**64) with its line number. The validation hot
        path appends to ``hashes`` and ``tags`` itself, with values already in [0, 2**64)."""
        self.hashes.append(value & _MASK)
        if self.tags is not None:
            self.tags.append(tag)

    def groups(self) -> Iterator[list[int]]:
        """Tags (line numbers, in the order they were added) of each hash seen more than once."""
        assert self.tags is not None, "groups() needs a tagged index"
        tags, starts, ends = self._runs()
        for start, end in zip(starts, ends):
            yield tags[start:end].tolist()

    def _runs(self) -> tuple[np.ndarray, list[int], list[int]]:
        """The tags ordered by hash (stable: equal hashes keep their order) and the [start, end)
        of each run of two or more equal hashes. Nothing returned is a view of the arrays, so
        they can still grow afterwards."""
        none = np.empty(0, dtype=np.uint32), [], []
        hashes = np.frombuffer(self.hashes, dtype=np.uint64)
        if len(hashes) < 2:
            return none
        ordered = np.sort(hashes)  # one copy, sorted in place: the usual case has no duplicates
        if not (ordered[1:] == ordered[:-1]).any():
            return none
        order = np.argsort(hashes, kind="stable")  # equal hashes keep their order: lines ascend
        new = np.empty(len(ordered), dtype=bool)
        new[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], len(ordered))
        repeated = ends - starts > 1
        tags = np.frombuffer(self.tags, dtype=np.uint32)[order]
        return tags, starts[repeated].tolist(), ends[repeated].tolist()

    def shared_with(self, other: HashIndex) -> Iterator[int]:
        """Tags of the items here whose hash ``other`` also has (this index is tagged)."""
        assert self.tags is not None, "shared_with() needs a tagged index"
        mine = np.frombuffer(self.hashes, dtype=np.uint64)
        theirs = np.frombuffer(other.hashes, dtype=np.uint64)
        if not len(mine) or not len(theirs):
            return iter(())
        theirs = np.sort(theirs)  # one copy; isin would hold several
        found = theirs[np.minimum(np.searchsorted(theirs, mine), len(theirs) - 1)] == mine
        shared = np.frombuffer(self.tags, dtype=np.uint32)[found]
        return iter(shared.tolist())
