"""`/v1/fine_tuning/jobs`: OpenAI fine-tuning jobs mapped onto the studio's runs.

create -> app.runs.service.submit (same checks, same queue); n_epochs, batch_size and
learning_rate_multiplier become overrides of the studio's auto preset, "auto" keeps its choice.
`devices` (a studio extension, in the hyperparameters or top-level through the SDK's extra_body)
asks for several GPUs; batch_size stays the effective batch over all of them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from app.api.openai import names
from app.api.openai import repository as repo
from app.api.openai.files import get_file
from app.api.openai.schemas import (
    CheckpointList,
    CheckpointMetrics,
    CheckpointOut,
    EventList,
    EventOut,
    HyperparametersOut,
    JobCreateIn,
    JobError,
    JobList,
    JobOut,
    MethodOut,
)
from app.deps import CurrentPrincipal, SessionDep, SettingsDep
from app.errors import InvalidInput
from app.runs import service
from app.models import DatasetStatus, Run, RunStatus, utcnow
from app.models_registry import repository as models_repo
from app.sweeps import service as sweeps
from datacheck.types import PREFERENCE_FORMATS
from planner.defaults import DEFAULT_SEED, MAX_DEVICES

router = APIRouter(prefix="/fine_tuning", tags=["openai: fine-tuning"])
STATUS = {RunStatus.validating_files: "validating_files", RunStatus.queued: "queued", RunStatus.running: "running",
          RunStatus.succeeded: "succeeded",
          RunStatus.failed: "failed", RunStatus.cancelled: "cancelled"}
LEVELS = {"warning": "warn", "error": "error"}
OPENAI_KEY = "openai"  # where the request's own values are kept in Run.estimate


def _epochs_done(run: Run) -> float:
    result = run.result or {}
    return float((result.get("metrics") or {}).get("epoch") or run.config.get("epochs") or 1)


def _trained_tokens(run: Run) -> int | None:
    if run.status != RunStatus.succeeded:
        return None
    per_epoch = ((run.result or {}).get("data_report") or {}).get("trained_tokens")
    return int(round(per_epoch * _epochs_done(run))) if per_epoch is not None else None


def _hyperparameters(run: Run) -> HyperparametersOut:
    asked = ((run.estimate or {}).get(OPENAI_KEY) or {}).get("hyperparameters") or {}
    epochs = run.config.get("epochs")
    return HyperparametersOut(
        n_epochs=int(epochs) if epochs and not run.config.get("max_steps") else "auto",
        batch_size=run.config.get("per_device_batch_size", 1) * run.config.get("grad_accum", 1)
        * run.config.get("devices", 1),
        learning_rate_multiplier=asked.get("learning_rate_multiplier") or "auto",
        devices=run.config.get("devices", 1))


def job_out(db: Session, run: Run, places: dict | None = None) -> JobOut:
    """`places`: the queued runs' standings of a whole page, read at once (service.queue_places)."""
    base = models_repo.get_visible(db, team_id=run.team_id, model_id=run.base_model_id)
    slug = base.slug if base is not None else str(run.base_model_id)
    asked = (run.estimate or {}).get(OPENAI_KEY) or {}
    error = None
    file_error = (run.result or {}).get("file_error")
    if run.status == RunStatus.failed and file_error:  # a file that did not pass its check: its own error
        error = JobError(code=file_error["code"], message=run.error_message or file_error["message"],
                         param=file_error.get("param"), line=file_error.get("line"))
    elif run.status == RunStatus.failed:
        error = JobError(code=run.error_kind or "error", message=run.error_message or "The run failed.")
    finish = None
    if run.status == RunStatus.running and run.eta_s:
        finish = names.unix(utcnow()) + int(run.eta_s)
    elif run.status == RunStatus.queued:  # its expected start plus its estimated duration, when both are known
        place = (places if places is not None else service.queue_places(db, [run])).get(run.id)
        finish = names.unix(place.expected_finish_at) if place is not None else None
    hp = _hyperparameters(run)
    return JobOut(
        id=names.encode("ftjob", run.id), created_at=names.unix(run.created_at), finished_at=names.unix(run.finished_at),
        estimated_finish=finish, error=error, hyperparameters=hp, model=slug, status=STATUS[run.status],
        method=_method_out(run, hp),
        fine_tuned_model=names.fine_tuned_name(run, slug) if run.status == RunStatus.succeeded else None,
        organization_id=f"team-{run.team_id}", result_files=[], seed=run.seed if run.seed is not None else DEFAULT_SEED,
        trained_tokens=_trained_tokens(run), training_file=names.encode("file", run.dataset_id),
        validation_file=asked.get("validation_file"), metadata=asked.get("metadata"), suffix=run.suffix)


def _method_out(run: Run, hp: HyperparametersOut) -> MethodOut:
    if run.config.get("objective") == "dpo":
        return MethodOut(type="dpo", dpo={"hyperparameters": {**hp.model_dump(), "beta": run.config.get("beta")}})
    return MethodOut(supervised={"hyperparameters": hp.model_dump()})


def _requested(body: JobCreateIn) -> dict[str, Any]:
    """The hyperparameters asked for (method.supervised or method.dpo wins over the top-level ones,
    which win over the top-level `devices` extension), 'auto' dropped; method dpo adds
    objective 'dpo'."""
    values: dict[str, Any] = {} if body.devices is None else {"devices": body.devices}
    values.update(body.hyperparameters.model_dump(exclude_none=True) if body.hyperparameters else {})
    method = body.method
    chosen = None
    if method is not None:
        chosen = method.dpo if method.type == "dpo" else method.supervised
        if method.type == "dpo":
            values["objective"] = "dpo"
        elif method.dpo is not None:
            raise InvalidInput('method.dpo is given but method.type is "supervised": set type "dpo".',
                               param="method.type")
    if chosen and chosen.hyperparameters:
        values.update(chosen.hyperparameters.model_dump(exclude_none=True))
    return {k: v for k, v in values.items() if v != "auto"}


def _overrides(asked: dict[str, Any], seed: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {} if seed is None else {"seed": seed}
    out["objective"] = asked.get("objective", "sft")  # a preference file needs method dpo, as at OpenAI
    if "beta" in asked:
        if not 0 < asked["beta"] <= 10:
            raise InvalidInput("beta must be above 0 and at most 10.", param="method.dpo.hyperparameters.beta")
        out["beta"] = asked["beta"]
    if "n_epochs" in asked:
        if not 1 <= asked["n_epochs"] <= 50:
            raise InvalidInput("n_epochs must be between 1 and 50.", param="hyperparameters.n_epochs")
        out.update(epochs=asked["n_epochs"], max_steps=None)
    if "batch_size" in asked:
        if not 1 <= asked["batch_size"] <= 256:
            raise InvalidInput("batch_size must be between 1 and 256.", param="hyperparameters.batch_size")
        out.update(per_device_batch_size=asked["batch_size"], grad_accum=1)
    if "learning_rate_multiplier" in asked:
        factor = asked["learning_rate_multiplier"]
        if not 0 < factor <= 10:
            raise InvalidInput("learning_rate_multiplier must be above 0 and at most 10.",
                               param="hyperparameters.learning_rate_multiplier")
    if "devices" in asked:
        if not 1 <= asked["devices"] <= MAX_DEVICES:
            raise InvalidInput(f"devices must be between 1 and {MAX_DEVICES}: the GPUs of one worker host "
                               "that the job trains on.", param="hyperparameters.devices")
        out["devices"] = asked["devices"]
    return out


def _file(db: Session, team_id: int, file_id: str, param: str):  # noqa: ANN202
    """The team's file: processed, or still being checked (the job then waits in validating_files,
    as at OpenAI); a file that failed its check is refused with its own first error."""
    row = get_file(db, team_id, file_id, param=param)
    if row.status == DatasetStatus.invalid:
        error = service.file_error(row)
        where = f" (line {error['line']})" if error["line"] else ""
        raise InvalidInput(f"The file {file_id} did not pass validation{where}: {error['message']}", param=param,
                           details={"file_error": error})
    return row


@router.post("/jobs", response_model=JobOut)
def create_job(body: JobCreateIn, db: SessionDep, p: CurrentPrincipal,
               settings: SettingsDep) -> JobOut:
    """Files still being validated are accepted: the job is `validating_files` until they pass
    (then `queued`), or `failed` with the file's error."""
    p.require("write")
    base = names.base_model(db, team_id=p.team_id, name=body.model)
    train = _file(db, p.team_id, body.training_file, "training_file")
    valid = _file(db, p.team_id, body.validation_file, "validation_file") if body.validation_file else None
    if (valid is not None and train.format is not None and valid.format is not None
            and (valid.format in PREFERENCE_FORMATS) != (train.format in PREFERENCE_FORMATS)):
        raise InvalidInput("The validation file must be of the same kind as the training file: both preference "
                           "pairs (for dpo) or both conversations.", param="validation_file")
    asked = _requested(body)
    sub = service.Submission(team_id=p.team_id, user_id=p.user_id, dataset_id=train.id, base_model_id=base.id,
                             hyperparameters=_overrides(asked, body.seed), suffix=body.suffix,
                             eval_dataset_id=valid.id if valid is not None else None,
                             learning_rate_multiplier=asked.get("learning_rate_multiplier"))
    run, _ = service.submit(db, sub=sub, settings=settings)
    run.estimate = {**(run.estimate or {}), OPENAI_KEY: {
        "hyperparameters": asked, "validation_file": body.validation_file, "metadata": body.metadata}}
    db.flush()
    return job_out(db, run)


@router.get("/jobs", response_model=JobList)
def list_jobs(db: SessionDep, p: CurrentPrincipal,
              after: Annotated[str | None, Query(max_length=64, description="a job id: the page after it")] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20) -> JobList:
    p.require("read")
    runs = repo.runs_after(db, team_id=p.team_id, after_id=names.decode_cursor("ftjob", after), limit=limit + 1)
    places = service.queue_places(db, runs[:limit])
    return JobList(data=[job_out(db, j, places) for j in runs[:limit]], has_more=len(runs) > limit)


def _run(db: Session, team_id: int, run_id: str) -> Run:
    return service.get(db, team_id=team_id, run_id=names.decode("ftjob", run_id, what="fine-tuning job"))


@router.get("/jobs/{fine_tuning_job_id}", response_model=JobOut)
def retrieve_job(fine_tuning_job_id: str, db: SessionDep, p: CurrentPrincipal) -> JobOut:
    p.require("read")
    return job_out(db, _run(db, p.team_id, fine_tuning_job_id))


@router.post("/jobs/{fine_tuning_job_id}/cancel", response_model=JobOut)
def cancel_job(fine_tuning_job_id: str, db: SessionDep, p: CurrentPrincipal) -> JobOut:
    p.require("write")
    run = service.cancel(db, _run(db, p.team_id, fine_tuning_job_id))
    sweeps.run_ended(db, run)  # a sweep's next waiting run takes the freed slot
    return job_out(db, run)


@router.get("/jobs/{fine_tuning_job_id}/events", response_model=EventList)
def list_events(fine_tuning_job_id: str, db: SessionDep, p: CurrentPrincipal,
                after: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> EventList:
    """Newest first, as OpenAI lists them; `after` is the last event of the previous page."""
    p.require("read")
    run = _run(db, p.team_id, fine_tuning_job_id)
    rows = repo.events_newest_first(db, run_id=run.id, after_id=names.decode_cursor("ftevent", after),
                                    limit=limit + 1)
    data = [EventOut(id=names.encode("ftevent", e.id), created_at=names.unix(e.created_at), message=e.message,
                     level=LEVELS.get(e.level, "info"), type="metrics" if e.kind == "metrics" else "message",
                     data={"kind": e.kind, **(e.data or {})}) for e in rows[:limit]]
    return EventList(data=data, has_more=len(rows) > limit)


@router.get("/jobs/{fine_tuning_job_id}/checkpoints", response_model=CheckpointList)
def list_checkpoints(fine_tuning_job_id: str, db: SessionDep, p: CurrentPrincipal,
                     after: Annotated[str | None, Query(max_length=64)] = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 10) -> CheckpointList:
    p.require("read")
    run = _run(db, p.team_id, fine_tuning_job_id)
    base = models_repo.get_visible(db, team_id=p.team_id, model_id=run.base_model_id)
    slug = base.slug if base is not None else str(run.base_model_id)
    rows = repo.checkpoints_newest_first(db, run_id=run.id, after_id=names.decode_cursor("ftckpt", after),
                                         limit=limit + 1)
    data = []
    for c in rows[:limit]:
        m = c.metrics or {}
        m = m.get("metrics") if isinstance(m.get("metrics"), dict) else m  # the worker keeps them in its metadata
        data.append(CheckpointOut(
            id=names.encode("ftckpt", c.id), created_at=names.unix(c.created_at), step_number=c.step,
            fine_tuned_model_checkpoint=names.checkpoint_name(run, slug, c.step),
            fine_tuning_job_id=names.encode("ftjob", run.id),
            metrics=CheckpointMetrics(step=c.step, train_loss=m.get("loss", m.get("train_loss")),
                                      valid_loss=m.get("eval_loss"))))
    return CheckpointList(data=data, has_more=len(rows) > limit, first_id=data[0].id if data else None,
                          last_id=data[-1].id if data else None)
