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
from typing import BinaryIO

import orjson

from datacheck.near_duplicates import example_text, near_duplicate_groups, near_duplicates_between
from datacheck.personal_data import KINDS, find_personal_data, mask

KEEP = 5  # examples shown per finding


def read_records(source: BinaryIO) -> list[dict]:
    return [orjson.loads(line) for line in source if line.strip()]


def scan(train: BinaryIO, evals: BinaryIO | None = None) -> dict:
    """The scan's result (JSON-serialisable); see the module docstring."""
    started = time.perf_counter()
    train_records = read_records(train)
    eval_records = read_records(evals) if evals is not None else []
    size = sum(len(example_text(r)) for r in train_records + eval_records)
    train_texts = [example_text(r) for r in train_records]
    eval_texts = [example_text(r) for r in eval_records]
    groups = near_duplicate_groups(train_texts)
    eval_groups = near_duplicate_groups(eval_texts) if eval_texts else []
    between = near_duplicates_between(train_texts, eval_texts) if eval_texts else []
    drop_train = sorted(i + 1 for g in groups for i in g[1:])
    drop_eval = sorted({i + 1 for g in eval_groups for i in g[1:]} | {e + 1 for e, _ in between})
    personal = _personal(train_records, "train")
    for kind, found in _personal(eval_records, "eval").items():
        personal[kind]["count"] += found["count"]
        personal[kind]["examples"].extend(found["examples"][:max(0, KEEP - len(personal[kind]["examples"]))])
        personal[kind]["examples_with"] += found["examples_with"]
    seconds = time.perf_counter() - started
    return {
        "train_examples": len(train_records), "eval_examples": len(eval_records),
        "near_duplicates": {
            "groups": len(groups), "extra": len(drop_train),
            "examples": [[i + 1 for i in g[:3]] for g in groups[:KEEP]],
            "eval_groups": len(eval_groups),
            "between": len(between),
            "between_examples": [[e + 1, t + 1] for e, t in between[:KEEP]],
            "drop_train": drop_train, "drop_eval": drop_eval,
        },
        "personal_data": personal,
        "personal_total": sum(v["count"] for v in personal.values()),
        "seconds": round(seconds, 3), "chars": size,
    }


def _personal(records: list[dict], file: str) -> dict:
    out = {kind: {"count": 0, "examples_with": 0, "examples": []} for kind in KINDS}
    for number, record in enumerate(records, 1):
        seen: Counter[str] = Counter()
        for message in record.get("messages") or []:
            content = message.get("content")
            if not isinstance(content, str):
                continue
            for f in find_personal_data(content):
                seen[f.kind] += 1
                entry = out[f.kind]
                if len(entry["examples"]) < KEEP:
                    entry["examples"].append({"file": file, "example": number,
                                              "role": message.get("role"), "value": mask(f.value)})
        for kind, n in seen.items():
            out[kind]["count"] += n
            out[kind]["examples_with"] += 1
    return out
