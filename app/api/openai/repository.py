"""Queries of the OpenAI-compatible API. Every one filters by the caller's team."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets.repository import FINE_TUNE
from app.models import Artifact, Checkpoint, Dataset, Run, RunEvent, RunStatus

SERVABLE = ("adapter", "model")  # a LoRA adapter, or a fully fine-tuned model directory
WEIGHTS = (*SERVABLE, "merged", "model_card")  # what deleting a fine-tuned model removes (its log stays)


def files(session: Session, *, team_id: int, after_id: int | None, limit: int, newest_first: bool) -> list[Dataset]:
    stmt = select(Dataset).where(Dataset.team_id == team_id, Dataset.purpose == FINE_TUNE)
    if after_id is not None:
        stmt = stmt.where(Dataset.id < after_id if newest_first else Dataset.id > after_id)
    order = Dataset.id.desc() if newest_first else Dataset.id
    return list(session.scalars(stmt.order_by(order).limit(limit)))


def runs_after(session: Session, *, team_id: int, after_id: int | None, limit: int) -> list[Run]:
    """Newest first; `after` is the last run of the previous page."""
    stmt = select(Run).where(Run.team_id == team_id)
    if after_id is not None:
        stmt = stmt.where(Run.id < after_id)
    return list(session.scalars(stmt.order_by(Run.id.desc()).limit(limit)))


def events_newest_first(session: Session, *, run_id: int, after_id: int | None, limit: int) -> list[RunEvent]:
    stmt = select(RunEvent).where(RunEvent.run_id == run_id)
    if after_id is not None:
        stmt = stmt.where(RunEvent.id < after_id)
    return list(session.scalars(stmt.order_by(RunEvent.id.desc()).limit(limit)))


def checkpoints_newest_first(session: Session, *, run_id: int, after_id: int | None, limit: int) -> list[Checkpoint]:
    stmt = select(Checkpoint).where(Checkpoint.run_id == run_id)
    if after_id is not None:
        stmt = stmt.where(Checkpoint.id < after_id)
    return list(session.scalars(stmt.order_by(Checkpoint.step.desc()).limit(limit)))


def servable_runs(session: Session, *, team_id: int) -> list[Run]:
    """Succeeded runs of the team that left a model to serve."""
    has_output = select(Artifact.id).where(Artifact.run_id == Run.id, Artifact.team_id == team_id,
                                           Artifact.kind.in_(SERVABLE)).exists()
    stmt = select(Run).where(Run.team_id == team_id, Run.status == RunStatus.succeeded, has_output)
    return list(session.scalars(stmt.order_by(Run.id.desc())))


def servable_output(session: Session, *, team_id: int, run_id: int) -> Artifact | None:
    stmt = select(Artifact).where(Artifact.team_id == team_id, Artifact.run_id == run_id,
                                  Artifact.kind.in_(SERVABLE)).order_by(Artifact.id.desc())
    return session.scalars(stmt).first()


def runs_using(session: Session, *, team_id: int, dataset_id: int) -> int:
    stmt = select(Run.id).where(Run.team_id == team_id,
                                (Run.dataset_id == dataset_id) | (Run.eval_dataset_id == dataset_id))
    return len(session.scalars(stmt.limit(1)).all())


def checkpoint(session: Session, *, team_id: int, run_id: int, step: int) -> Checkpoint | None:
    stmt = (select(Checkpoint).join(Run, Run.id == Checkpoint.run_id)
            .where(Run.team_id == team_id, Checkpoint.run_id == run_id, Checkpoint.step == step))
    return session.scalar(stmt)


def weights(session: Session, *, team_id: int, run_id: int) -> list[Artifact]:
    stmt = select(Artifact).where(Artifact.team_id == team_id, Artifact.run_id == run_id, Artifact.kind.in_(WEIGHTS))
    return list(session.scalars(stmt.order_by(Artifact.id)))


def checkpoints_of(session: Session, *, run_id: int) -> list[Checkpoint]:
    return list(session.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step)))


def busy_with(session: Session, *, team_id: int, run_id: int) -> list[str]:
    """What still needs this run's weights: A/B comparisons and evaluations not yet done."""
    from app.models import Comparison, Evaluation

    busy = []
    for c in session.scalars(select(Comparison).where(Comparison.team_id == team_id,
                                                      Comparison.status.in_(("pending", "generating")))):
        if any(side.get("kind") == "run" and side.get("id") == run_id for side in (c.model_a, c.model_b)):
            busy.append(f"the A/B comparison '{c.name}'")
    for e in session.scalars(select(Evaluation).where(Evaluation.team_id == team_id, Evaluation.run_id == run_id,
                                                      Evaluation.status.in_(("pending", "running")))):
        busy.append(f"its {e.kind.replace('_', ' ')} evaluation")
    return busy
