"""Train/eval split: every example is assigned by a hash of (seed, index), so the split is
deterministic, streamed (no shuffle in memory) and the same in validation and in writing.
Each example goes to eval with probability ``eval_fraction``: the eval share is close to,
not exactly, that fraction on small datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from pydantic import BaseModel

from datacheck.read import iter_line_batches

_MASK = (1 << 64) - 1


class SplitCounts(BaseModel):
    train: int
    eval: int


def is_eval_example(index: int, *, seed: int, eval_fraction: float) -> bool:
    """Whether example ``index`` (0-based, in file order) belongs to the eval set."""
    return eval_picker(seed, eval_fraction)(index)


def eval_picker(seed: int, eval_fraction: float) -> Callable[[int], bool]:
    """``is_eval_example`` with the seed and fraction bound (faster in a loop)."""
    offset = ((seed + 1) * 0xD1B54A32D192ED03) & _MASK
    threshold = int(eval_fraction * 2**64)

    def is_eval(index: int) -> bool:
        x = (index * 0x9E3779B97F4A7C15 + offset) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK  # splitmix64 finaliser
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        return (x ^ (x >> 31)) < threshold

    return is_eval


def split_normalized(source: BinaryIO, train_out: BinaryIO, eval_out: BinaryIO, *,
                     eval_fraction: float = 0.1, seed: int = 0) -> SplitCounts:
    """Split a normalised JSONL file (one record per line) into train and eval files,
    exactly as ``validate_dataset`` counted them with the same seed and fraction."""
    train = evals = 0
    index = 0
    is_eval = eval_picker(seed, eval_fraction)
    for batch in iter_line_batches(source, max_line_bytes=1 << 62):
        for line in batch:
            if not line:
                continue
            if is_eval(index):
                eval_out.write(line + b"\n")
                evals += 1
            else:
                train_out.write(line + b"\n")
                train += 1
            index += 1
    return SplitCounts(train=train, eval=evals)
