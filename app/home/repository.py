"""Queries for the home page: the team's numbers, each one scoped by team."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Dataset, Run, RunStatus, Membership


def team_counts(session: Session, team_id: int) -> dict[str, int]:
    def count(stmt) -> int:  # noqa: ANN001
        return session.scalar(stmt) or 0

    return {
        "datasets": count(select(func.count(Dataset.id)).where(Dataset.team_id == team_id,
                                                               Dataset.purpose == "fine-tune")),
        "runs": count(select(func.count(Run.id)).where(Run.team_id == team_id)),
        "running": count(select(func.count(Run.id)).where(Run.team_id == team_id,
                                                         Run.status == RunStatus.running)),
        "queued": count(select(func.count(Run.id)).where(Run.team_id == team_id,
                                                        Run.status == RunStatus.queued)),
        "members": count(select(func.count(Membership.id)).where(Membership.team_id == team_id)),
    }
