"""Queries of the model registry. Tenant reads take the team id; the worker-side ones work on the
evaluation ids the broker handed over."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.models import Evaluation, ModelAlias, ModelVersion, QualityGate, Release

PENDING = "pending"


def versions(session: Session, *, team_id: int) -> list[ModelVersion]:
    stmt = select(ModelVersion).where(ModelVersion.team_id == team_id)
    return list(session.scalars(stmt.order_by(ModelVersion.name, ModelVersion.version.desc())))


def version(session: Session, *, team_id: int, version_id: int | None) -> ModelVersion | None:
    if version_id is None:
        return None
    return session.scalar(select(ModelVersion).where(ModelVersion.team_id == team_id, ModelVersion.id == version_id))


def version_by_name(session: Session, *, team_id: int, name: str, number: int) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.team_id == team_id, ModelVersion.name == name,
                                                     ModelVersion.version == number))


def latest_version(session: Session, *, team_id: int, name: str) -> ModelVersion | None:
    stmt = (select(ModelVersion).where(ModelVersion.team_id == team_id, ModelVersion.name == name)
            .order_by(ModelVersion.version.desc()).limit(1))
    return session.scalar(stmt)


def version_of_run(session: Session, *, team_id: int, run_id: int) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.team_id == team_id, ModelVersion.run_id == run_id))


def next_number(session: Session, *, team_id: int, name: str) -> int:
    top = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.team_id == team_id,
                                                                       ModelVersion.name == name))
    return (top or 0) + 1


def aliases(session: Session, *, team_id: int) -> list[ModelAlias]:
    stmt = select(ModelAlias).where(ModelAlias.team_id == team_id)
    return list(session.scalars(stmt.order_by(ModelAlias.name, ModelAlias.alias)))


def alias(session: Session, *, team_id: int, alias_id: int) -> ModelAlias | None:
    return session.scalar(select(ModelAlias).where(ModelAlias.team_id == team_id, ModelAlias.id == alias_id))


def alias_by_name(session: Session, *, team_id: int, name: str, alias_name: str) -> ModelAlias | None:
    return session.scalar(select(ModelAlias).where(ModelAlias.team_id == team_id, ModelAlias.name == name,
                                                   ModelAlias.alias == alias_name))


def aliases_on(session: Session, *, team_id: int, version_id: int) -> list[ModelAlias]:
    return list(session.scalars(select(ModelAlias).where(ModelAlias.team_id == team_id,
                                                         ModelAlias.version_id == version_id)))


def releases(session: Session, *, team_id: int, alias_id: int | None = None, limit: int = 100) -> list[Release]:
    """The release log, newest first."""
    stmt = select(Release).where(Release.team_id == team_id)
    if alias_id is not None:
        stmt = stmt.where(Release.alias_id == alias_id)
    return list(session.scalars(stmt.order_by(Release.id.desc()).limit(limit)))


def release(session: Session, *, team_id: int, release_id: int) -> Release | None:
    return session.scalar(select(Release).where(Release.team_id == team_id, Release.id == release_id))


def pending_release(session: Session, *, team_id: int, alias_id: int) -> Release | None:
    return session.scalar(select(Release).where(Release.team_id == team_id, Release.alias_id == alias_id,
                                                Release.status == PENDING))


def last_moved(session: Session, *, team_id: int, alias_id: int) -> Release | None:
    """The move that put the alias's holder there (the one a rollback undoes)."""
    stmt = (select(Release).where(Release.team_id == team_id, Release.alias_id == alias_id,
                                  Release.status == "moved").order_by(Release.id.desc()).limit(1))
    return session.scalar(stmt)


def gate(session: Session, *, team_id: int) -> QualityGate | None:
    return session.scalar(select(QualityGate).where(QualityGate.team_id == team_id))


def golden_evaluation(session: Session, *, team_id: int, run_id: int, kind: str, dataset_id: int,
                      dataset_version: int) -> Evaluation | None:
    """The newest golden-set evaluation of a run on this dataset version, finished or under way."""
    stmt = (select(Evaluation).where(Evaluation.team_id == team_id, Evaluation.run_id == run_id,
                                     Evaluation.kind == kind, Evaluation.status != "failed")
            .order_by(Evaluation.id.desc()))
    for row in session.scalars(stmt):
        details = row.details or {}
        if details.get("golden_dataset_id") == dataset_id and details.get("golden_dataset_version") == dataset_version:
            return row
    return None


def judge_of(session: Session, *, team_id: int, source_id: int, kind: str) -> Evaluation | None:
    stmt = (select(Evaluation).where(Evaluation.team_id == team_id, Evaluation.kind == kind,
                                     Evaluation.status != "failed").order_by(Evaluation.id.desc()))
    return next((e for e in session.scalars(stmt) if (e.details or {}).get("source_evaluation_id") == source_id), None)


# -- worker side -----------------------------------------------------------------------------

def pending_waiting_on(session: Session, evaluation_id: int) -> list[Release]:
    """Pending releases of any team that wait for this evaluation (or a judging of it)."""
    stmt = select(Release).where(Release.status == PENDING, or_(Release.candidate_evaluation_id == evaluation_id,
                                                                Release.holder_evaluation_id == evaluation_id))
    return list(session.scalars(stmt.order_by(Release.id)))
