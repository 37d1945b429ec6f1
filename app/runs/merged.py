"""Merged models on demand: a LoRA run keeps its adapter only; the merged model (base and
adapter in one) is built by a worker task the first time someone asks for it (download, API),
cached in the store as an Artifact of kind "merged", and evicted beyond STUDIO_KEEP_MERGED per
team. While it is built, its progress is a small JSON object beside it in the store
(`.../merged.status.json`), so the web answers "preparing, 40%" without waiting or holding a
model in memory."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session

from app import queue
from app.errors import Conflict
from app.models import Artifact, Run, RunStatus
from app.runs import repository as repo
from app.storage import Store

MERGE_TASK = "studio.merge"
STALE_S = 30 * 60  # a build whose status has not moved for this long was lost: asking starts another


@dataclass
class MergedState:
    status: str  # ready | preparing | failed | absent
    progress: float = 0.0
    message: str = ""
    artifact_id: int | None = None
    size_bytes: int | None = None
    buildable: bool = False  # absent or failed, and a build may be asked for (POST .../merged)

    def as_dict(self) -> dict:
        return asdict(self)


def run_key(run: Run) -> str:
    # The store's layout keeps its first name ("jobs"): runs started before the rename resume.
    return f"teams/{run.team_id}/jobs/{run.id}/run"


def merged_key(run: Run) -> str:
    return f"{run_key(run)}/merged"


def status_key(run: Run) -> str:
    return f"{run_key(run)}/merged.status.json"


def write_status(store: Store, run: Run, state: str, progress: float, message: str, key=status_key) -> None:  # noqa: ANN001
    """The build's state in the store (`key`: where; the GGUF export keeps its own)."""
    store.write_bytes(key(run), json.dumps({"state": state, "progress": progress, "message": message,
                                                   "updated_at": time.time()}).encode())


def read_status(store: Store, run: Run, key=status_key) -> dict | None:  # noqa: ANN001
    try:
        with store.open(key(run)) as fh:
            return json.loads(fh.read())
    except Exception:  # noqa: BLE001  (none, or torn: nothing is being built)
        return None


def artifact(db: Session, run: Run) -> Artifact | None:
    return next((a for a in repo.artifacts(db, team_id=run.team_id, run_id=run.id) if a.kind == "merged"), None)


def state(db: Session, store: Store, run: Run) -> MergedState:
    built = artifact(db, run)
    if built is not None:
        return MergedState("ready", 1.0, "The merged model is ready.", built.id, built.size_bytes)
    if run.status != RunStatus.succeeded or not any(
            a.kind == "adapter" for a in repo.artifacts(db, team_id=run.team_id, run_id=run.id)):
        return MergedState("absent", message="Only a finished run with an adapter has a merged model.")
    status = read_status(store, run)
    if status and status.get("state") in ("queued", "building") and time.time() - status["updated_at"] < STALE_S:
        return MergedState("preparing", float(status.get("progress") or 0), status.get("message") or "Preparing.")
    if status and status.get("state") == "failed":
        return MergedState("failed", 0.0, status.get("message") or "Building the merged model failed.",
                           buildable=True)
    return MergedState("absent", message="The merged model is built when it is first asked for.", buildable=True)


def request(db: Session, store: Store, run: Run) -> MergedState:
    """The merged model's state, after queueing its build when it is neither built nor being built
    (a failed build is tried again)."""
    current = state(db, store, run)
    if current.status in ("ready", "preparing"):
        return current
    if run.status != RunStatus.succeeded or not any(
            a.kind == "adapter" for a in repo.artifacts(db, team_id=run.team_id, run_id=run.id)):
        raise Conflict("Only a finished LoRA run has a merged model to build: a full fine-tune's model is "
                       "already whole, and a run without an adapter has nothing to merge.")
    write_status(store, run, "queued", 0.0, "Waiting for a worker to build the merged model.")
    queue.enqueue(db, MERGE_TASK, run.id, queue=run.queue)
    return MergedState("preparing", 0.0, "Waiting for a worker to build the merged model.")
