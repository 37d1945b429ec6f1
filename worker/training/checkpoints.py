"""Checkpoints on disk: which are whole, which to keep, and how to delete one safely.

A checkpoint directory counts only when its metadata file lists every file the Trainer wrote,
with its size, the weights and the trainer state among them, and every one of them is there at
that size. The metadata is written last and atomically (after the Trainer's save), so a worker
killed while saving leaves a directory without it. A checkpoint sealed by an older studio (its
metadata lists no files) counts when its weights and trainer state are there, so an upgrade in
the middle of a run does not throw its progress away. Old checkpoints are deleted by the studio, not by the Trainer, oldest step first: the
directory is renamed out of the `checkpoint-N` namespace before its files go, so a worker killed
while deleting never leaves a half-deleted directory that looks resumable.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

METADATA = "studio_checkpoint.json"
PREFIX = "checkpoint-"
DELETING = "deleting-"
TRAINER_STATE = "trainer_state.json"
# What transformers' Trainer needs to load a checkpoint's weights (any one of them).
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def step_of(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


def directories(checkpoint_dir: Path) -> list[Path]:
    """Every `checkpoint-N` directory, whole or not, by step."""
    found = [p for p in Path(checkpoint_dir).glob(f"{PREFIX}*")
             if p.name[len(PREFIX):].isdigit() and p.is_dir()]
    return sorted(found, key=step_of)


def write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Seals a checkpoint the Trainer has finished writing: its files and sizes, then the metadata."""
    files = {p.relative_to(path).as_posix(): p.stat().st_size
             for p in sorted(path.rglob("*")) if p.is_file() and p.name != METADATA}
    tmp = path / f".{METADATA}.tmp"
    tmp.write_text(json.dumps({**metadata, "files": files}, indent=2) + "\n")
    os.replace(tmp, path / METADATA)


def read_metadata(path: Path) -> dict[str, Any]:
    """A checkpoint's metadata ({} when it has none or it cannot be read)."""
    try:
        metadata = json.loads((path / METADATA).read_text())
    except (OSError, ValueError):
        return {}
    return metadata if isinstance(metadata, dict) else {}


def is_complete(path: Path) -> bool:
    metadata = read_metadata(path)
    files = metadata.get("files")
    if files is None and "step" in metadata:  # sealed by an older studio
        files = {name: (path / name).stat().st_size for name in (TRAINER_STATE, *WEIGHTS)
                 if (path / name).is_file()}
    if not isinstance(files, dict):
        return False
    if TRAINER_STATE not in files or not any(name in files for name in WEIGHTS):
        return False  # sealed while the Trainer's files were missing: nothing to resume from
    for name, size in files.items():
        try:
            if (path / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def latest_complete(checkpoint_dir: Path) -> str | None:
    complete = [p for p in directories(checkpoint_dir) if is_complete(p)]
    return str(complete[-1]) if complete else None


def remove(path: Path) -> None:
    """Deletes a checkpoint so that no crash can leave a part of it under its own name."""
    doomed = path.with_name(f"{DELETING}{path.name}")
    try:
        os.replace(path, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def rotate(checkpoint_dir: Path, keep: int | None) -> list[int]:
    """Keeps the newest `keep` whole checkpoints (all when None); returns the steps deleted."""
    if not keep:
        return []
    complete = [p for p in directories(checkpoint_dir) if is_complete(p)]
    doomed = complete[:-keep]
    for path in doomed:
        remove(path)
    return [step_of(p) for p in doomed]


def clean(checkpoint_dir: Path) -> list[str]:
    """Before a resume: removes torn checkpoints (killed while saving or deleting) and leftovers of
    interrupted deletions; returns the names removed."""
    removed = []
    for path in directories(checkpoint_dir):
        if not is_complete(path):
            remove(path)
            removed.append(path.name)
    for path in Path(checkpoint_dir).glob(f"{DELETING}*"):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed
