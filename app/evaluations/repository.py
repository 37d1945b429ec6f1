"""Queries for evaluations. Tenant reads take the team id; the worker-side ones work on the ids
the broker handed over or on state, never on input."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Evaluation

UNFINISHED = ("pending", "running")


def for_run(session: Session, *, team_id: int, run_id: int, kind: str | None = None) -> list[Evaluation]:
    """A run's evaluations, oldest first."""
    stmt = select(Evaluation).where(Evaluation.team_id == team_id, Evaluation.run_id == run_id)
    if kind is not None:
        stmt = stmt.where(Evaluation.kind == kind)
    return list(session.scalars(stmt.order_by(Evaluation.id)))


def latest(session: Session, *, team_id: int, run_id: int, kind: str) -> Evaluation | None:
    stmt = (select(Evaluation).where(Evaluation.team_id == team_id, Evaluation.run_id == run_id,
                                     Evaluation.kind == kind).order_by(Evaluation.id.desc()).limit(1))
    return session.scalar(stmt)


def latest_succeeded(session: Session, *, run_id: int, kind: str) -> Evaluation | None:
    """The newest finished evaluation of a run the caller has already found in its team."""
    stmt = (select(Evaluation).where(Evaluation.run_id == run_id, Evaluation.kind == kind,
                                     Evaluation.status == "succeeded").order_by(Evaluation.id.desc()).limit(1))
    return session.scalar(stmt)


def unfinished_of(session: Session, *, run_id: int, kind: str) -> Evaluation | None:
    """An evaluation of the run still pending or running (the caller has checked the team)."""
    stmt = select(Evaluation).where(Evaluation.run_id == run_id, Evaluation.kind == kind,
                                    Evaluation.status.in_(UNFINISHED))
    return session.scalar(stmt)


# -- worker side -----------------------------------------------------------------------------

def by_id(session: Session, evaluation_id: int | None) -> Evaluation | None:
    return session.get(Evaluation, evaluation_id)


def get_for_update(session: Session, evaluation_id: int) -> Evaluation | None:
    return session.get(Evaluation, evaluation_id, with_for_update=True)


def unfinished(session: Session, *, kinds: tuple[str, ...] = ("automatic", "golden")) -> list[Evaluation]:
    """Evaluations still pending or running, of every team (for the repair of interrupted ones):
    the automatic ones and the golden-set ones a release asked for, both made by training workers."""
    stmt = select(Evaluation).where(Evaluation.kind.in_(kinds), Evaluation.status.in_(UNFINISHED))
    return list(session.scalars(stmt.order_by(Evaluation.id)))
