"""The native runs API: submit, list, follow, cancel, retry, download. The run pages are in
app/runs/pages.py: together they would pass ~400 lines."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.costs import service as costs
from app.deps import CurrentPrincipal, SessionDep, SettingsDep
from app.downloads import store_response
from app.errors import NotFound
from app.runs import configure, gguf, merged, service
from app.datasets import repository as datasets_repo
from app.runs import repository as repo
from app.runs.schemas import (
    ArtifactOut,
    CheckpointOut,
    EstimateOut,
    EventOut,
    RunCreate,
    RunOut,
    RunPage,
    MetricPoints,
    QueueAhead,
)
from app.models import RunStatus
from app.models_registry import repository as models_repo
from app.sweeps import service as sweeps

api = APIRouter(prefix="/api/v1", tags=["runs"])
LOG_TAIL_BYTES = 64 * 1024
CHECKING_FILES = ("Checking your files (validation, then the near-duplicate check that keeps evaluation examples "
                  "apart from training ones)... The run is queued as soon as they pass.")


def run_out(db, run, places=None) -> RunOut:  # noqa: ANN001
    """A run as the API shows it; a queued one with where it stands (app/runs/queue_position.py).
    `places`: those of a whole page, read at once (service.queue_places)."""
    out = RunOut.model_validate(run)
    place = (places if places is not None else service.queue_places(db, [run])).get(run.id)
    if run.status == RunStatus.validating_files:
        out.queue_status = CHECKING_FILES
    if place is not None:
        out.queue_position, out.queue_status = place.standing.position, place.sentence
        out.queue_ahead, out.expected_start_at = QueueAhead(**place.ahead()), place.expected_start_at
    return out


def _submission(body: RunCreate, p, idempotency_key: str | None) -> service.Submission:  # noqa: ANN001
    return service.Submission(
        team_id=p.team_id, user_id=p.user_id, dataset_id=body.dataset_id, base_model_id=body.base_model_id,
        preset=body.preset, hyperparameters={**body.hyperparameters, **(body.method.overrides() if body.method else {})},
        name=body.name, priority=body.priority,
        idempotency_key=idempotency_key, suffix=body.suffix,
        time_budget_s=body.time_budget_minutes * 60 if body.time_budget_minutes else None)


@api.post("/runs", response_model=RunOut, status_code=201,
          responses={200: {"model": RunOut, "description": "The run first created with this Idempotency-Key."}})
def create_run(body: RunCreate, db: SessionDep, p: CurrentPrincipal, settings: SettingsDep,
               idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> Response:
    p.require("write")
    run, created = service.submit(db, sub=_submission(body, p, idempotency_key), settings=settings)
    db.flush()
    return JSONResponse(run_out(db, run).model_dump(mode="json"), status_code=201 if created else 200)


@api.post("/runs/estimate", response_model=EstimateOut)
def estimate_run(body: RunCreate, db: SessionDep, p: CurrentPrincipal) -> EstimateOut:
    """The configuration the run would get, why, and whether it fits: nothing is queued."""
    p.require("read")
    dataset = datasets_repo.get(db, team_id=p.team_id, dataset_id=body.dataset_id)
    model = models_repo.get_visible(db, team_id=p.team_id, model_id=body.base_model_id)
    if dataset is None or model is None:
        raise NotFound("No such dataset or base model.")
    device = service.training_device(db)
    plan = configure.plan(dataset=dataset, model=model, device=device, preset=body.preset,
                          overrides={**body.hyperparameters, **(body.method.overrides() if body.method else {})},
                          time_budget_s=body.time_budget_minutes * 60 if body.time_budget_minutes else None)
    estimate = {**plan.estimate, "cost": costs.estimate_cost(plan.estimate, costs.prices(db, p.team_id))}
    return EstimateOut(config=plan.config.model_dump(), reasons=plan.reasons, estimate=estimate,
                       warnings=plan.warnings)


@api.get("/runs", response_model=RunPage)
def list_runs(db: SessionDep, p: CurrentPrincipal, status: RunStatus | None = None, dataset_id: int | None = None,
              base_model_id: int | None = None, method: str | None = None, author_id: int | None = None,
              before: Annotated[int | None, Query(description="cursor: id of the last run seen")] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20) -> RunPage:
    p.require("read")
    runs = repo.list_runs(db, team_id=p.team_id, status=status, dataset_id=dataset_id, base_model_id=base_model_id,
                          method=method, author_id=author_id, before_id=before, limit=limit + 1)
    page = runs[:limit]
    places = service.queue_places(db, page)
    return RunPage(data=[run_out(db, j, places) for j in page],
                   next_cursor=page[-1].id if len(runs) > limit else None)


@api.get("/runs/{run_id}", response_model=RunOut)
def get_run(run_id: int, db: SessionDep, p: CurrentPrincipal) -> RunOut:
    p.require("read")
    return run_out(db, service.get(db, team_id=p.team_id, run_id=run_id))


@api.post("/runs/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: int, db: SessionDep, p: CurrentPrincipal) -> RunOut:
    p.require("write")
    run = service.cancel(db, service.get(db, team_id=p.team_id, run_id=run_id))
    sweeps.run_ended(db, run)  # a sweep's next waiting run takes the freed slot
    return run_out(db, run)


@api.post("/runs/{run_id}/retry", response_model=RunOut)
def retry_run(run_id: int, db: SessionDep, p: CurrentPrincipal, settings: SettingsDep) -> RunOut:
    p.require("write")
    run = service.retry(db, service.get(db, team_id=p.team_id, run_id=run_id), settings=settings)
    return run_out(db, run)


@api.get("/runs/{run_id}/events", response_model=list[EventOut])
def run_events(run_id: int, db: SessionDep, p: CurrentPrincipal,
               after: Annotated[int, Query(ge=0, description="only events with a larger id")] = 0) -> list[EventOut]:
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    return [EventOut.model_validate(e) for e in repo.events(db, run.id, after_id=after)]


@api.get("/runs/{run_id}/metrics", response_model=MetricPoints)
def run_metrics(run_id: int, db: SessionDep, p: CurrentPrincipal,
                after: Annotated[int, Query(ge=0, description="only points with a larger id")] = 0,
                names: Annotated[list[str] | None, Query()] = None) -> MetricPoints:
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    points = repo.metrics(db, run.id, after_id=after, names=names)
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for m in points:
        series[m.name].append((m.step, m.value))
    return MetricPoints(last_id=points[-1].id if points else after, series=dict(series))


@api.get("/runs/{run_id}/checkpoints", response_model=list[CheckpointOut])
def run_checkpoints(run_id: int, db: SessionDep, p: CurrentPrincipal) -> list[CheckpointOut]:
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    return [CheckpointOut.model_validate(c) for c in repo.checkpoints(db, run.id)]


@api.get("/runs/{run_id}/log", response_class=PlainTextResponse)
def run_log(request: Request, run_id: int, db: SessionDep, p: CurrentPrincipal) -> PlainTextResponse:
    """The last 64 KiB of everything the run printed."""
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    logs = [a for a in repo.artifacts(db, team_id=p.team_id, run_id=run.id) if a.kind == "log"]
    tail = request.app.state.store.tail(logs[0].path, LOG_TAIL_BYTES) if logs else b""
    return PlainTextResponse(tail.decode("utf-8", errors="replace"))


@api.get("/runs/{run_id}/artifacts", response_model=list[ArtifactOut])
def run_artifacts(run_id: int, db: SessionDep, p: CurrentPrincipal) -> list[ArtifactOut]:
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    return [ArtifactOut.model_validate(a) for a in repo.artifacts(db, team_id=p.team_id, run_id=run.id)]


@api.get("/runs/{run_id}/artifacts/{artifact_id}/download")
def download_artifact(request: Request, run_id: int, artifact_id: int, db: SessionDep,
                      p: CurrentPrincipal) -> Response:
    p.require("read")
    artifact = repo.artifact(db, team_id=p.team_id, run_id=run_id, artifact_id=artifact_id)
    if artifact is None:
        raise NotFound("No such artifact.")
    name = {"model_card": "README.md", "log": "training.log"}.get(artifact.kind, f"run-{run_id}-{artifact.kind}")
    return store_response(request.app.state.store, artifact.path, name, artifact.content_type)


@api.get("/runs/{run_id}/merged")
def merged_model(request: Request, run_id: int, db: SessionDep, p: CurrentPrincipal) -> dict:
    """Whether the run's merged model is ready, being prepared (with its progress), failed or absent."""
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    return _merged_out(run, merged.state(db, request.app.state.store, run))


@api.post("/runs/{run_id}/merged", status_code=202)
def prepare_merged_model(request: Request, run_id: int, db: SessionDep, p: CurrentPrincipal) -> dict:
    """Queues the build of the run's merged model (base and adapter in one) unless it is built or
    being built; poll GET .../merged for its progress."""
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    return _merged_out(run, merged.request(db, request.app.state.store, run))


@api.get("/runs/{run_id}/merged/download")
def download_merged_model(request: Request, run_id: int, db: SessionDep, p: CurrentPrincipal) -> Response:
    """The merged model as a zip streamed from the store when it is built; otherwise its build is
    queued and the answer is 202 with its progress (and Retry-After): ask again."""
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    current = merged.request(db, request.app.state.store, run)
    if current.status != "ready":
        return JSONResponse(_merged_out(run, current), status_code=202, headers={"Retry-After": "5"})
    built = merged.artifact(db, run)  # its own path: merged copies recorded before on-demand builds count too
    return store_response(request.app.state.store, built.path, f"run-{run_id}-merged", "application/zip")


def _merged_out(run, current: merged.MergedState) -> dict:  # noqa: ANN001
    out = current.as_dict()
    out["download_url"] = f"/api/v1/runs/{run.id}/merged/download" if current.status == "ready" else None
    return out


@api.get("/runs/{run_id}/gguf")
def gguf_files(request: Request, run_id: int, db: SessionDep, p: CurrentPrincipal) -> dict:
    """Whether the run's GGUF files (f16, q8_0, q4_0 and an Ollama Modelfile) are ready, being
    written (with progress), failed or absent; when ready, each file's name, size and download URL."""
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    return _gguf_out(run, gguf.state(db, request.app.state.store, run))


@api.post("/runs/{run_id}/gguf", status_code=202)
def prepare_gguf_files(request: Request, run_id: int, db: SessionDep, p: CurrentPrincipal) -> dict:
    """Queues the GGUF export of the run unless it is done or under way; poll GET .../gguf."""
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    return _gguf_out(run, gguf.request(db, request.app.state.store, run))


@api.get("/runs/{run_id}/gguf/{variant}/download")
def download_gguf_file(request: Request, run_id: int, variant: str, db: SessionDep, p: CurrentPrincipal) -> Response:
    """One GGUF file (`f16`, `q8_0`, `q4_0`) or the Ollama Modelfile (`modelfile`), streamed from the
    store; while the export is not done it is queued and the answer is 202 with its progress."""
    p.require("read")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    name = gguf.file_name(run, variant)  # NotFound for anything else: no user text reaches a key
    current = gguf.request(db, request.app.state.store, run)
    if current.status != "ready":
        return JSONResponse(_gguf_out(run, current), status_code=202, headers={"Retry-After": "5"})
    built = gguf.artifact(db, run)
    media = "text/plain" if variant == "modelfile" else "application/octet-stream"
    return store_response(request.app.state.store, f"{built.path}/{name}", name, media)


def _gguf_out(run, current: gguf.GGUFState) -> dict:  # noqa: ANN001
    out = current.as_dict()
    out["files"] = [{"variant": v, "name": gguf.file_name(run, v), "size_bytes": current.files.get(gguf.file_name(run, v)),
                     "download_url": f"/api/v1/runs/{run.id}/gguf/{v}/download"}
                    for v in (*gguf.VARIANTS, "modelfile") if gguf.file_name(run, v) in current.files]
    return out
