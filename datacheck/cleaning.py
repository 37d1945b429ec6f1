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
    n_eval = 0
    for n_eval, record in enumerate(read_records(evals) if evals is not None else (), 1):
        text = example_text(record)
        size += len(text)
        signature = index.signature(text)
        if (match := index.match(signature)) is not None:
            between.append((n_eval, match + 1))
        if (match := eval_index.match(signature)) is not None:
            eval_groups.join(n_eval, match + 1)
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
        },
        "personal_data": personal,
        "personal_total": sum(v["count"] for v in personal.values()),
        "seconds": round(seconds, 3), "chars": size,
    }


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
