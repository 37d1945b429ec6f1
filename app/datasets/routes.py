"""Dataset pages (list, upload, detail with report, statistics and preview) and the REST API.

Uploads are streamed (app.datasets.upload), so the upload routes read the request themselves
instead of declaring form parameters.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from app.datasets import repository as repo
from app.datasets import service, tokens, views
from app.datasets.schemas import DatasetOut, DatasetPage, MappingIn, ReportOut, RowsOut
from app.datasets.upload import ReceivedUpload, human_bytes, new_prefix, receive_upload
from app.deps import CurrentPrincipal, CurrentUser, Principal, SessionDep
from app.errors import Conflict, InvalidInput, StudioError
from app.models import Dataset, DatasetStatus
from app.models_registry import repository as models_repo
from app.models_registry.service import BUILTIN_SLUG
from app.runs import configure
from planner.defaults import DEFAULT_MAX_LENGTH
from app.runs import service as runs_service
from app.web import is_htmx, redirect, render, templates
from datacheck import ColumnMapping, Goal

pages = APIRouter(tags=["datasets"], include_in_schema=False)
api = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])
PAGE_SIZE = 20
PREVIEW_SIZE = 5
templates.env.filters.setdefault("filesize", human_bytes)

UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "JSONL, JSON or CSV/TSV"},
        "name": {"type": "string", "description": "defaults to the file name; an existing name "
                                                  "gets a new version"},
        "goal": {"type": "string", "enum": [g.value for g in Goal], "default": "other"},
        "eval_fraction": {"type": "number", "default": 0.1, "minimum": 0, "maximum": 0.5},
        "seed": {"type": "integer", "default": 42},
        "eval_file": {"type": "string", "format": "binary",
                      "description": "a separate evaluation file instead of a split"},
        "base_model_id": {"type": "integer", "description": "whose tokenizer counts tokens "
                                                           "(default: the built-in model)"},
    }}}}}}


# -- shared by pages and API --------------------------------------------------------------


async def _create(request: Request, db: Session, p: Principal) -> service.Created:
    p.require("write")
    store = request.app.state.store
    prefix = new_prefix(p.team_id)
    upload: ReceivedUpload = await receive_upload(
        request, store=store, file_keys={"file": f"{prefix}/raw", "eval_file": f"{prefix}/eval_raw"},
        max_bytes=request.app.state.settings.max_upload_bytes)
    try:
        main = upload.files.get("file")
        options = service.parse_options(upload.fields, filename=main.filename if main else "")
        return service.create_from_upload(db, store=store, team_id=p.team_id, user_id=p.user_id,
                                          upload=upload, options=options)
    except BaseException:
        upload.discard(store)
        raise


def _created_message(created: service.Created) -> str:
    d = created.dataset
    if created.duplicate:
        return (f'This file was already uploaded as "{d.name}" (version {d.version}), with the '
                "same settings: here it is, nothing was copied.")
    return f'"{d.name}" version {d.version} was uploaded. It is being checked now.'


# -- pages --------------------------------------------------------------------------------


@pages.get("/datasets")
def list_page(request: Request, db: SessionDep, p: CurrentUser, page: int = 1) -> Response:
    page = max(page, 1)
    datasets, total = repo.list_page(db, team_id=p.team_id, offset=(page - 1) * PAGE_SIZE,
                                     limit=PAGE_SIZE)
    return render(request, "datasets/list.html", {
        "datasets": datasets, "total": total, "page": page, "views": views,
        "pages": max(1, -(-total // PAGE_SIZE)), "can_write": "write" in p.scopes})


@pages.get("/datasets/new")
def new_page(request: Request, db: SessionDep, p: CurrentUser, name: str = "") -> Response:
    builtin = models_repo.by_slug(db, BUILTIN_SLUG, None)
    return render(request, "datasets/new.html", {
        "name": " ".join(name.split())[:200], "goals": service.goal_choices(),
        "models": models_repo.visible(db, p.team_id), "default_model": builtin.id if builtin else None,
        "max_upload": human_bytes(request.app.state.settings.max_upload_bytes),
        "can_write": "write" in p.scopes})


@pages.post("/datasets")
async def upload_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    created = await _create(request, db, p)
    url = f"/datasets/{created.dataset.id}"
    flash = ("success", _created_message(created))
    if "application/json" in request.headers.get("accept", ""):  # upload.js: it navigates itself
        body = {"url": url, "duplicate": created.duplicate, "message": flash[1]}
        response = JSONResponse(body, status_code=200 if created.duplicate else 201)
        response.headers.append("set-cookie", redirect(request, url, flash=flash).headers["set-cookie"])
        return response
    return redirect(request, url, flash=flash)


@pages.post("/datasets/example")
def example_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    created = service.create_from_example(db, store=request.app.state.store, team_id=p.team_id,
                                          user_id=p.user_id)
    return redirect(request, f"/datasets/{created.dataset.id}",
                    flash=("success", _created_message(created)))


@pages.get("/datasets/{dataset_id}")
def detail_page(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser) -> Response:
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    return render(request, "datasets/detail.html", _detail(request, db, p, dataset))


@pages.get("/datasets/{dataset_id}/status")
def status_fragment(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser) -> Response:
    """The status region; while the check runs it asks for itself again every second."""
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    name = "datasets/_status.html" if is_htmx(request) else "datasets/detail.html"
    return render(request, name, _detail(request, db, p, dataset))


@pages.get("/datasets/{dataset_id}/rows")
def rows_fragment(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser, page: int = 1,
                  q: str = "", split: str = "train") -> Response:
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    ctx = _detail(request, db, p, dataset, page=page, q=q, split=split)
    return render(request, "datasets/_preview.html" if is_htmx(request) else "datasets/detail.html", ctx)


@pages.post("/datasets/{dataset_id}/mapping")
async def mapping_page(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    form = await request.form()
    mapping = ColumnMapping(prompt=str(form.get("prompt", "")), completion=str(form.get("completion", "")),
                            system=str(form.get("system", "")) or None)
    try:
        service.set_mapping(db, team_id=p.team_id, dataset_id=dataset_id, mapping=mapping)
    except (InvalidInput, Conflict) as exc:
        db.rollback()
        dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
        ctx = _detail(request, db, p, dataset, mapping_error=exc.message)
        return render(request, "datasets/detail.html", ctx, status_code=exc.status_code)
    return redirect(request, f"/datasets/{dataset_id}",
                    flash=("success", "Columns saved. The dataset is being checked again."))


def _detail(request: Request, db: Session, p: Principal, dataset: Dataset, *, page: int = 1,
            q: str = "", split: str = "train", mapping_error: str | None = None) -> dict:
    report = dataset.report or {}
    model = (models_repo.get_visible(db, team_id=p.team_id, model_id=dataset.tokenizer_model_id)
             if dataset.tokenizer_model_id else None)
    eval_file = (repo.get(db, team_id=p.team_id, dataset_id=dataset.eval_dataset_id,
                          purpose=repo.EVAL_FILE) if dataset.eval_dataset_id else None)
    return {
        "dataset": dataset, "report": report, "views": views, "pending": views.is_pending(dataset),
        "histograms": views.histograms(dataset.stats), "errors_by_kind": views.error_counts(report),
        "versions": repo.versions(db, team_id=p.team_id, name=dataset.name), "model": model,
        "eval_file": eval_file, "can_write": "write" in p.scopes, "mapping_error": mapping_error,
        "mapping": dataset.column_mapping or report.get("mapping") or {},
        "preview": _preview(request, dataset, page, q, split),
        "token_preview": _token_preview(db, dataset, model),
    }


def _token_preview(db: Session, dataset: Dataset, model) -> tokens.TokenPreview | None:  # noqa: ANN001
    """The preview for the dataset's base model, cut where the wizard's plan would cut it."""
    if dataset.status != DatasetStatus.valid or model is None:
        return None
    max_length = min(model.context_length or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH)
    if model.parameter_count:  # a registry row without the model's shape cannot be planned
        try:
            plan = configure.plan(dataset=dataset, model=model, device=runs_service.training_device(db))
            max_length = plan.config.max_length
        except StudioError:
            pass
    return tokens.preview(dataset, model.id, max_length)


def _preview(request: Request, dataset: Dataset, page: int, q: str, split: str) -> dict | None:
    if dataset.status != DatasetStatus.valid:
        return None
    page, q = max(page, 1), q.strip()[:200]
    split = split if split in ("train", "eval") else "train"
    rows, more = service.rows(request.app.state.store, dataset, split=split, query=q,
                              offset=(page - 1) * PREVIEW_SIZE, limit=PREVIEW_SIZE)
    return {"rows": rows, "has_more": more, "page": page, "q": q, "split": split}


# -- REST ---------------------------------------------------------------------------------


@api.post("", status_code=201, response_model=DatasetOut, openapi_extra=UPLOAD_BODY,
          responses={200: {"model": DatasetOut, "description": "identical to an existing dataset"}})
async def upload_api(request: Request, db: SessionDep, p: CurrentPrincipal) -> Response:
    """Upload a dataset (multipart). It is checked in the background: poll GET /{id}."""
    created = await _create(request, db, p)
    body = DatasetOut.of(created.dataset, duplicate=created.duplicate)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if created.duplicate else 201)


@api.get("", response_model=DatasetPage)
def list_api(db: SessionDep, p: CurrentPrincipal, offset: Annotated[int, Query(ge=0)] = 0,
             limit: Annotated[int, Query(ge=1, le=100)] = 20) -> DatasetPage:
    p.require("read")
    datasets, total = repo.list_page(db, team_id=p.team_id, offset=offset, limit=limit)
    return DatasetPage(data=[DatasetOut.of(d) for d in datasets], total=total, offset=offset, limit=limit)


@api.get("/{dataset_id}", response_model=DatasetOut)
def get_api(dataset_id: int, db: SessionDep, p: CurrentPrincipal) -> DatasetOut:
    p.require("read")
    return DatasetOut.of(service.get(db, team_id=p.team_id, dataset_id=dataset_id))


@api.get("/{dataset_id}/report", response_model=ReportOut)
def report_api(dataset_id: int, db: SessionDep, p: CurrentPrincipal) -> ReportOut:
    p.require("read")
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    return ReportOut(dataset_id=dataset.id, status=dataset.status.value, report=dataset.report)


@api.get("/{dataset_id}/rows", response_model=RowsOut)
def rows_api(request: Request, dataset_id: int, db: SessionDep, p: CurrentPrincipal,
             offset: Annotated[int, Query(ge=0)] = 0,
             limit: Annotated[int, Query(ge=1, le=service.MAX_ROWS)] = 20,
             q: Annotated[str, Query(max_length=200, description="search text (any case)")] = "",
             split: Literal["train", "eval"] = "train") -> RowsOut:
    """Normalised examples ({"messages": [...]}) of a valid dataset, by position or search."""
    p.require("read")
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    rows, more = service.rows(request.app.state.store, dataset, split=split, offset=offset,
                              limit=limit, query=q.strip())
    return RowsOut(dataset_id=dataset.id, split=split, offset=offset, limit=limit, query=q.strip(),
                   rows=rows, has_more=more)


@api.post("/{dataset_id}/mapping", response_model=DatasetOut)
def mapping_api(dataset_id: int, body: MappingIn, db: SessionDep, p: CurrentPrincipal) -> DatasetOut:
    """Choose the CSV/TSV columns of an invalid table and check it again."""
    p.require("write")
    mapping = ColumnMapping(prompt=body.prompt, completion=body.completion, system=body.system or None)
    return DatasetOut.of(service.set_mapping(db, team_id=p.team_id, dataset_id=dataset_id,
                                             mapping=mapping))
