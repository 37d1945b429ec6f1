"""Checkpoints in the artifact store: uploaded file by file, then a manifest written LAST
(`checkpoint-N/manifest.json`: every file's size and sha256); trusted only when the manifest is
there and every file it lists is there at its size; deleted manifest first."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from app.storage.base import Store

MANIFEST = "manifest.json"
PREFIX = "checkpoint-"


def upload_checkpoint(store: Store, key: str, directory: Path) -> dict[str, Any]:
    """Uploads every file of a local checkpoint, then its manifest, last."""
    directory = Path(directory)
    files = {}
    for file in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        name = file.relative_to(directory).as_posix()
        written = store.write_file(f"{key}/{name}", file)
        files[name] = {"size": written.size, "sha256": written.sha256}
    manifest = {"step": int(directory.name.rsplit("-", 1)[-1]), "files": files, "uploaded_at": time.time()}
    store.write_bytes(f"{key}/{MANIFEST}", json.dumps(manifest, indent=2).encode() + b"\n")
    return manifest


def read_manifest(store: Store, key: str) -> dict[str, Any] | None:
    try:
        with store.open(f"{key}/{MANIFEST}") as fh:
            manifest = json.loads(fh.read())
    except Exception:  # noqa: BLE001  (missing or torn: not a checkpoint)
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def trusted(store: Store, key: str, listing: dict[str, int] | None = None) -> dict[str, Any] | None:
    """The manifest of the checkpoint under `key` when every file it lists is there at its size."""
    manifest = read_manifest(store, key)
    if manifest is None or not manifest["files"]:
        return None
    listing = dict(store.list_tree(key)) if listing is None else listing
    for name, meta in manifest["files"].items():
        if not isinstance(meta, dict) or listing.get(name) != meta.get("size"):
            return None
    return manifest


def stored_checkpoints(store: Store, key: str) -> dict[int, dict[str, int]]:
    """{step: {file: size}} of every `checkpoint-N` under `key`, whole or not."""
    found: dict[int, dict[str, int]] = {}
    for name, size in store.list_tree(key):
        head, _, rest = name.partition("/")
        if head.startswith(PREFIX) and head[len(PREFIX):].isdigit() and rest:
            found.setdefault(int(head[len(PREFIX):]), {})[rest] = size
    return found


def delete_checkpoint(store: Store, key: str) -> None:
    """Manifest first: a checkpoint half deleted is never trusted."""
    store.delete(f"{key}/{MANIFEST}")
    store.delete(key)
