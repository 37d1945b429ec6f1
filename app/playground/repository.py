"""Queries of the playground's saved transcripts, always within one team."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Transcript


def list_for_team(session: Session, *, team_id: int, offset: int = 0, limit: int = 50) -> list[Transcript]:
    stmt = (select(Transcript).where(Transcript.team_id == team_id)
            .order_by(Transcript.id.desc()).offset(offset).limit(limit))
    return list(session.scalars(stmt))


def count_for_team(session: Session, *, team_id: int) -> int:
    return session.scalar(select(func.count(Transcript.id)).where(Transcript.team_id == team_id)) or 0


def get(session: Session, *, team_id: int, transcript_id: int) -> Transcript | None:
    return session.scalar(select(Transcript).where(Transcript.team_id == team_id, Transcript.id == transcript_id))
