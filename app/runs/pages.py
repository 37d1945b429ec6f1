"""Run pages: the guided new fine-tune, the runs list, one run live, cancel and retry.

Whole pages first; htmx swaps the wizard (`runs/_wizard.html`) when a choice changes and the
run's status region (`runs/_status.html`), which asks for itself again every 2 s until the run
ends. The curves poll the JSON metrics API with an id cursor (static/js/charts.js).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.compare import repository as reads
from app.costs import service as costs
from app.deps import CurrentUser, Principal, SessionDep, SettingsDep
from app.errors import InvalidInput, StudioError
from app.evaluations.routes import section_context
from app.inference import client as inference
from app.inference import targets
from app.home import glossary
from app.runs import configure, gguf, merged, service, views
from app.datasets import repository as datasets_repo
from app.datasets import tokens
from app.runs import repository as repo
from app.models import BaseModel, Dataset, Run, RunStatus
from app.models_registry import repository as models_repo
from app.sweeps import service as sweeps
from app.web import is_htmx, redirect, render
from app.streaming import ClosingStreamingResponse
from datacheck import GOAL_LABELS, Goal, guidance_for
from datacheck.types import PREFERENCE_FORMATS

pages = APIRouter(tags=["runs"], include_in_schema=False)
PAGE_SIZE = 25
LOG_TAIL_BYTES = 6 * 1024
GOAL_CHOICES = [(g.value, label) for g, label in {
    Goal.SUPPORT_ANSWERS: "Support answers", Goal.BRAND_VOICE: "Brand voice", Goal.CLASSIFICATION: "Classification",
    Goal.EXTRACTION: "Extraction", Goal.CODE: "Code", Goal.OTHER: "Something else"}.items()]


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


# -- the guided new fine-tune ---------------------------------------------------------------

def _examples(dataset: Dataset) -> int:
    counts = (dataset.report or {}).get("counts", {})
    return int(counts.get("train_examples") or dataset.num_examples or 0)


def _model_choice(model: BaseModel, dataset: Dataset | None, device: configure.Device, preset: str) -> dict:
    choice: dict[str, Any] = {"model": model, "fits": None, "total_gb": None}
    if dataset is not None:
        try:
            est = configure.plan(dataset=dataset, model=model, device=device, preset=preset).estimate
            choice.update(fits=est["memory"]["fits"], total_gb=est["memory"]["total_gb"])
        except StudioError:
            pass
    return choice


def _wizard(request: Request, db: Session, p: Principal, form: dict[str, str], error: str | None = None) -> dict:
    datasets = reads.trainable_datasets(db, team_id=p.team_id)
    dataset = next((d for d in datasets if d.id == _int(form.get("dataset_id"))), datasets[0] if datasets else None)
    goals = {g.value for g in Goal}
    goal = form.get("goal") if form.get("goal") in goals else (
        dataset.goal if dataset is not None and dataset.goal in goals else Goal.OTHER.value)
    preset = form.get("preset") if form.get("preset") in configure.PRESETS else "auto"
    device = service.training_device(db)
    choices = [_model_choice(m, dataset, device, preset) for m in models_repo.visible(db, p.team_id)]
    fitting = [c for c in choices if c["fits"] is not False]
    model_choice = next((c for c in choices if c["model"].id == _int(form.get("base_model_id"))),
                        (fitting or choices or [None])[0])
    model = model_choice["model"] if model_choice else None
    overrides = views.overrides_from(form)
    pairs = dataset is not None and dataset.format in PREFERENCE_FORMATS
    if pairs and form.get("objective") in ("dpo", "orpo"):
        overrides.setdefault("objective", form["objective"])  # the plain-words choice; the advanced field wins
    plan, settings_error = None, None
    calibration = service.calibration(db, team_id=p.team_id, device_kind=device.kind)
    if dataset is not None and model is not None:
        try:
            plan = configure.plan(dataset=dataset, model=model, device=device, preset=preset, overrides=overrides,
                                  calibration=calibration)
        except StudioError as exc:
            settings_error = exc.message
            plan = configure.plan(dataset=dataset, model=model, device=device, preset=preset,
                                  calibration=calibration)
    share = views.trainable_share(plan.estimate, model.parameter_count) if plan and model else None
    estimate_cost = costs.estimate_cost(plan.estimate, costs.prices(db, p.team_id)) if plan else None
    config = plan.config.model_dump() if plan else {}
    token_preview = tokens.preview(dataset, model.id, plan.config.max_length) if plan else None
    nothing_trained = tokens.nothing_trained(dataset, model.id, plan.config.max_length) if plan else None
    return {
        "form": form, "error": error, "datasets": datasets, "dataset": dataset, "goal": goal,
        "goal_choices": GOAL_CHOICES, "goal_label": GOAL_LABELS[Goal(goal)],
        "guidance": guidance_for(goal, _examples(dataset), pairs=pairs) if dataset is not None else None,
        "pairs": pairs, "objective": config.get("objective", "sft"),
        "models": choices, "model": model, "preset": preset, "plan": plan, "config": config,
        "settings_error": settings_error, "device": device, "views": views,
        "method_sentence": views.method_sentence(config["method"], share) if plan else "",
        "plain_choices": glossary.plain_choices(config, _examples(dataset)) if plan else [],
        "memory_sentence": glossary.memory_sentence(plan.estimate, views.METHOD_LABELS) if plan else "",
        "glossary": glossary,
        "fields": views.setting_fields(config, {k[3:]: v for k, v in form.items() if k.startswith("hp_")}),
        "advanced_open": bool(overrides) or settings_error is not None or form.get("advanced") == "open",
        "can_write": "write" in p.scopes, "token_preview": token_preview, "nothing_trained": nothing_trained,
        "estimate_cost": estimate_cost,
    }


def _form(items) -> dict[str, str]:  # noqa: ANN001
    return {k: v for k, v in items if isinstance(v, str)}


@pages.get("/runs/new")
def new_run(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    ctx = _wizard(request, db, p, _form(request.query_params.multi_items()))
    return render(request, "runs/_wizard.html" if is_htmx(request) else "runs/new.html", ctx)


@pages.get("/runs/help/fine-tune-or-retrieval")
def retrieval_help(request: Request, p: CurrentUser) -> Response:
    return render(request, "runs/retrieval.html")


@pages.post("/runs")
async def create_run(request: Request, db: SessionDep, p: CurrentUser, settings: SettingsDep) -> Response:
    p.require("write")
    form = _form((await request.form()).multi_items())
    form.pop("csrf_token", None)
    overrides = views.overrides_from(form)
    if form.get("objective") in ("dpo", "orpo"):  # the plain-words choice (offered for pair datasets only)
        overrides.setdefault("objective", form["objective"])
    sub = service.Submission(team_id=p.team_id, user_id=p.user_id, dataset_id=_int(form.get("dataset_id")) or 0,
                             base_model_id=_int(form.get("base_model_id")) or 0,
                             preset=form.get("preset") or "auto", hyperparameters=overrides,
                             name=(form.get("name") or "")[:200])
    try:
        run, _ = service.submit(db, sub=sub, settings=settings)
    except StudioError as exc:
        db.rollback()
        return render(request, "runs/new.html", _wizard(request, db, p, form, error=exc.message),
                      status_code=exc.status_code)
    if form.get("goal") in {g.value for g in Goal}:
        run.goal = form["goal"]
    return redirect(request, f"/runs/{run.id}", flash=("success", f"“{run.name}” is queued."))


# -- the runs list --------------------------------------------------------------------------

@pages.get("/runs")
def runs_list(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    q = request.query_params
    filters = {"status": q.get("status") if q.get("status") in views.STATUS_LABELS else None,
               "dataset_id": _int(q.get("dataset_id")), "base_model_id": _int(q.get("base_model_id")),
               "method": q.get("method") if q.get("method") in views.METHOD_LABELS else None,
               "author_id": _int(q.get("author_id"))}
    before = _int(q.get("before"))
    runs = repo.list_runs(db, team_id=p.team_id, before_id=before, limit=PAGE_SIZE + 1, **filters)
    page, more = runs[:PAGE_SIZE], len(runs) > PAGE_SIZE
    query = "&".join(f"{k}={v}" for k, v in filters.items() if v is not None)
    return render(request, "runs/list.html", {
        "runs": page, "filters": filters, "filtered": any(v is not None for v in filters.values()),
        "next_url": f"/runs?{query}&before={page[-1].id}".replace("?&", "?") if more else None,
        "first_url": f"/runs?{query}" if before else None, "views": views,
        "dataset_names": reads.dataset_names(db, team_id=p.team_id, ids={j.dataset_id for j in page}),
        "model_names": reads.model_names(db, team_id=p.team_id, ids={j.base_model_id for j in page}),
        "authors": reads.member_names(db, team_id=p.team_id),
        "all_datasets": reads.datasets_in_runs(db, team_id=p.team_id),
        "all_models": models_repo.visible(db, p.team_id, ready_only=False),
        "can_write": "write" in p.scopes})


@pages.get("/runs/recent")
def recent_runs(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    """The home page's recent runs (loaded by htmx)."""
    return render(request, "runs/_recent.html", {"runs": reads.recent_runs(db, team_id=p.team_id), "views": views})


# -- one run --------------------------------------------------------------------------------

def _log_tail(request: Request, artifacts: list) -> str:
    logs = [a for a in artifacts if a.kind == "log"]
    tail = request.app.state.store.tail(logs[0].path, LOG_TAIL_BYTES) if logs else b""
    return tail.decode("utf-8", errors="replace")


def _run(request: Request, db: Session, p: Principal, run: Run) -> dict:
    artifacts = repo.artifacts(db, team_id=p.team_id, run_id=run.id)
    model = models_repo.get_visible(db, team_id=p.team_id, model_id=run.base_model_id)
    exported = next((a for a in artifacts if a.kind == "gguf"), None)
    gguf_files = _gguf_files(run, gguf.state(db, request.app.state.store, run)) if exported else []
    return {
        "run": run, "views": views, "progress": views.progress(run), "model": model,
        "dataset": datasets_repo.get(db, team_id=p.team_id, dataset_id=run.dataset_id),
        "events": repo.events(db, run.id, exclude_kinds=(service.METRICS_EVENT,))[-50:],
        "checkpoints": repo.checkpoints(db, run.id),
        "downloads": sorted((a for a in artifacts if a.kind in views.ARTIFACT_LABELS),
                            key=lambda a: list(views.ARTIFACT_LABELS).index(a.kind)),
        "mergeable": any(a.kind == "adapter" for a in artifacts) and not any(a.kind == "merged" for a in artifacts),
        "gguf_ready": exported is not None, "gguf_files": gguf_files,
        "exportable": run.status == RunStatus.succeeded and any(a.kind in gguf.SOURCE_KINDS for a in artifacts),
        "log_tail": _log_tail(request, artifacts), "active": not run.status.is_final,
        "elapsed": views.duration(views.elapsed(run)), "can_write": "write" in p.scopes,
        "failure_title": views.FAILURE_TITLES.get(run.error_kind or "error", views.FAILURE_TITLES["error"]),
        "place": service.queue_place(db, run),
    }


def _run_page(request: Request, db: Session, p: Principal, run: Run, **extra: Any) -> Response:
    last_id = reads.last_metric_id(db, run.id)
    series = views.series_by_name(reads.curve_rows(db, [run.id], views.CURVE_NAMES, up_to_id=last_id))
    ctx = _run(request, db, p, run)
    ctx.update(charts=views.run_charts(series.get(run.id, {})), last_metric_id=last_id,
               share=views.trainable_share(run.estimate, ctx["model"].parameter_count if ctx["model"] else None))
    table = costs.prices(db, p.team_id)
    ctx.update(run_cost=costs.run_cost(run, table, costs.workers_by_name(db)),
               run_cost_estimate=costs.estimate_cost(run.estimate or {}, table),
               roi_result=costs.roi_for_run(db, run))
    ctx.update(section_context(db, team_id=p.team_id, run=run, can_write=ctx["can_write"],
                               settings=request.app.state.settings))
    return render(request, "runs/run.html", {**ctx, **extra})


@pages.get("/runs/{run_id}")
def run_page(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    return _run_page(request, db, p, service.get(db, team_id=p.team_id, run_id=run_id))


@pages.get("/runs/{run_id}/status")
def run_status(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    if not is_htmx(request):
        return redirect(request, f"/runs/{run.id}")
    return render(request, "runs/_status.html", {**_run(request, db, p, run), "oob": True})


@pages.post("/runs/{run_id}/cancel")
def cancel_run(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    run = service.cancel(db, service.get(db, team_id=p.team_id, run_id=run_id))
    sweeps.run_ended(db, run)  # a sweep's next waiting run takes the freed slot
    said = "Cancelled." if run.status.is_final else "Stopping: the run ends at its next step."
    return redirect(request, f"/runs/{run.id}", flash=("success", said))


# exact: base vs fine-tuned must be the trainer's own greedy answers, so the inference process
# answers them with transformers even where it serves other requests with llama.cpp.
TRY_PARAMS = {"max_tokens": 200, "temperature": 0.0, "top_p": 1.0, "exact": True}


@pages.post("/runs/{run_id}/try")
async def try_run(request: Request, run_id: int, db: SessionDep, p: CurrentUser, settings: SettingsDep) -> Response:
    """The same prompt answered by the base model and the fine-tuned one, side by side (greedy,
    through the inference process, with the chat template both were trained and served with)."""
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    prompt = str((await request.form()).get("prompt", "")).strip()
    if not prompt:
        raise InvalidInput("Type a question to ask both models.", param="prompt")
    if len(prompt) > 4000:
        raise InvalidInput("Keep the question under 4,000 characters.", param="prompt")
    base, tuned = targets.run_target(db, request.app.state.store, team_id=p.team_id, run=run)
    messages = {"messages": [{"role": "user", "content": prompt}], **TRY_PARAMS}
    answers = {"base": await run_in_threadpool(inference.generate, settings, base, messages),
               "tuned": await run_in_threadpool(inference.generate, settings, tuned, messages)}
    if is_htmx(request):
        return render(request, "runs/_try.html", {"run": run, "prompt": prompt, "answers": answers,
                                                  "model": models_repo.of_run(db, run)})
    return _run_page(request, db, p, run, prompt=prompt, answers=answers)


@pages.post("/runs/{run_id}/try/stream")
async def try_run_stream(request: Request, run_id: int, db: SessionDep, p: CurrentUser,
                         settings: SettingsDep) -> Response:
    """Try it, streamed: NDJSON lines {"who": "base"|"tuned", and "note" (waiting, sharing the
    cores with training), "delta" (text as it comes), "done" or "error"}. Both answers are asked
    at once, so the inference process answers them in one batch. Closing the stream (the page's
    Stop button) stops both answers at their next token."""
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    prompt = str((await request.form()).get("prompt", "")).strip()
    if not prompt:
        raise InvalidInput("Type a question to ask both models.", param="prompt")
    if len(prompt) > 4000:
        raise InvalidInput("Keep the question under 4,000 characters.", param="prompt")
    base, tuned = targets.run_target(db, request.app.state.store, team_id=p.team_id, run=run)
    db.commit()  # the answers can take a while: hold no transaction meanwhile
    messages = {"messages": [{"role": "user", "content": prompt}], **TRY_PARAMS}
    streams: dict[str, Iterator[dict[str, Any]]] = {}
    try:
        for who, target in (("base", base), ("tuned", tuned)):
            streams[who] = await run_in_threadpool(inference.open_stream, settings, target, messages)
    except BaseException:
        for items in streams.values():
            items.close()  # the one opened already
        raise
    return ClosingStreamingResponse(inference.merged_lines(streams), media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@pages.post("/runs/{run_id}/retry")
def retry_run(request: Request, run_id: int, db: SessionDep, p: CurrentUser, settings: SettingsDep) -> Response:
    p.require("write")
    run = service.retry(db, service.get(db, team_id=p.team_id, run_id=run_id), settings=settings)
    return redirect(request, f"/runs/{run.id}", flash=("success", "Queued again."))


@pages.get("/runs/{run_id}/merged")
def merged_model(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    """The merged model's state: a button that asks for its build, its progress while a worker
    builds it (polled, htmx), then a download link. Looking never starts a build, and the web
    process never builds or loads the model."""
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    store = request.app.state.store
    current = merged.state(db, store, run)
    template = "runs/_merged.html" if is_htmx(request) else "runs/merged.html"
    return render(request, template, {"run": run, "merged": current, "views": views,
                                      "wait": _merge_wait(db, store, run, current)})


def _merge_wait(db: Session, store, run: Run, current, read_status=merged.read_status) -> service.QueueWait | None:  # noqa: ANN001
    """A build (merged model or GGUF files) not yet taken by a worker waits in the run's queue
    behind the training ahead of it."""
    status = read_status(store, run) if current.status == "preparing" else None
    if not status or status.get("state") != "queued":
        return None
    return service.queue_wait(db, run.queue, sent=datetime.fromtimestamp(status["updated_at"], tz=UTC))


@pages.get("/runs/{run_id}/gguf")
def gguf_files(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    """The GGUF files' state: a button that asks for the export, its progress while a worker
    writes them (polled, htmx), then the files and how to run them with llama.cpp and Ollama."""
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    store = request.app.state.store
    current = gguf.state(db, store, run)
    template = "runs/_gguf.html" if is_htmx(request) else "runs/gguf.html"
    return render(request, template, {"run": run, "gguf": current, "gguf_files": _gguf_files(run, current),
                                      "wait": _merge_wait(db, store, run, current, gguf.read_status)})


@pages.post("/runs/{run_id}/gguf")
def prepare_gguf_files(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    """Queues the GGUF export (once: an export under way or done is left as it is)."""
    p.require("write")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    try:
        current = gguf.request(db, request.app.state.store, run)
    except StudioError as exc:
        return redirect(request, f"/runs/{run.id}/gguf", flash=("error", exc.message))
    said = ("The GGUF files are ready." if current.status == "ready"
            else "Asked for: the next free worker of this run's queue writes them.")
    return redirect(request, f"/runs/{run.id}/gguf", flash=("success", said))


def _gguf_files(run: Run, current: gguf.GGUFState) -> list[dict]:
    return [{"variant": v, "name": gguf.file_name(run, v), "size_bytes": current.files[gguf.file_name(run, v)],
             "label": gguf.FILE_LABELS[v]} for v in ("q8_0", "f16", "q4_0", "modelfile")
            if gguf.file_name(run, v) in current.files]


@pages.post("/runs/{run_id}/merged")
def prepare_merged_model(request: Request, run_id: int, db: SessionDep, p: CurrentUser) -> Response:
    """Queues the merged model's build (once: a build under way or done is left as it is)."""
    p.require("write")
    run = service.get(db, team_id=p.team_id, run_id=run_id)
    try:
        current = merged.request(db, request.app.state.store, run)
    except StudioError as exc:
        return redirect(request, f"/runs/{run.id}/merged", flash=("error", exc.message))
    said = ("The merged model is ready." if current.status == "ready"
            else "Asked for: the next free worker of this run's queue builds it.")
    return redirect(request, f"/runs/{run.id}/merged", flash=("success", said))
