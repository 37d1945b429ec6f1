"""Queries of the OpenAI-compatible API. Every one filters by the caller's team."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets.repository import FINE_TUNE
from app.models import Artifact, Checkpoint, Dataset, Job, JobEvent, JobStatus

SERVABLE = ("adapter", "model")  # a LoRA adapter, or a fully fine-tuned model directory


def files(session: Session, *, team_id: int, after_id: int | None, limit: int, newest_first: bool) -> list[Dataset]:
    stmt = select(Dataset).where(Dataset.team_id == team_id, Dataset.purpose == FINE_TUNE)
    if after_id is not None:
        stmt = stmt.where(Dataset.id < after_id if newest_first else Dataset.id > after_id)
    order = Dataset.id.desc() if newest_first else Dataset.id
    return list(session.scalars(stmt.order_by(order).limit(limit)))


def jobs_after(session: Session, *, team_id: int, after_id: int | None, limit: int) -> list[Job]:
    """Newest first; `after` is the last job of the previous page."""
    stmt = select(Job).where(Job.team_id == team_id)
    if after_id is not None:
        stmt = stmt.where(Job.id < after_id)
    return list(session.scalars(stmt.order_by(Job.id.desc()).limit(limit)))


def events_newest_first(session: Session, *, job_id: int, after_id: int | None, limit: int) -> list[JobEvent]:
    stmt = select(JobEvent).where(JobEvent.job_id == job_id)
    if after_id is not None:
        stmt = stmt.where(JobEvent.id < after_id)
    return list(session.scalars(stmt.order_by(JobEvent.id.desc()).limit(limit)))


def checkpoints_newest_first(session: Session, *, job_id: int, after_id: int | None, limit: int) -> list[Checkpoint]:
    stmt = select(Checkpoint).where(Checkpoint.job_id == job_id)
    if after_id is not None:
        stmt = stmt.where(Checkpoint.id < after_id)
    return list(session.scalars(stmt.order_by(Checkpoint.step.desc()).limit(limit)))


def servable_jobs(session: Session, *, team_id: int) -> list[Job]:
    """Succeeded jobs of the team that left a model to serve."""
    has_output = select(Artifact.id).where(Artifact.job_id == Job.id, Artifact.team_id == team_id,
                                           Artifact.kind.in_(SERVABLE)).exists()
    stmt = select(Job).where(Job.team_id == team_id, Job.status == JobStatus.succeeded, has_output)
    return list(session.scalars(stmt.order_by(Job.id.desc())))


def servable_output(session: Session, *, team_id: int, job_id: int) -> Artifact | None:
    stmt = select(Artifact).where(Artifact.team_id == team_id, Artifact.job_id == job_id,
                                  Artifact.kind.in_(SERVABLE)).order_by(Artifact.id.desc())
    return session.scalars(stmt).first()


def jobs_using(session: Session, *, team_id: int, dataset_id: int) -> int:
    stmt = select(Job.id).where(Job.team_id == team_id,
                                (Job.dataset_id == dataset_id) | (Job.eval_dataset_id == dataset_id))
    return len(session.scalars(stmt.limit(1)).all())
