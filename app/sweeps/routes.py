"""Sweeps over HTTP: the JSON API (/api/v1/sweeps) and the pages (/sweeps).

The dashboard's live region (`sweeps/_dashboard.html`) asks for itself again every 3 s while a
run of the sweep is queued or running; its charts are SVG drawn on the server.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from app.compare import repository as reads
from app.deps import CurrentPrincipal, CurrentUser, Principal, SessionDep, SettingsDep
from app.errors import InvalidInput, StudioError
from app.runs import configure
from app.models import Sweep
from app.models_registry import repository as models_repo
from app.sweeps import grid, service, views
from app.sweeps import repository as repo
from app.sweeps.schemas import PromoteBody, SweepCreate, SweepOut, SweepPage, SweepRun
from app.web import is_htmx, redirect, render

api = APIRouter(prefix="/api/v1", tags=["sweeps"])
pages = APIRouter(tags=["sweeps"], include_in_schema=False)
PAGE_SIZE = 25
MAIN_FIELDS = (("learning_rate", "Learning rate", "1e-4, 3e-4"), ("lora_r", "LoRA rank", "8, 16"),
               ("per_device_batch_size", "Batch size", ""), ("epochs", "Epochs", ""))
EXTRA_ROWS = 3
METRIC_CHOICES = (("eval_loss", "Evaluation loss (lower is better)"), ("train_loss", "Training loss (lower is better)"),
                  ("perplexity", "Perplexity (lower is better)"),
                  ("rougeL", "ROUGE-L of the evaluation (higher is better)"))


def _out(session: Session, sweep: Sweep, *, with_runs: bool) -> SweepOut:
    items = views.rows(session, sweep) if with_runs else None
    by_status = views.counts(items) if items is not None else views.summary_counts(
        sweep, repo.child_counts(session, team_id=sweep.team_id, sweep_ids=[sweep.id]).get(sweep.id, {}))
    runs = [SweepRun(index=r.index, params=r.params, status=r.status, run_id=r.run.id if r.run else None,
                     value=r.value, is_best=r.is_best, is_promoted=r.is_promoted) for r in items] if items else None
    return SweepOut(id=sweep.id, name=sweep.name, status=sweep.status, metric=sweep.metric, mode=sweep.mode,
                    max_parallel=sweep.max_parallel, search_space=sweep.search_space, base_config=sweep.base_config,
                    dataset_id=sweep.dataset_id, base_model_id=sweep.base_model_id, best_run_id=sweep.best_run_id,
                    promoted_run_id=sweep.promoted_run_id, error_message=sweep.error_message,
                    created_at=sweep.created_at, finished_at=sweep.finished_at,
                    total_runs=len(grid.expand(sweep.search_space)), counts=by_status, runs=runs)


# -- API ------------------------------------------------------------------------------------

@api.post("/sweeps", response_model=SweepOut, status_code=201)
def create_sweep(body: SweepCreate, db: SessionDep, p: CurrentPrincipal,
                 settings: SettingsDep) -> Response:
    p.require("write")
    req = service.SweepRequest(team_id=p.team_id, user_id=p.user_id, dataset_id=body.dataset_id,
                               base_model_id=body.base_model_id, search_space=body.search_space,
                               preset=body.preset, hyperparameters=body.hyperparameters, name=body.name,
                               metric=body.metric, mode=body.mode, max_parallel=body.max_parallel)
    sweep = service.create(db, req=req, settings=settings)
    return JSONResponse(_out(db, sweep, with_runs=True).model_dump(mode="json"), status_code=201)


@api.get("/sweeps", response_model=SweepPage)
def list_sweeps(db: SessionDep, p: CurrentPrincipal,
                before: Annotated[int | None, Query(description="cursor: id of the last sweep seen")] = None,
                limit: Annotated[int, Query(ge=1, le=100)] = 20) -> SweepPage:
    p.require("read")
    sweeps = repo.list_sweeps(db, team_id=p.team_id, before_id=before, limit=limit + 1)
    page = sweeps[:limit]
    return SweepPage(data=[_out(db, s, with_runs=False) for s in page],
                     next_cursor=page[-1].id if len(sweeps) > limit else None)


@api.get("/sweeps/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: int, db: SessionDep, p: CurrentPrincipal) -> SweepOut:
    p.require("read")
    return _out(db, service.get(db, team_id=p.team_id, sweep_id=sweep_id), with_runs=True)


@api.post("/sweeps/{sweep_id}/cancel", response_model=SweepOut)
def cancel_sweep(sweep_id: int, db: SessionDep, p: CurrentPrincipal) -> SweepOut:
    p.require("write")
    sweep = service.cancel(db, service.get(db, team_id=p.team_id, sweep_id=sweep_id))
    return _out(db, sweep, with_runs=True)


@api.post("/sweeps/{sweep_id}/promote", response_model=SweepOut)
def promote_sweep_run(sweep_id: int, db: SessionDep, p: CurrentPrincipal, body: PromoteBody | None = None) -> SweepOut:
    """Marks a succeeded run as the team's chosen model: the best one unless run_id names another."""
    p.require("write")
    sweep = service.get(db, team_id=p.team_id, sweep_id=sweep_id)
    service.promote(db, sweep, body.run_id if body else None)
    return _out(db, sweep, with_runs=True)


# -- pages: the new-sweep form --------------------------------------------------------------

def _form(items) -> dict[str, str]:  # noqa: ANN001
    return {k: v for k, v in items if isinstance(v, str) and k != "csrf_token"}


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def space_from(form: dict[str, str]) -> dict[str, list[str]]:
    """The search space typed in the form: comma-separated values per setting."""
    space: dict[str, list[str]] = {}
    rows = [(name, form.get(f"sp_{name}", "")) for name, _, _ in MAIN_FIELDS]
    rows += [(form.get(f"extra_field_{i}", "").strip(), form.get(f"extra_values_{i}", ""))
             for i in range(1, EXTRA_ROWS + 1)]
    for name, text in rows:
        values = grid.parse_values(text)
        if not name or not values:
            continue
        if name in space:
            raise InvalidInput(f"{name} is listed twice in the search space: give all its values in one row.",
                               param="search_space")
        space[name] = values
    return space


def fixed_from(form: dict[str, str]) -> dict[str, Any]:
    """Settings for every run, one `name = value` per line ('none' for empty)."""
    fixed: dict[str, Any] = {}
    for n, line in enumerate((form.get("fixed") or "").splitlines(), start=1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        name, sep, value = line.replace(":", "=", 1).partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"Line {n} of the settings for every run: write it as name = value "
                               f"(e.g. max_steps = 30).", param="fixed")
        value = value.strip()
        fixed[name.strip()] = None if value.lower() in ("none", "null", "empty", "") else value
    return fixed


def _preview(form: dict[str, str]) -> dict[str, Any]:
    try:
        space = grid.validate_space(space_from(form))
    except StudioError as exc:
        return {"preview_error": exc.message, "points": []}
    return {"preview_error": None, "points": grid.expand(space), "space": space}


def _new_context(db: Session, p: Principal, form: dict[str, str], error: str | None = None) -> dict[str, Any]:
    if not form:
        form = {f"sp_{name}": default for name, _, default in MAIN_FIELDS if default}
        form.update(metric="eval_loss", max_parallel="2", fixed="max_steps = 30")
    return {"form": form, "error": error, "datasets": reads.trainable_datasets(db, team_id=p.team_id),
            "models": models_repo.visible(db, p.team_id), "main_fields": MAIN_FIELDS,
            "extra_rows": range(1, EXTRA_ROWS + 1), "fields": grid.sweepable_fields(), "presets": configure.PRESETS,
            "metric_choices": METRIC_CHOICES, "max_runs": grid.MAX_RUNS, "max_parallel": service.MAX_PARALLEL,
            "label": grid.label, "can_write": "write" in p.scopes, **_preview(form)}


@pages.get("/sweeps/new")
def new_sweep(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return render(request, "sweeps/new.html", _new_context(db, p, _form(request.query_params.multi_items())))


@pages.get("/sweeps/preview")
def preview_sweep(request: Request, p: CurrentUser) -> Response:
    """How many runs the form's search space makes, and which (the form asks as you type)."""
    ctx = {"label": grid.label, "max_runs": grid.MAX_RUNS, **_preview(_form(request.query_params.multi_items()))}
    return render(request, "sweeps/_preview.html", ctx)


@pages.post("/sweeps")
async def create_sweep_page(request: Request, db: SessionDep, p: CurrentUser, settings: SettingsDep) -> Response:
    p.require("write")
    form = _form((await request.form()).multi_items())
    try:
        mode = form.get("mode") if form.get("mode") in ("min", "max") else None
        req = service.SweepRequest(team_id=p.team_id, user_id=p.user_id, dataset_id=_int(form.get("dataset_id")) or 0,
                                   base_model_id=_int(form.get("base_model_id")) or 0,
                                   search_space=space_from(form), hyperparameters=fixed_from(form),
                                   preset=form.get("preset") or "auto", name=(form.get("name") or "")[:200],
                                   metric=(form.get("metric") or "eval_loss").strip(), mode=mode,
                                   max_parallel=_int(form.get("max_parallel") or "2") or 0)
        sweep = service.create(db, req=req, settings=settings)
    except StudioError as exc:
        db.rollback()
        return render(request, "sweeps/new.html", _new_context(db, p, form, error=exc.message),
                      status_code=exc.status_code)
    total = len(grid.expand(sweep.search_space))
    return redirect(request, f"/sweeps/{sweep.id}",
                    flash=("success", f"“{sweep.name}” started: {total} runs, {sweep.max_parallel} at a time."))


# -- pages: list and dashboard --------------------------------------------------------------

@pages.get("/sweeps")
def sweeps_list(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    before = _int(request.query_params.get("before"))
    sweeps = repo.list_sweeps(db, team_id=p.team_id, before_id=before, limit=PAGE_SIZE + 1)
    page = sweeps[:PAGE_SIZE]
    by_status = repo.child_counts(db, team_id=p.team_id, sweep_ids=[s.id for s in page])
    return render(request, "sweeps/list.html", {
        "sweeps": page, "counts": {s.id: views.summary_counts(s, by_status.get(s.id, {})) for s in page},
        "totals": {s.id: len(grid.expand(s.search_space)) for s in page},
        "next_url": f"/sweeps?before={page[-1].id}" if len(sweeps) > PAGE_SIZE else None,
        "first_url": "/sweeps" if before else None, "views": views, "metric_label": service.metric_label,
        "can_write": "write" in p.scopes})


def _dashboard(request: Request, db: Session, p: Principal, sweep: Sweep) -> dict[str, Any]:
    items = views.rows(db, sweep)
    params = [name for name in grid.sweepable_fields() if name in sweep.search_space]  # config order
    x = request.query_params.get("x")
    x = x if x in params else params[0]
    return {"sweep": sweep, "rows": items, "params": params, "x": x, "views": views, "grid": grid,
            "counts": views.counts(items), "total": len(items), "metric_label": service.metric_label(sweep.metric),
            "dots": views.dot_chart(items), "by_param": views.param_chart(sweep, items, x),
            "live": sweep.status == "running" or any(r.status in ("queued", "running") for r in items),
            "best": next((r for r in items if r.is_best), None),
            "dataset_name": reads.dataset_names(db, team_id=p.team_id, ids={sweep.dataset_id} - {None}),
            "model_name": reads.model_names(db, team_id=p.team_id, ids={sweep.base_model_id} - {None}),
            "can_write": "write" in p.scopes}


@pages.get("/sweeps/{sweep_id}")
def sweep_page(request: Request, sweep_id: int, db: SessionDep, p: CurrentUser) -> Response:
    sweep = service.get(db, team_id=p.team_id, sweep_id=sweep_id)
    return render(request, "sweeps/sweep.html", _dashboard(request, db, p, sweep))


@pages.get("/sweeps/{sweep_id}/status")
def sweep_status(request: Request, sweep_id: int, db: SessionDep, p: CurrentUser) -> Response:
    sweep = service.get(db, team_id=p.team_id, sweep_id=sweep_id)
    if not is_htmx(request):
        return redirect(request, f"/sweeps/{sweep.id}")
    return render(request, "sweeps/_dashboard.html", _dashboard(request, db, p, sweep))


@pages.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep_page(request: Request, sweep_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    service.cancel(db, service.get(db, team_id=p.team_id, sweep_id=sweep_id))
    return redirect(request, f"/sweeps/{sweep_id}",
                    flash=("success", "Sweep cancelled: its queued runs were cancelled and its running ones stop "
                                      "at their next step."))


@pages.post("/sweeps/{sweep_id}/promote")
async def promote_page(request: Request, sweep_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    sweep = service.get(db, team_id=p.team_id, sweep_id=sweep_id)
    run = service.promote(db, sweep, _int((await request.form()).get("run_id")))
    return redirect(request, f"/sweeps/{sweep.id}",
                    flash=("success", f"Run #{run.id} “{run.name}” is now the promoted run of this sweep."))
