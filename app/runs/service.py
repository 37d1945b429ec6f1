"""Submitting, cancelling and retrying runs, and every state transition with its event.
Services flush; the request edge or the task wrapper commits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app import queue
from app.config import Settings
from app.errors import Conflict, InvalidInput, NotFound, RateLimited
from app.datasets import repository as datasets_repo
from app.runs import configure
from app.runs import queue_position as qp
from app.runs import repository as repo
from app.models import BaseModel, Dataset, DatasetStatus, Run, RunEvent, RunStatus, ModelStatus, utcnow
from app.models_registry import repository as models_repo
from app.workers import repository as workers_repo
from planner import oom
from planner.config import TrainingConfig

TRAIN_TASK = "studio.train"


def add_event(session: Session, run: Run, kind: str, message: str, *, level: str = "info",
              data: dict[str, Any] | None = None) -> RunEvent:
    event = RunEvent(run_id=run.id, kind=kind, message=message, level=level, data=data)
    session.add(event)
    session.flush()
    return event


def get(session: Session, *, team_id: int, run_id: int) -> Run:
    run = repo.get(session, team_id=team_id, run_id=run_id)
    if run is None:
        raise NotFound("No such fine-tuning run.")
    return run


@dataclass
class Submission:
    team_id: int
    user_id: int | None
    dataset_id: int
    base_model_id: int
    preset: str = "auto"
    hyperparameters: dict[str, Any] | None = None
    name: str = ""
    priority: int = 0
    idempotency_key: str | None = None
    suffix: str | None = None
    time_budget_s: float | None = None
    sweep_id: int | None = None
    sweep_params: dict[str, Any] | None = None  # the sweep's grid point this run trains


def check_team_limit(session: Session, *, team_id: int, settings: Settings) -> None:
    """A team may have at most max_active_runs_per_team runs queued or running. Holds a lock on
    the team until the transaction ends, so two submissions cannot both take the last slot."""
    repo.lock_team(session, team_id)
    active, limit = repo.active_runs(session, team_id=team_id), settings.max_active_runs_per_team
    if active >= limit:
        runs = f"{active} run{'s' if active != 1 else ''}"
        raise RateLimited(f"Your team already has {runs} queued or running, and the limit is {limit}. Wait for "
                          "some to finish or cancel those you no longer need, then submit again (an admin can "
                          "raise STUDIO_MAX_ACTIVE_RUNS_PER_TEAM). Sweeps queue their runs as slots free up.",
                          param="team", details={"active_runs": active, "limit": limit})


def trainable(session: Session, *, team_id: int, dataset_id: int, base_model_id: int) -> tuple[Dataset, BaseModel]:
    """The team's validated dataset and a ready base model it may use, or a clear refusal."""
    dataset = datasets_repo.get(session, team_id=team_id, dataset_id=dataset_id)
    if dataset is None:
        raise NotFound("No such dataset.", param="dataset_id")
    if dataset.status != DatasetStatus.valid:
        raise InvalidInput(f"The dataset '{dataset.name}' is {dataset.status.value}: only a validated dataset "
                           "can be trained on.", param="dataset_id")
    model = models_repo.get_visible(session, team_id=team_id, model_id=base_model_id)
    if model is None or not model.is_enabled:
        raise NotFound("No such base model.", param="base_model_id")
    if model.status != ModelStatus.ready:
        raise InvalidInput(f"The model '{model.display_name}' is not ready ({model.status.value}).",
                           param="base_model_id")
    return dataset, model


def training_device(session: Session) -> configure.Device:
    """What a run would train on now: the biggest device among the live training workers."""
    return configure.training_device(workers_repo.alive(session))


def submit(session: Session, *, sub: Submission, settings: Settings) -> tuple[Run, bool]:
    """Checks everything, then queues. Returns (run, created); an idempotency key that was
    already used returns the first run instead of a second one."""
    if sub.idempotency_key:
        existing = repo.by_idempotency_key(session, team_id=sub.team_id, key=sub.idempotency_key)
        if existing is not None:
            return existing, False
    dataset, model = trainable(session, team_id=sub.team_id, dataset_id=sub.dataset_id,
                               base_model_id=sub.base_model_id)
    device = training_device(session)
    plan = configure.plan(dataset=dataset, model=model, device=device, preset=sub.preset,
                          overrides=sub.hyperparameters, time_budget_s=sub.time_budget_s)
    if device.known and plan.estimate["memory"]["fits"] is False:
        raise InvalidInput(f"This run would not fit on {device.name}: {plan.estimate['verdict']}",
                           param="hyperparameters", details={"estimate": plan.estimate})
    check_team_limit(session, team_id=sub.team_id, settings=settings)
    run = Run(team_id=sub.team_id, created_by_id=sub.user_id, dataset_id=dataset.id,
              eval_dataset_id=dataset.eval_dataset_id, base_model_id=model.id, method=plan.config.method,
              config=plan.config.model_dump(), goal=dataset.goal, status=RunStatus.queued, queue="train",
              priority=sub.priority, max_attempts=settings.max_run_attempts, seed=plan.config.seed,
              idempotency_key=sub.idempotency_key, suffix=sub.suffix, enqueued_at=utcnow(),
              estimate={**plan.estimate, "reasons": plan.reasons}, sweep_id=sub.sweep_id,
              sweep_params=sub.sweep_params, name=(sub.name.strip() or f"{model.display_name} on {dataset.name}")[:200])
    session.add(run)
    session.flush()
    what = f"{plan.config.method} fine-tuning"
    if plan.config.is_preference:  # learns from pairs: say so where the run's story starts
        what = f"{plan.config.objective.upper()} preference training ({plan.config.method})"
    add_event(session, run, "status", f"Queued: {what} of {model.display_name} "
              f"on {dataset.name} (v{dataset.version}).", data={"status": "queued"})
    for warning in plan.warnings:
        add_event(session, run, "warning", warning, level="warning")
    queue.enqueue(session, TRAIN_TASK, run.id, queue=run.queue)
    return run, True


def enqueue_ticket(session: Session, run: Run) -> None:
    """A ticket for a queued run, sent when the session commits (a worker claims whichever
    queued run is fairest next, so the ticket may start another one)."""
    queue.enqueue(session, TRAIN_TASK, run.id, queue=run.queue)


def cancel(session: Session, run: Run) -> Run:
    """A queued run ends at once, a running one is asked to stop. The edge then lets the run's
    sweep, if any, fill the freed slot (app.sweeps.service.run_ended)."""
    if run.status.is_final:
        raise Conflict(f"This run already ended ({run.status.value}).")
    if run.status == RunStatus.queued:
        run.status = RunStatus.cancelled
        run.finished_at = utcnow()
        add_event(session, run, "status", "Cancelled before it started.", data={"status": "cancelled"})
    elif not run.cancel_requested:
        run.cancel_requested = True
        add_event(session, run, "cancel", "Cancel requested: the run stops at its next step and keeps its "
                  "last checkpoint.")
    session.flush()
    return run


def retry(session: Session, run: Run, *, settings: Settings) -> Run:
    """A failed or cancelled run starts again, resuming from its latest checkpoint when it has one."""
    if run.status not in (RunStatus.failed, RunStatus.cancelled):
        raise Conflict(f"Only a failed or cancelled run can be retried (this one is {run.status.value}).")
    check_team_limit(session, team_id=run.team_id, settings=settings)
    last = repo.checkpoints(session, run.id)
    run.status = RunStatus.queued
    run.cancel_requested = False
    run.error_kind = run.error_message = None
    run.finished_at = None
    run.worker_id = run.lease_token = None
    run.enqueued_at = utcnow()
    run.max_attempts = run.attempt + settings.max_run_attempts
    where = f"resumes from the checkpoint at step {last[-1].step}" if last else "starts from the beginning"
    add_event(session, run, "status", f"Retry requested: queued again, {where}.",
              data={"status": "queued", "reason": "retry"})
    queue.enqueue(session, TRAIN_TASK, run.id, queue=run.queue)
    return run


def since_last_retry(session: Session, run_id: int, kinds: tuple[str, ...]) -> list[RunEvent]:
    """The run's events of these kinds since a person last retried it (a retry starts a fresh
    count of out-of-memory retries and of losses)."""
    events = repo.events_of_kinds(session, run_id, ("status", *kinds))
    last = max((i for i, e in enumerate(events) if (e.data or {}).get("reason") == "retry"), default=-1)
    return [e for e in events[last + 1:] if e.kind in kinds]


def oom_retries(session: Session, run_id: int) -> int:
    return len(since_last_retry(session, run_id, (oom.EVENT,)))


def retry_after_oom(session: Session, run: Run, *, step: int | None, resume_step: int | None,
                    cause: str = "Out of memory") -> oom.Retry | None:
    """Applies the out-of-memory rule (planner/oom.py) to the run: stores the smaller micro-batch
    and larger accumulation on the row (so the page, the API and any later resume see them) with
    an event that says what changed and why. None when the run must fail instead."""
    config = TrainingConfig.model_validate(run.config)
    retry = oom.next_retry(config, oom_retries(session, run.id))
    if retry is None:
        return None
    run.config = retry.config.model_dump()
    message = oom.retry_message(config, retry, step=step, resume_step=resume_step, cause=cause)
    add_event(session, run, oom.EVENT, message, level="warning", data={
        "reason": "oom", "step": step, "resume_step": resume_step, "retry": retry.number,
        "max_retries": oom.MAX_RETRIES, "effective_batch": config.effective_batch_size,
        "from": {"per_device_batch_size": config.per_device_batch_size, "grad_accum": config.grad_accum},
        "to": retry.change})
    return retry


def queue_place(session: Session, run: Run) -> qp.Place | None:
    """Where a queued run stands in its queue (app/runs/queue_position.py); None unless queued."""
    return queue_places(session, [run]).get(run.id)


def queue_places(session: Session, runs: list[Run]) -> dict[int, qp.Place]:
    """Where each queued run of one team stands, one read of each queue for all of them. Other
    teams' runs are read to count them, never named."""
    out: dict[int, qp.Place] = {}
    waiting = [r for r in runs if r.status == RunStatus.queued and not r.cancel_requested]
    now = utcnow()
    alive = workers_repo.alive(session) if waiting else []
    for queue_name in sorted({r.queue for r in waiting}):
        queued, running, teams = repo.queue_snapshot(session, queue_name)
        snapshot = dict(
            queued=[qp.Queued(r.id, r.team_id, r.priority or 0, qp.devices_of(r.config), qp.duration_of(r.estimate),
                              qp.memory_of(r.estimate)) for r in queued],
            running=[qp.Running(r.worker_id, tuple(r.device_ids or ()), qp.devices_of(r.config), remaining_s(r, now))
                     for r in running],
            teams={t: qp.Team(row.running or 0, row.last_started_at) for t, row in teams.items()},
            workers=[qp.Worker(w.name, w.device_count or 1,
                               w.device_memory_bytes / 1024**3 if w.device_memory_bytes else None)
                     for w in alive if queue_name in w.queues.split(",")])
        for run in (r for r in waiting if r.queue == queue_name):
            place = qp.standing(run.id, **snapshot)
            if place is not None:
                out[run.id] = qp.Place(place, repo.names(session, team_id=run.team_id, ids=place.ahead_own), now)
    return out


def remaining_s(row, now) -> float | None:  # noqa: ANN001
    """A running run's time left: the ETA it reports with its progress, else its estimate less
    the time it has run; None when neither is known."""
    if row.eta_s is not None:
        return float(row.eta_s)
    duration = qp.duration_of(row.estimate)
    if duration is None or row.started_at is None:
        return None
    return max(0.0, duration - (now - row.started_at).total_seconds())
