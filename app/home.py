"""The home page: the team's numbers and whether the studio can train right now."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from app.deps import CurrentUser, SessionDep
from app.health import live_workers
from app.models import Dataset, Job, JobStatus, Membership
from app.models_registry import repository as models_repo
from app.web import render

router = APIRouter(include_in_schema=False)


def team_counts(db, team_id: int) -> dict[str, int]:  # noqa: ANN001
    def count(stmt) -> int:  # noqa: ANN001
        return db.scalar(stmt) or 0

    return {
        "datasets": count(select(func.count(Dataset.id)).where(Dataset.team_id == team_id,
                                                               Dataset.purpose == "fine-tune")),
        "jobs": count(select(func.count(Job.id)).where(Job.team_id == team_id)),
        "running": count(select(func.count(Job.id)).where(Job.team_id == team_id,
                                                         Job.status == JobStatus.running)),
        "queued": count(select(func.count(Job.id)).where(Job.team_id == team_id,
                                                        Job.status == JobStatus.queued)),
        "members": count(select(func.count(Membership.id)).where(Membership.team_id == team_id)),
    }


@router.get("/")
def home(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return render(request, "home.html", {
        "counts": team_counts(db, p.team_id),
        "workers": live_workers(request.app.state.session_factory),
        "models": models_repo.visible(db, p.team_id),
    })
