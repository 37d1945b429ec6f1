"""studio.merge: builds a LoRA run's merged model on demand (app/runs/merged.py asks for it),
uploads it to the store, records it as an Artifact of kind "merged" and evicts the team's oldest
merged models beyond STUDIO_KEEP_MERGED. Its progress goes to the status object the web reads."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from app.config import get_settings
from app.db import session_scope
from app.models import Artifact, RunStatus
from app.runs import merged, retention
from app.runs import repository as repo
from app.storage import open_store
from worker.celery_app import celery_app
from worker.runtime import sync

log = logging.getLogger(__name__)


def build_merged(run_id: int) -> bool:
    """Builds and records the merged model of a run; False when there is nothing to do."""
    settings = get_settings()
    store = open_store(settings)
    with session_scope() as s:
        run = repo.by_id(s, run_id)
        if run is None or run.status != RunStatus.succeeded or merged.artifact(s, run) is not None:
            return False
        adapter = next((a for a in repo.artifacts(s, team_id=run.team_id, run_id=run.id) if a.kind == "adapter"), None)
        if adapter is None:
            return False
        s.expunge(run)
    workspace = sync.Workspace(store, settings)
    scratch = Path(settings.work_dir) / "merge" / uuid.uuid4().hex  # a worker's own, never the store's
    try:
        merged.write_status(store, run, "building", 0.05, "Fetching the adapter.")
        adapter_dir = workspace.fetch_tree(adapter.path)
        merged.write_status(store, run, "building", 0.2, "Loading the base model and merging the adapter.")
        _merge(run.config, adapter_dir, scratch)
        merged.write_status(store, run, "building", 0.7, "Saving the merged model to the artifact store.")
        key = merged.merged_key(run)
        size = store.upload_tree(key, scratch)
        digest, _ = _digest(scratch)
        with session_scope() as s:
            # Two web processes may have queued a build each: the run's row lock makes one row of them.
            locked = repo.by_id(s, run_id, for_update=True)
            if merged.artifact(s, locked) is None:
                s.add(Artifact(team_id=run.team_id, run_id=run.id, kind="merged", path=key, sha256=digest,
                               size_bytes=size, content_type="application/zip"))
        store.delete(merged.status_key(run))
    except Exception as exc:
        log.exception("building the merged model of run %s failed", run_id)
        merged.write_status(store, run, "failed", 0.0, f"Building the merged model failed: {type(exc).__name__}: "
                                                       f"{str(exc)[:300]}")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    evicted = retention.evict_merged(store, run.team_id)
    if evicted:
        log.info("evicted the merged models of runs %s (STUDIO_KEEP_MERGED=%s)", evicted, settings.keep_merged)
    return True


def _merge(config: dict, adapter_dir: Path, target: Path) -> None:
    import torch

    from worker.training.export import save_merged
    from worker.training.modeling import detect_device, resolve_precision, torch_dtype

    precision = resolve_precision(config.get("precision", "auto"), detect_device())
    dtype = torch.float32 if precision == "fp32" else torch_dtype(precision)
    save_merged(config["base_model"], adapter_dir, target, dtype)
    card = Path(adapter_dir) / "README.md"
    if card.is_file():
        shutil.copyfile(card, target / "README.md")


def _digest(path: Path) -> tuple[str, int]:
    from worker.tasks.runs import _dir_digest

    return _dir_digest(path)


@celery_app.task(name=merged.MERGE_TASK, acks_late=True, reject_on_worker_lost=True)
def merge(run_id: int) -> None:
    build_merged(run_id)
