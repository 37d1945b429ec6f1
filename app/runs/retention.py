"""What the store keeps: STUDIO_KEEP_CHECKPOINTS checkpoints per finished run (newest first; 0
keeps all) and STUDIO_KEEP_MERGED merged models per team (built on demand; the oldest built is
evicted first), and how much a team stores, computed from its rows.

Rows go first, in their own transaction, then files: nothing lists a file being deleted, and a
crash in between leaves unlisted files, never a row whose file is gone."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope
from app.models import Artifact, Checkpoint, Dataset, Run
from app.runs import repository as repo
from app.storage import Store
from app.storage.checkpoints import delete_checkpoint

log = logging.getLogger(__name__)


def after_run(store: Store, run_id: int, keep: int | None = None) -> list[int]:
    """Deletes a finished run's checkpoints beyond the newest `keep`; returns their steps. A
    failed or cancelled run keeps its newest, so a retry still resumes from it."""
    keep = get_settings().keep_checkpoints if keep is None else keep
    if not keep:
        return []
    try:
        with session_scope() as s:
            doomed = [(c.step, c.path) for c in repo.checkpoints(s, run_id)][:-keep]
            if doomed:
                repo.delete_checkpoints(s, run_id, [step for step, _ in doomed])
        for _, key in doomed:
            delete_checkpoint(store, key)
    except Exception:  # noqa: BLE001  (the run's outcome is recorded; the files are only kept longer)
        log.exception("could not apply checkpoint retention to run %s", run_id)
        return []
    return [step for step, _ in doomed]


def evict_merged(store: Store, team_id: int, keep: int | None = None) -> list[int]:
    """Deletes the team's merged models beyond the newest `keep` built; returns their run ids."""
    keep = get_settings().keep_merged if keep is None else keep
    with session_scope() as s:
        rows = list(s.scalars(select(Artifact).where(Artifact.team_id == team_id, Artifact.kind == "merged")
                              .order_by(Artifact.created_at.desc(), Artifact.id.desc())))
        doomed = [(a.run_id, a.path) for a in rows[keep:]]
        for artifact in rows[keep:]:
            s.delete(artifact)
    for _, key in doomed:
        store.delete(key)
    return [run_id for run_id, _ in doomed]


def usage(session: Session, team_id: int) -> dict[str, int]:
    """Bytes the team stores, by kind (model cards sit inside their adapter and are not counted twice)."""
    found = dict(session.execute(
        select(Artifact.kind, func.coalesce(func.sum(Artifact.size_bytes), 0))
        .where(Artifact.team_id == team_id, Artifact.run_id.is_not(None), Artifact.kind != "model_card")
        .group_by(Artifact.kind)).all())
    found["checkpoint"] = session.scalar(
        select(func.coalesce(func.sum(Checkpoint.size_bytes), 0)).join(Run, Run.id == Checkpoint.run_id)
        .where(Run.team_id == team_id)) or 0
    found["dataset"] = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.team_id == team_id)) or 0
    return {kind: int(size) for kind, size in sorted(found.items()) if size}
