"""The home page: the team's numbers and whether the studio can train right now."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.deps import CurrentUser, SessionDep
from app.home import glossary
from app.home import repository as repo
from app.models_registry import repository as models_repo
from app.web import render
from app.workers import repository as workers_repo

pages = APIRouter(include_in_schema=False)


@pages.get("/")
def home(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return render(request, "home.html", {
        "counts": repo.team_counts(db, p.team_id),
        "workers": workers_repo.alive(db),
        "models": models_repo.visible(db, p.team_id),
    })


@pages.get("/glossary")
def glossary_page(request: Request, p: CurrentUser) -> Response:
    """Every term the studio shows, in plain words; pages link here (/glossary#<slug>)."""
    return render(request, "glossary.html", {"terms": sorted(glossary.GLOSSARY, key=lambda t: t.term.lower())})
