"""Queries for the `workers` table: each worker's heartbeat row (see worker/runtime/heartbeat.py).
Workers belong to the studio, not to a team: these queries take no team id."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import Worker, utcnow

ALIVE_S = 30  # a worker whose last heartbeat is older than this is gone


def alive(session: Session) -> list[Worker]:
    """Workers whose heartbeat is recent: the one definition of "alive"."""
    cutoff = utcnow() - timedelta(seconds=ALIVE_S)
    stmt = select(Worker).where(Worker.last_seen_at >= cutoff).order_by(Worker.name)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def by_name(session: Session, name: str) -> Worker | None:
    return session.scalar(select(Worker).where(Worker.name == name))


def remove(session: Session, name: str) -> None:
    session.execute(delete(Worker).where(Worker.name == name))
