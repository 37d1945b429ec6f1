"""Evaluations of a run: the JSON API, the run page's Evaluation section (an htmx fragment that asks
for itself again while the evaluation runs) and the re-run action."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from app.config import Settings
from app.deps import CurrentPrincipal, CurrentUser, SessionDep, SettingsDep
from app.evaluations import judge
from app.evaluations import repository as repo
from app.evaluations import service, views
from app.evaluations.schemas import EvaluationOut
from app.runs import service as runs_service
from app.models import Run
from app.web import is_htmx, redirect, render

api = APIRouter(prefix="/api/v1", tags=["evaluations"])
pages = APIRouter(tags=["runs"], include_in_schema=False)


def section_context(db: Session, *, team_id: int, run: Run, can_write: bool,
                    settings: Settings | None = None) -> dict[str, Any]:
    """What templates/evaluations/_section.html needs (the run page includes it)."""
    evaluations = repo.for_run(db, team_id=team_id, run_id=run.id)
    ctx = views.section(run, evaluations, service.alive_workers(db), can_write)
    latest = ctx["evaluation"]
    ctx["wait"] = (runs_service.queue_wait(db, run.queue, sent=latest.created_at)
                   if latest is not None and latest.status == "pending" and ctx["evaluating"] else None)
    judged = ctx["judge"] is not None and ctx["judge"].status in ("pending", "running")
    ctx["can_judge"] = bool(can_write and settings is not None and settings.judge_base_url and settings.judge_model
                            and ctx["evaluation"] is not None and ctx["evaluation"].status == "succeeded"
                            and ctx["evaluation"].samples and not judged)
    return ctx


@api.get("/runs/{run_id}/evaluations", response_model=list[EvaluationOut])
def list_evaluations(run_id: int, db: SessionDep, p: CurrentPrincipal) -> list[EvaluationOut]:
    """The run's evaluations, oldest first: automatic metrics (base vs fine-tuned) and LLM-judge scores."""
    p.require("read")
    run = runs_service.get(db, team_id=p.team_id, run_id=run_id)
    return [EvaluationOut.model_validate(e) for e in repo.for_run(db, team_id=p.team_id, run_id=run.id)]


@api.post("/runs/{run_id}/evaluations", response_model=EvaluationOut, status_code=201)
def rerun_evaluation(run_id: int, db: SessionDep, p: CurrentPrincipal) -> Response:
    """Queues a fresh automatic evaluation of a finished run (409 while one is under way)."""
    p.require("write")
    run = runs_service.get(db, team_id=p.team_id, run_id=run_id)
    evaluation = service.rerun(db, run=run, alive=service.alive_workers(db))
    return JSONResponse(EvaluationOut.model_validate(evaluation).model_dump(mode="json"), status_code=201)


@api.post("/runs/{run_id}/evaluations/judge", response_model=EvaluationOut, status_code=202)
def judge_run(run_id: int, db: SessionDep, p: CurrentPrincipal, settings: SettingsDep) -> Response:
    """Queues scoring of the run's latest evaluation answers by the configured LLM judge
    (STUDIO_JUDGE_*). The scores are automatic, not human ratings."""
    p.require("write")
    run = runs_service.get(db, team_id=p.team_id, run_id=run_id)
    evaluation = judge.request(db, run, settings)
    return JSONResponse(EvaluationOut.model_validate(evaluation).model_dump(mode="json"), status_code=202)


@pages.get("/runs/{run_id}/evaluation")
def evaluation_section(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    run = runs_service.get(db, team_id=p.team_id, run_id=run_id)
    if not is_htmx(request):
        return redirect(request, f"/runs/{run.id}#evaluation-title")
    return render(request, "evaluations/_section.html",
                  section_context(db, team_id=p.team_id, run=run, can_write="write" in p.scopes,
                                  settings=request.app.state.settings))


@pages.post("/runs/{run_id}/evaluation/judge")
def judge_run_page(request: Request, run_id: int, db: SessionDep, p: CurrentUser, settings: SettingsDep) -> Response:
    p.require("write")
    run = runs_service.get(db, team_id=p.team_id, run_id=run_id)
    judge.request(db, run, settings)
    return redirect(request, f"/runs/{run.id}#evaluation-title",
                    flash=("success", f"The LLM judge ({settings.judge_model}) will score the answers."))


@pages.post("/runs/{run_id}/evaluation/rerun")
def rerun_evaluation_page(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    run = runs_service.get(db, team_id=p.team_id, run_id=run_id)
    service.rerun(db, run=run, alive=service.alive_workers(db))
    return redirect(request, f"/runs/{run.id}", flash=("success", "The evaluation is queued again."))
