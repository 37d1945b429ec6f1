"""Queries of blind A/B comparisons. A comparison is found only through its team; pairs and
votes only through a comparison that a team-scoped query returned."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import Comparison, ComparisonPair, Vote


def list_for_team(session: Session, *, team_id: int, limit: int = 100) -> list[Comparison]:
    stmt = select(Comparison).where(Comparison.team_id == team_id).order_by(Comparison.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def get(session: Session, *, team_id: int, comparison_id: int) -> Comparison | None:
    return session.scalar(select(Comparison).where(Comparison.team_id == team_id,
                                                   Comparison.id == comparison_id))


def pairs(session: Session, *, comparison_id: int) -> list[ComparisonPair]:
    stmt = select(ComparisonPair).where(ComparisonPair.comparison_id == comparison_id)
    return list(session.scalars(stmt.order_by(ComparisonPair.position)))


def pair(session: Session, *, comparison_id: int, pair_id: int) -> ComparisonPair | None:
    return session.scalar(select(ComparisonPair).where(ComparisonPair.comparison_id == comparison_id,
                                                       ComparisonPair.id == pair_id))


def pair_counts(session: Session, *, comparison_ids: list[int]) -> dict[int, int]:
    if not comparison_ids:
        return {}
    stmt = (select(ComparisonPair.comparison_id, func.count(ComparisonPair.id))
            .where(ComparisonPair.comparison_id.in_(comparison_ids)).group_by(ComparisonPair.comparison_id))
    return dict(session.execute(stmt).all())


def votes(session: Session, *, comparison_id: int) -> list[tuple[int, int, str]]:
    """(pair_id, user_id, choice) of every vote on the comparison."""
    stmt = (select(Vote.pair_id, Vote.user_id, Vote.choice).join(ComparisonPair, ComparisonPair.id == Vote.pair_id)
            .where(ComparisonPair.comparison_id == comparison_id).order_by(Vote.id))
    return [tuple(row) for row in session.execute(stmt).all()]


def votes_of(session: Session, *, comparison_id: int, user_id: int) -> dict[int, str]:
    """pair_id -> choice of one person's votes on the comparison."""
    stmt = (select(Vote.pair_id, Vote.choice).join(ComparisonPair, ComparisonPair.id == Vote.pair_id)
            .where(ComparisonPair.comparison_id == comparison_id, Vote.user_id == user_id))
    return dict(session.execute(stmt).all())


def add_vote(session: Session, *, pair_id: int, user_id: int, choice: str) -> Vote | None:
    """Inserts the vote; None when this person already voted on this pair (the unique key,
    so two tabs submitting at once still leave one vote)."""
    vote = Vote(pair_id=pair_id, user_id=user_id, choice=choice)
    try:
        with session.begin_nested():
            session.add(vote)
            session.flush()
    except IntegrityError:
        return None
    return vote


# -- worker side: ids a broker message handed over, or state ---------------------------------

def by_id(session: Session, comparison_id: int) -> Comparison | None:
    return session.get(Comparison, comparison_id)


def pair_by_id(session: Session, pair_id: int) -> ComparisonPair | None:
    return session.get(ComparisonPair, pair_id)


def pending_since(session: Session, *, status: str, created_before: datetime) -> list[Comparison]:
    """Comparisons of every team still in `status` (waiting for answers) since before the time."""
    stmt = select(Comparison).where(Comparison.status == status, Comparison.created_at < created_before)
    return list(session.scalars(stmt))
