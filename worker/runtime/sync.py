"""A worker's files when the artifact store is not a directory it shares with the web.

With a local store (the embedded default) a worker works in the store's own directory and there
is nothing to copy. With a bucket it works in a scratch directory (STUDIO_WORK_DIR) laid out
like the store (a file's path under the scratch root is its key), downloads its inputs there and
uploads its outputs:

- a checkpoint is uploaded file by file (app/storage/checkpoints.py), then its manifest (`checkpoint-N/manifest.json`: each
  file's size and sha256) is written LAST; only then is its database row written. Resume trusts
  only a checkpoint whose manifest is there and whose files are all there at the listed sizes,
  and checks every sha256 after downloading it, so a worker killed (or an upload failing)
  in the middle of a checkpoint never leaves one that resume would trust;
- a checkpoint is deleted manifest first, so a half-deleted one is not trusted either;
- the run's log is uploaded every few seconds while it trains, and at the end;
- the final outputs (adapter or full model, result, data report) are uploaded before the run's
  outcome and its Artifact rows are written.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from app.config import Settings, get_settings
from app.storage import ArtifactStore, Store, check_key
from app.storage.checkpoints import PREFIX, delete_checkpoint, stored_checkpoints, trusted, upload_checkpoint

LOG_SYNC_S = 10.0
COMPLETE = ".studio-complete"

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class Workspace:
    """Where a task's files live on this host: the store's own directory, or a scratch copy."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store = store
        if isinstance(store, ArtifactStore):
            self.root, self.shared = store.root, True
        else:
            self.root, self.shared = Path((settings or get_settings()).work_dir).resolve(), False
            self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def key_of(self, path: str | Path) -> str:
        return check_key(Path(path).resolve().relative_to(self.root).as_posix())

    def upload_file(self, path: Path) -> None:
        if not self.shared and Path(path).is_file():
            self.store.write_file(self.key_of(path), Path(path))

    def upload_tree(self, path: Path) -> None:
        if not self.shared:
            self.store.upload_tree(self.key_of(path), Path(path))

    def discard(self, directory: Path) -> None:
        """A finished task's scratch copy goes (everything in it is in the bucket); a shared
        directory is the store itself and stays."""
        if not self.shared:
            shutil.rmtree(directory, ignore_errors=True)

    def fetch_tree(self, key: str) -> Path:
        """A local copy of the tree under `key` (the store's own directory when it is local)."""
        target = self.path(key)
        if self.shared:
            return target
        return cached_tree(self.store, key, self.root)


def cached_tree(store: Store, key: str, cache_root: Path) -> Path:
    """The tree under `key` downloaded once into cache_root/key (reused while it is whole)."""
    local = store.local_path(key)
    if local is not None:
        return local
    target = Path(cache_root) / check_key(key)
    if (target / COMPLETE).is_file():
        return target
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        if not store.download_tree(key, tmp):
            raise FileNotFoundError(f"nothing in the artifact store under {key}")
        (tmp / COMPLETE).write_text("")
        shutil.rmtree(target, ignore_errors=True)
        tmp.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def restore_checkpoint(store: Store, key: str, local_dir: Path, say=log.info) -> int | None:  # noqa: ANN001
    """Before a resume: the newest trusted checkpoint under `key` downloaded into local_dir (which
    is emptied first: only what the store vouches for is resumed from); torn ones are deleted.
    Returns its step, or None when there is none."""
    local_dir = Path(local_dir)
    shutil.rmtree(local_dir, ignore_errors=True)
    local_dir.mkdir(parents=True, exist_ok=True)
    for step, listing in sorted(stored_checkpoints(store, key).items(), reverse=True):
        name = f"{PREFIX}{step}"
        manifest = trusted(store, f"{key}/{name}", listing)
        if manifest is None:
            say(f"Removed {name} from the artifact store: its upload was interrupted (no whole manifest).")
            delete_checkpoint(store, f"{key}/{name}")
            continue
        tmp = local_dir / f".{name}.part"
        store.download_tree(f"{key}/{name}", tmp)
        bad = [f for f, meta in manifest["files"].items() if sha256_file(tmp / f) != meta["sha256"]]
        if bad:
            shutil.rmtree(tmp, ignore_errors=True)
            say(f"Skipped {name}: {', '.join(bad)} did not match the manifest's sha256.")
            continue
        tmp.replace(local_dir / name)
        return step
    return None


class SyncingReporter:
    """Wraps the run's reporter: a checkpoint is uploaded (manifest last) before the wrapped
    reporter writes its row; deleted checkpoints leave the store; the log is uploaded every
    LOG_SYNC_S. Everything else is the wrapped reporter's."""

    def __init__(self, inner, workspace: Workspace, log_path: Path) -> None:  # noqa: ANN001
        self._inner, self._workspace, self._log_path = inner, workspace, Path(log_path)
        self._log_synced = time.monotonic()
        self._uploaded: set[int] = set()

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._inner, name)

    def on_checkpoint(self, step: int, path: str, metadata: dict[str, Any]) -> None:
        try:
            upload_checkpoint(self._workspace.store, self._workspace.key_of(path), Path(path))
        except Exception as exc:  # noqa: BLE001  (training goes on; this checkpoint does not count)
            log.warning("checkpoint %s could not be uploaded: %s", path, exc)
            self._inner.on_log(f"Warning: the checkpoint at step {step} could not be uploaded to the artifact store "
                               f"({type(exc).__name__}: {exc}); it does not count, training goes on.")
            return
        self._uploaded.add(step)
        self._inner.on_checkpoint(step, path, metadata)
        self.sync_log()

    def on_checkpoints_deleted(self, steps: list[int]) -> None:
        # Only while a newer checkpoint is safely in the store: a failed upload keeps the older ones.
        newest = max(self._uploaded, default=None)
        doomed = [s for s in steps if newest is not None and s < newest]
        if doomed:
            root = self._workspace.key_of(self._checkpoint_root())
            for step in doomed:
                delete_checkpoint(self._workspace.store, f"{root}/{PREFIX}{step}")
            self._inner.on_checkpoints_deleted(doomed)

    def _checkpoint_root(self) -> Path:
        from worker.training.run import CHECKPOINTS

        return self._log_path.parent / CHECKPOINTS

    def on_progress(self, step: int, total: int, eta_s: float | None) -> None:
        self._inner.on_progress(step, total, eta_s)
        if time.monotonic() - self._log_synced >= LOG_SYNC_S:
            self.sync_log()

    def sync_log(self) -> None:
        self._log_synced = time.monotonic()
        upload_log(self._workspace, self._log_path)  # a failure: the next sync tries again


def wrap(reporter, workspace: Workspace, log_path: Path):  # noqa: ANN001, ANN201
    return reporter if workspace.shared else SyncingReporter(reporter, workspace, log_path)


def upload_log(workspace: Workspace, log_path: Path) -> None:
    try:
        workspace.upload_file(log_path)
    except Exception as exc:  # noqa: BLE001  (the run's outcome must still be written)
        log.warning("the run's log could not be uploaded: %s", exc)


def upload_outputs(workspace: Workspace, output_dir: Path, result) -> None:  # noqa: ANN001
    """The run's final files, before its outcome is written: its adapter or model, and the
    result, data report and configuration files at the top of its directory."""
    if workspace.shared:
        return
    for directory in (result.adapter_dir, result.merged_dir, result.model_dir):
        if directory:
            workspace.upload_tree(Path(directory))
    for file in sorted(Path(output_dir).iterdir()):
        if file.is_file():
            workspace.upload_file(file)
