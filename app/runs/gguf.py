"""GGUF files of a run on demand, for llama.cpp and Ollama: a worker task (studio.gguf) writes the
run's whole model (the merged model of a LoRA run, the model of a full fine-tune) as f16, q8_0
and q4_0 GGUF files plus an Ollama Modelfile, stores them under `.../run/gguf/` and records one
Artifact of kind "gguf" for the folder. Its progress is a JSON object beside it in the store, as
for merged models (app/runs/merged.py), so the web answers "preparing, 40%" without holding a
model. The web never imports the converter: it only names files and streams them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from sqlalchemy.orm import Session

from app import queue
from app.errors import Conflict, NotFound
from app.models import Artifact, Run, RunStatus
from app.runs import merged
from app.runs import repository as repo
from app.storage import Store

GGUF_TASK = "studio.gguf"
STALE_S = merged.STALE_S
VARIANTS = ("f16", "q8_0", "q4_0")  # the same list as worker/training/gguf_export.py's (tests check it)
SOURCE_KINDS = ("adapter", "merged", "model", "full")
FILE_LABELS = {
    "q8_0": ("GGUF q8_0", "8-bit, about half the size of f16 and answers almost the same: the one to start with"),
    "f16": ("GGUF f16", "16-bit, the trained weights as they are"),
    "q4_0": ("GGUF q4_0", "4-bit, the smallest; answers drift further from the trained model"),
    "modelfile": ("Ollama Modelfile", "put it beside the q8_0 file and run `ollama create`"),
}


@dataclass
class GGUFState:
    status: str  # ready | preparing | failed | absent
    progress: float = 0.0
    message: str = ""
    artifact_id: int | None = None
    size_bytes: int | None = None
    files: dict[str, int] = field(default_factory=dict)  # file name -> bytes, when ready
    buildable: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def gguf_key(run: Run) -> str:
    return f"{merged.run_key(run)}/gguf"


def status_key(run: Run) -> str:
    return f"{merged.run_key(run)}/gguf.status.json"


def file_name(run: Run, variant: str) -> str:
    """The name of a file inside the folder: `run-7-q8_0.gguf`, or `Modelfile`."""
    if variant == "modelfile":
        return "Modelfile"
    if variant not in VARIANTS:
        raise NotFound(f"No GGUF file of type {variant!r}: there are {', '.join(VARIANTS)} and the Modelfile.")
    return f"run-{run.id}-{variant}.gguf"


def write_status(store: Store, run: Run, state: str, progress: float, message: str) -> None:
    merged.write_status(store, run, state, progress, message, key=status_key)


def read_status(store: Store, run: Run) -> dict | None:
    return merged.read_status(store, run, key=status_key)


def artifact(db: Session, run: Run) -> Artifact | None:
    return next((a for a in repo.artifacts(db, team_id=run.team_id, run_id=run.id) if a.kind == "gguf"), None)


def _has_model(db: Session, run: Run) -> bool:
    return run.status == RunStatus.succeeded and any(
        a.kind in SOURCE_KINDS for a in repo.artifacts(db, team_id=run.team_id, run_id=run.id))


def state(db: Session, store: Store, run: Run) -> GGUFState:
    built = artifact(db, run)
    if built is not None:
        files = dict(store.list_tree(built.path))
        return GGUFState("ready", 1.0, "The GGUF files are ready.", built.id, built.size_bytes, files)
    if not _has_model(db, run):
        return GGUFState("absent", message="Only a finished run with a trained model has GGUF files.")
    status = read_status(store, run)
    if status and status.get("state") in ("queued", "building") and time.time() - status["updated_at"] < STALE_S:
        return GGUFState("preparing", float(status.get("progress") or 0), status.get("message") or "Preparing.")
    if status and status.get("state") == "failed":
        return GGUFState("failed", 0.0, status.get("message") or "Writing the GGUF files failed.", buildable=True)
    return GGUFState("absent", message="The GGUF files are written when they are first asked for.", buildable=True)


def request(db: Session, store: Store, run: Run) -> GGUFState:
    """The state, after queueing the export when it is neither done nor under way (a failed
    export is tried again)."""
    current = state(db, store, run)
    if current.status in ("ready", "preparing"):
        return current
    if not _has_model(db, run):
        raise Conflict("Only a finished run with a trained model (an adapter or a full model) can be exported "
                       "as GGUF.")
    write_status(store, run, "queued", 0.0, "Waiting for a worker to write the GGUF files.")
    queue.enqueue(db, GGUF_TASK, run.id, queue=run.queue)
    return GGUFState("preparing", 0.0, "Waiting for a worker to write the GGUF files.")
