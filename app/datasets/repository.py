"""Queries for datasets. Every one a request makes filters by team: another team's dataset does
not exist. The worker side (`by_id`, `uploaded_before`) holds ids that the database gave it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Artifact, Dataset, DatasetStatus

# Dataset.purpose: an uploaded training set, or the separate evaluation file of one.
FINE_TUNE = "fine-tune"
EVAL_FILE = "eval"


def get(session: Session, *, team_id: int, dataset_id: int, purpose: str | None = FINE_TUNE) -> Dataset | None:
    stmt = select(Dataset).where(Dataset.team_id == team_id, Dataset.id == dataset_id)
    if purpose is not None:
        stmt = stmt.where(Dataset.purpose == purpose)
    return session.scalar(stmt)


def list_page(session: Session, *, team_id: int, offset: int, limit: int) -> tuple[list[Dataset], int]:
    """The team's datasets, newest first, and how many there are in all."""
    where = (Dataset.team_id == team_id, Dataset.purpose == FINE_TUNE)
    total = session.scalar(select(func.count(Dataset.id)).where(*where)) or 0
    stmt = select(Dataset).where(*where).order_by(Dataset.created_at.desc(), Dataset.id.desc())
    return list(session.scalars(stmt.offset(offset).limit(limit))), total


def by_sha256(session: Session, *, team_id: int, sha256: str) -> list[Dataset]:
    """Training datasets of the team with exactly these bytes, newest first."""
    stmt = select(Dataset).where(Dataset.team_id == team_id, Dataset.purpose == FINE_TUNE,
                                 Dataset.sha256 == sha256).order_by(Dataset.id.desc())
    return list(session.scalars(stmt))


def next_version(session: Session, *, team_id: int, name: str) -> int:
    """One more than the highest version of ``name`` (of any purpose: the pair is unique)."""
    stmt = select(func.max(Dataset.version)).where(Dataset.team_id == team_id, Dataset.name == name)
    return (session.scalar(stmt) or 0) + 1


def versions(session: Session, *, team_id: int, name: str) -> list[Dataset]:
    """Every version of a dataset name, newest first."""
    stmt = select(Dataset).where(Dataset.team_id == team_id, Dataset.name == name,
                                 Dataset.purpose == FINE_TUNE).order_by(Dataset.version.desc())
    return list(session.scalars(stmt))


def artifacts(session: Session, *, team_id: int, dataset_id: int) -> list[Artifact]:
    stmt = select(Artifact).where(Artifact.team_id == team_id, Artifact.dataset_id == dataset_id)
    return list(session.scalars(stmt.order_by(Artifact.id)))


def by_id(session: Session, dataset_id: int) -> Dataset | None:
    """A dataset named by a task message (the worker side: the id came from the database)."""
    return session.get(Dataset, dataset_id)


def lock(session: Session, dataset_id: int) -> None:
    """Holds the dataset's row until the transaction ends (Postgres): a check that finishes
    meanwhile waits, then sees what this transaction wrote (a run waiting for the dataset)."""
    session.execute(select(Dataset.id).where(Dataset.id == dataset_id).with_for_update())


def uploaded_before(session: Session, created_before: datetime) -> list[Dataset]:
    """Uploads still waiting for their check since before this time (a lost validation message)."""
    stmt = select(Dataset).where(Dataset.status == DatasetStatus.uploaded, Dataset.created_at < created_before)
    return list(session.scalars(stmt))
