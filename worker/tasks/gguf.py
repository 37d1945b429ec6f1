"""studio.gguf: writes a run's GGUF files on demand (app/runs/gguf.py asks for them): the run's
whole model (its merged model, merged here from the adapter when none is stored, or the model of
a full fine-tune) as f16, q8_0 and q4_0 GGUF plus an Ollama Modelfile, uploaded to the store
under `.../run/gguf/` and recorded as one Artifact of kind "gguf". Its progress goes to the status
object the web reads."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from app.config import get_settings
from app.db import session_scope
from app.models import Artifact, RunStatus
from app.runs import gguf
from app.runs import repository as repo
from app.storage import open_store
from worker.celery_app import celery_app
from worker.runtime import sync

log = logging.getLogger(__name__)


def build_gguf(run_id: int) -> bool:
    """Writes and records the GGUF files of a run; False when there is nothing to do."""
    settings = get_settings()
    store = open_store(settings)
    with session_scope() as s:
        run = repo.by_id(s, run_id)
        if run is None or run.status != RunStatus.succeeded or gguf.artifact(s, run) is not None:
            return False
        by_kind = {a.kind: a for a in repo.artifacts(s, team_id=run.team_id, run_id=run.id)}
        source = next((by_kind[k] for k in ("merged", "model", "full", "adapter") if k in by_kind), None)
        if source is None:
            return False
        s.expunge(run)
        s.expunge(source)
    workspace = sync.Workspace(store, settings)
    scratch = Path(settings.work_dir) / "gguf" / uuid.uuid4().hex  # a worker's own, never the store's
    try:
        gguf.write_status(store, run, "building", 0.02, "Fetching the trained model.")
        model_dir = workspace.fetch_tree(source.path)
        if source.kind == "adapter":
            gguf.write_status(store, run, "building", 0.05, "Loading the base model and merging the adapter.")
            from worker.tasks.merge import _merge

            _merge(run.config, model_dir, scratch / "merged")
            model_dir = scratch / "merged"
        _export(store, run, model_dir, scratch / "out")
        gguf.write_status(store, run, "building", 0.95, "Saving the GGUF files to the artifact store.")
        key = gguf.gguf_key(run)
        size = store.upload_tree(key, scratch / "out")
        from worker.tasks.runs import _dir_digest

        digest, _ = _dir_digest(scratch / "out")
        with session_scope() as s:
            locked = repo.by_id(s, run_id, for_update=True)  # two asks may have queued two exports
            if gguf.artifact(s, locked) is None:
                s.add(Artifact(team_id=run.team_id, run_id=run.id, kind="gguf", path=key, sha256=digest,
                               size_bytes=size, content_type="application/zip"))
        store.delete(gguf.status_key(run))
    except Exception as exc:
        log.exception("writing the GGUF files of run %s failed", run_id)
        gguf.write_status(store, run, "failed", 0.0, f"Writing the GGUF files failed: {type(exc).__name__}: "
                                                     f"{str(exc)[:400]}")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return True


def _export(store, run, model_dir: Path, out: Path) -> None:  # noqa: ANN001
    from worker.training.gguf_export import export_gguf

    said = {"at": -1.0}

    def progress(fraction: float, message: str) -> None:
        if fraction - said["at"] >= 0.02:  # a status write every 2%, not one per tensor
            said["at"] = fraction
            gguf.write_status(store, run, "building", round(0.1 + 0.85 * fraction, 3), message)

    # Named as app/runs/gguf.file_name names them: run-<id>-<variant>.gguf and Modelfile.
    export_gguf(model_dir, out, name=f"run-{run.id}", variants=gguf.VARIANTS, progress=progress)


@celery_app.task(name=gguf.GGUF_TASK, acks_late=True, reject_on_worker_lost=True)
def export(run_id: int) -> None:
    build_gguf(run_id)
