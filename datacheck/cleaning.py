"""The cleaning scan of a valid dataset: near duplicates (within the training set, and evaluation
examples that resemble training ones) and personal data, counted with a few examples each.

It reads the normalised records (one {"messages": [...]} object per line) that validation
stored, so it runs as its own background step after validation (``studio.scan_dataset``) and
never slows the check of an upload. Positions are 1-based example numbers of each file, as the
dataset page's preview counts them. Nothing is changed here: the result says what a new version
without near duplicates, or with personal data redacted, would remove or replace.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

import orjson

from datacheck.near_duplicates import Groups, NearDuplicateIndex, example_text
from datacheck.personal_data import KINDS, find_personal_data, mask

KEEP = 5  # examples shown per finding


def read_records(source: BinaryIO) -> Iterator[dict]:
    for line in source:
        if line.strip():
            yield orjson.loads(line)


def scan(train: BinaryIO, evals: BinaryIO | None = None) -> dict:
    """The scan's result (JSON-serialisable); see the module docstring. One streamed pass over
    each file: only the near-duplicate index (no text) and the counts are kept."""
    started = time.perf_counter()
    index, groups, size = NearDuplicateIndex(), Groups(), 0
    personal = {kind: {"count": 0, "examples_with": 0, "examples": []} for kind in KINDS}
    n_train = 0
    for n_train, record in enumerate(read_records(train), 1):
        text = example_text(record)
        size += len(text)
        if (match := index.add_and_match(text)) is not None:
            groups.join(n_train, match + 1)
        _personal(record, "train", n_train, personal)
    eval_index, eval_groups, between = NearDuplicateIndex(), Groups(), []
    crossing = _Crossing()
    n_eval = 0
    for n_eval, record in enumerate(read_records(evals) if evals is not None else (), 1):
        text = example_text(record)
        size += len(text)
        signature = index.signature(text)
        if (match := index.match(signature)) is not None:
            between.append((n_eval, match + 1))
        earlier = eval_index.matches(signature)
        if earlier:
            eval_groups.join(n_eval, min(earlier) + 1)
        crossing.add(n_eval - 1, earlier, resembles_training=match is not None)
        eval_index.add(signature)
        _personal(record, "eval", n_eval, personal)
    found, in_eval = groups.result(), eval_groups.result()
    drop_train = sorted(i for g in found for i in g[1:])
    drop_eval = sorted({i for g in in_eval for i in g[1:]} | {e for e, _ in between})
    seconds = time.perf_counter() - started
    return {
        "train_examples": n_train, "eval_examples": n_eval,
        "near_duplicates": {
            "groups": len(found), "extra": len(drop_train),
            "examples": [g[:3] for g in found[:KEEP]],
            "eval_groups": len(in_eval),
            "between": len(between),
            "between_examples": [list(pair) for pair in between[:KEEP]],
            "drop_train": drop_train, "drop_eval": drop_eval,
            # 0-based evaluation examples linked to a training one through a chain of near
            # duplicates: moving them into training leaves none across the split (move_crossing)
            "crossing": crossing.result(),
        },
        "personal_data": personal,
        "personal_total": sum(v["count"] for v in personal.values()),
        "seconds": round(seconds, 3), "chars": size,
    }


class _Crossing:
    """Evaluation examples whose group of near duplicates (every resemblance counted: a chain
    e2 ~ e1 ~ a training example links e2 too) holds a training example. Union-find over the
    evaluation examples and one node standing for the whole training set."""

    TRAIN = -1

    def __init__(self) -> None:
        self._parent: dict[int, int] = {self.TRAIN: self.TRAIN}

    def _root(self, node: int) -> int:
        root = self._parent.setdefault(node, node)
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[node] != root:  # path compression
            self._parent[node], node = root, self._parent[node]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._root(a), self._root(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)  # the training node (-1) stays a root

    def add(self, index: int, earlier: list[int], *, resembles_training: bool) -> None:
        if resembles_training:
            self._union(index, self.TRAIN)
        for other in earlier:
            self._union(index, other)

    def result(self) -> list[int]:
        return sorted(n for n in self._parent if n != self.TRAIN and self._root(n) == self.TRAIN)


def _personal(record: dict, file: str, number: int, out: dict) -> None:
    seen: Counter[str] = Counter()
    for message in record.get("messages") or []:
        content = message.get("content")
        if not isinstance(content, str):
            continue
        for f in find_personal_data(content):
            seen[f.kind] += 1
            entry = out[f.kind]
            if len(entry["examples"]) < KEEP:
                entry["examples"].append({"file": file, "example": number, "role": message.get("role"),
                                          "value": mask(f.value)})
    for kind, n in seen.items():
        out[kind]["count"] += n
        out[kind]["examples_with"] += 1
