"""Submitting, cancelling and retrying runs, and every state transition with its event.
Services flush; the request edge or the task wrapper commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app import queue
from app.config import Settings
from app.errors import Conflict, InvalidInput, NotFound, RateLimited
from app.datasets import derive
from app.datasets import repository as datasets_repo
from app.datasets import tokens
from app.home import glossary
from app.notifications import service as notifications
from app.runs import configure, views
from app.runs import queue_position as qp
from app.runs import repository as repo
from app.models import BaseModel, Dataset, DatasetStatus, Run, RunEvent, RunStatus, ModelStatus, utcnow
from app.models_registry import repository as models_repo
from app.workers import repository as workers_repo
from planner import oom
from planner.config import TrainingConfig
from planner.tools import has_tool_support, no_tool_support_message

TRAIN_TASK = "studio.train"
FINAL_STATUSES = {s.value for s in RunStatus if s.is_final}
METRICS_EVENT = "metrics"  # one per logged step, worded as OpenAI words them (the charts show the same)


def add_event(session: Session, run: Run, kind: str, message: str, *, level: str = "info",
              data: dict[str, Any] | None = None) -> RunEvent:
    """Every transition writes its event here, so this is also where a run's end is told: the
    status event of a final state (written in the same transaction as the state, by the web, the
    worker or the reconciler) queues the team's webhooks and the starter's e-mail."""
    event = RunEvent(run_id=run.id, kind=kind, message=message, level=level, data=data)
    session.add(event)
    session.flush()
    if kind == "status" and (data or {}).get("status") in FINAL_STATUSES and run.status.value == data["status"]:
        notifications.run_ended(session, run)
    return event


def add_metrics_event(session: Session, run: Run, step: int, total: int | None,
                      metrics: dict[str, float]) -> RunEvent | None:
    """"Step 10/50: training loss=0.213, validation loss=0.198", with OpenAI's data fields."""
    train, valid = metrics.get("loss"), metrics.get("eval_loss")
    if train is None and valid is None:
        return None
    parts = [f"training loss={train:.3f}"] if train is not None else []
    parts += [f"validation loss={valid:.3f}"] if valid is not None else []
    data = {"step": step, "total_steps": total, "train_loss": train, "valid_loss": valid}
    if metrics.get("mean_token_accuracy") is not None:
        data["train_mean_token_accuracy"] = metrics["mean_token_accuracy"]
    where = f"{step}/{total}" if total else f"{step}"
    return add_event(session, run, METRICS_EVENT, f"Step {where}: {', '.join(parts)}",
                     data={k: v for k, v in data.items() if v is not None})


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
    eval_dataset_id: int | None = None  # a separate evaluation file (the OpenAI validation_file)
    learning_rate_multiplier: float | None = None  # applied to the preset's learning rate


SUBMISSION = "submission"  # where Run.estimate keeps what was asked, to plan again once the files are checked
PROVISIONAL = "provisional"  # True while the configuration was planned before the files were checked
CHECKING = (DatasetStatus.uploaded, DatasetStatus.validating)


def check_team_limit(session: Session, *, team_id: int, settings: Settings) -> None:
    """A team may have at most max_active_runs_per_team runs waiting for their files, queued or
    running. Holds a lock on the team until the transaction ends, so two submissions cannot both
    take the last slot."""
    repo.lock_team(session, team_id)
    active, limit = repo.active_runs(session, team_id=team_id), settings.max_active_runs_per_team
    if active >= limit:
        runs = f"{active} run{'s' if active != 1 else ''}"
        raise RateLimited(f"Your team already has {runs} queued or running, and the limit is {limit}. Wait for "
                          "some to finish or cancel those you no longer need, then submit again (an admin can "
                          "raise STUDIO_MAX_ACTIVE_RUNS_PER_TEAM). Sweeps queue their runs as slots free up.",
                          param="team", details={"active_runs": active, "limit": limit})


def _usable_dataset(session: Session, *, team_id: int, dataset_id: int, param: str,
                    allow_checking: bool) -> Dataset:
    dataset = datasets_repo.get(session, team_id=team_id, dataset_id=dataset_id)
    if dataset is None:
        raise NotFound("No such dataset.", param=param)
    if dataset.status == DatasetStatus.invalid:
        raise InvalidInput(f"The dataset '{dataset.name}' did not pass validation: "
                           f"{file_error(dataset)['message']}", param=param)
    if dataset.status != DatasetStatus.valid and not allow_checking:
        raise InvalidInput(f"The dataset '{dataset.name}' is {dataset.status.value}: only a validated dataset "
                           "can be trained on.", param=param)
    return dataset


def trainable(session: Session, *, team_id: int, dataset_id: int, base_model_id: int,
              allow_checking: bool = False) -> tuple[Dataset, BaseModel]:
    """The team's dataset (validated; or still being checked, with allow_checking) and a ready
    base model it may use, or a clear refusal."""
    dataset = _usable_dataset(session, team_id=team_id, dataset_id=dataset_id, param="dataset_id",
                              allow_checking=allow_checking)
    model = models_repo.get_visible(session, team_id=team_id, model_id=base_model_id)
    if model is None or not model.is_enabled:
        raise NotFound("No such base model.", param="base_model_id")
    if model.status != ModelStatus.ready:
        raise InvalidInput(f"The model '{model.display_name}' is not ready ({model.status.value}).",
                           param="base_model_id")
    check_tool_support(session, team_id=team_id, dataset=dataset, model=model)
    return dataset, model


def check_tool_support(session: Session, *, team_id: int, dataset: Dataset, model: BaseModel) -> None:
    """A dataset with tools (tool calling) needs a base model whose chat template renders them."""
    with_tools = (((dataset.report or {}).get("counts") or {}).get("with_tools") or 0)
    if not with_tools or has_tool_support(model.chat_template):
        return
    yours = [m.display_name for m in models_repo.visible(session, team_id) if has_tool_support(m.chat_template)]
    also = f" Of the studio's models, these have it: {', '.join(yours[:6])}." if yours else ""
    raise InvalidInput(no_tool_support_message(f"'{model.display_name}'") + also, param="base_model_id")


def training_device(session: Session) -> configure.Device:
    """What a run would train on now: the biggest device among the live training workers."""
    return configure.training_device(workers_repo.alive(session))


@dataclass
class QueueWait:
    """What a task sent to a queue waits behind: the runs training on it now and those queued
    before it (across teams, shown only as counts), the live workers of that queue, and when it
    should start (None: a run ahead has no time estimate, or no worker is online)."""
    running: int
    queued: int
    workers: int
    starts_in_s: float | None

    def sentence(self, what: str) -> str:
        """`what` names the work, e.g. "The answers are generated"."""
        if not self.workers:
            return (f"{what} by a training worker, and none is online: it starts as soon as one does "
                    "(an administrator runs studio worker).")
        if not self.running and not self.queued:
            return f"{what} by a training worker, which takes it in a moment."
        parts = []
        if self.running:
            parts.append(f"{self.running} training run{'s' if self.running != 1 else ''} in progress")
        if self.queued:
            parts.append(f"{self.queued} queued before it")
        when = (f" Expected to start in about {_minutes(self.starts_in_s)}." if self.starts_in_s is not None
                else " The start time is not known yet: a run ahead has no time estimate.")
        return (f"{what} by a training worker, after what is ahead: {' and '.join(parts)} "
                f"(place {self.running + self.queued + 1} in line).{when}")


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def queue_wait(session: Session, queue_name: str, *, sent: datetime) -> QueueWait:
    """The running runs' time left (their ETA, else their estimate less the time run) and the
    estimates of the runs queued before `sent`, shared over the queue's live workers."""
    running, queued = repo.ahead_in_queue(session, queue_name, before=sent)
    workers = sum(1 for w in workers_repo.alive(session) if queue_name in w.queues.split(","))
    now = utcnow()
    left: list[float | None] = []
    for row in running:
        if row.eta_s is not None:
            left.append(max(0.0, float(row.eta_s)))
        else:
            total = qp.duration_of(row.estimate)
            spent = (now - row.started_at).total_seconds() if row.started_at else 0.0
            left.append(None if total is None else max(0.0, total - spent))
    left += [qp.duration_of(row.estimate) for row in queued]
    starts = None if (not workers or any(x is None for x in left)) else sum(left) / workers
    return QueueWait(running=len(running), queued=len(queued), workers=workers, starts_in_s=starts)


def calibration(session: Session, *, team_id: int, device_kind: str) -> list[float]:
    """Actual over estimated training time of the team's finished runs on this kind of worker
    (cpu | cuda): what turns a time estimate into a calibrated range. Nothing new is stored:
    the run's recorded estimate and its start and finish times are enough."""
    ratios = []
    for started, finished, est in repo.finished_with_estimates(session, team_id=team_id):
        predicted = (est or {}).get("time_s")
        if not predicted or (est or {}).get("device_kind") != device_kind or not (est or {}).get("device_known"):
            continue
        actual = (finished - started).total_seconds()
        if actual > 0:
            ratios.append(actual / predicted)
    return ratios


def _plan(session: Session, *, dataset: Dataset, model: BaseModel, asked: dict[str, Any]) -> configure.Plan:
    """The configuration for what was asked (a Submission's planning fields, as kept on the run)."""
    device = training_device(session)
    overrides = dict(asked.get("overrides") or {})
    kwargs = dict(dataset=dataset, model=model, device=device, preset=asked.get("preset", "auto"),
                  time_budget_s=asked.get("time_budget_s"),
                  calibration=calibration(session, team_id=dataset.team_id, device_kind=device.kind))
    factor = asked.get("learning_rate_multiplier")
    if factor is not None:
        base = configure.plan(**kwargs, overrides={k: v for k, v in overrides.items() if k != "learning_rate"})
        overrides["learning_rate"] = base.config.learning_rate * factor
    return configure.plan(**kwargs, overrides=overrides)


def _fits(plan: configure.Plan, device_known: bool, dataset: Dataset, model: BaseModel) -> str | None:
    """Why the run would learn nothing or not fit on the training workers, or None."""
    if (why := tokens.nothing_trained(dataset, model.id, plan.config.max_length)) is not None:
        return why
    if device_known and plan.estimate["memory"]["fits"] is False:
        # in words for the wizard; the technical verdict stays in details.estimate for the API
        return (f"This run would not fit on {plan.estimate['device']}: "
                f"{glossary.memory_sentence(plan.estimate, views.METHOD_LABELS)}")
    return None


def submit(session: Session, *, sub: Submission, settings: Settings) -> tuple[Run, bool]:
    """Checks everything, then queues. Returns (run, created); an idempotency key that was
    already used returns the first run instead of a second one.

    Files still being checked are accepted, as OpenAI accepts a file right after its upload: the
    run is created in `validating_files` (no worker claims it) and moves on when the check ends
    (files_checked). Its configuration is planned again then, from the checked dataset."""
    if sub.idempotency_key:
        existing = repo.by_idempotency_key(session, team_id=sub.team_id, key=sub.idempotency_key)
        if existing is not None:
            return existing, False
    dataset, model = trainable(session, team_id=sub.team_id, dataset_id=sub.dataset_id,
                               base_model_id=sub.base_model_id, allow_checking=True)
    eval_dataset = None
    if sub.eval_dataset_id is not None:
        eval_dataset = _usable_dataset(session, team_id=sub.team_id, dataset_id=sub.eval_dataset_id,
                                       param="eval_dataset_id", allow_checking=True)
    validating = [d for d in (dataset, eval_dataset) if d is not None and d.status in CHECKING]
    for row in validating:  # a check finishing meanwhile waits for this transaction (Postgres); see files_checked
        datasets_repo.lock(session, row.id)
    scanning = []  # split by the studio, whose near-duplicate scan (it may re-split) has not ended
    for row in (d for d in (dataset, eval_dataset) if d is not None and d not in validating):
        if derive.split_by_studio(row) and row.status == DatasetStatus.valid:
            datasets_repo.lock(session, row.id)
            session.refresh(row, attribute_names=["cleaning"])
            if derive.split_pending(row):
                scanning.append(row)
    checking = validating + scanning
    asked = {"preset": sub.preset, "overrides": sub.hyperparameters or {}, "time_budget_s": sub.time_budget_s,
             "learning_rate_multiplier": sub.learning_rate_multiplier}
    plan = _plan(session, dataset=dataset, model=model, asked=asked)
    device_known = plan.estimate["device_known"]
    if not validating and (why := _fits(plan, device_known, dataset, model)):
        raise InvalidInput(why, param="hyperparameters", details={"estimate": plan.estimate})
    check_team_limit(session, team_id=sub.team_id, settings=settings)
    status = RunStatus.validating_files if checking else RunStatus.queued
    run = Run(team_id=sub.team_id, created_by_id=sub.user_id, dataset_id=dataset.id,
              eval_dataset_id=eval_dataset.id if eval_dataset is not None else dataset.eval_dataset_id,
              base_model_id=model.id, method=plan.config.method,
              config=plan.config.model_dump(), goal=dataset.goal, status=status, queue="train",
              priority=sub.priority, max_attempts=settings.max_run_attempts, seed=plan.config.seed,
              idempotency_key=sub.idempotency_key, suffix=sub.suffix, enqueued_at=None if checking else utcnow(),
              estimate={**plan.estimate, "reasons": plan.reasons, SUBMISSION: asked, PROVISIONAL: bool(checking)},
              sweep_id=sub.sweep_id,
              sweep_params=sub.sweep_params, name=(sub.name.strip() or f"{model.display_name} on {dataset.name}")[:200])
    session.add(run)
    session.flush()
    if validating:
        names = " and ".join(f"'{d.name}'" for d in validating)
        add_event(session, run, "status", f"Checking your files: {names} {'is' if len(validating) == 1 else 'are'} "
                  "still being validated; the run is queued as soon as they pass.",
                  data={"status": "validating_files", "datasets": [d.id for d in checking]})
        return run, True
    if scanning:
        names = " and ".join(f"'{d.name}'" for d in scanning)
        add_event(session, run, "status", f"Checking your files: {names} {'is' if len(scanning) == 1 else 'are'} "
                  "being checked for near duplicates, so that no evaluation example is a near copy of a training "
                  "one (any that is moves into training); the run is queued as soon as that check ends.",
                  data={"status": "validating_files", "reason": "near_duplicate_check",
                        "datasets": [d.id for d in scanning]})
        return run, True
    what = views.METHOD_LABELS.get(plan.config.method, plan.config.method)
    if plan.config.is_preference:  # learns from pairs: say so where the run's story starts
        what = f"{plan.config.objective.upper()} preference training ({what})"
    add_event(session, run, "status", f"Queued: {what} of {model.display_name} "
              f"on {dataset.name} (v{dataset.version}).", data={"status": "queued"})
    for warning in plan.warnings:
        add_event(session, run, "warning", warning, level="warning")
    queue.enqueue(session, TRAIN_TASK, run.id, queue=run.queue)
    return run, True


def file_error(dataset: Dataset) -> dict[str, Any]:
    """The first error of a file that did not pass validation: {code, message, line}."""
    report = dataset.report or {}
    first = next(iter(report.get("errors") or []), None) or {}
    message = first.get("message") or report.get("explanation") or "The file did not pass validation."
    return {"code": first.get("kind") or "invalid_file", "message": message, "line": first.get("line")}


def files_checked(session: Session, *, dataset_id: int | None = None, settings: Settings | None = None) -> int:
    """Moves on the runs waiting for this dataset's check (all waiting runs when None): queued
    once every file they use passed, failed with the file's own error when one did not. Called
    in the transaction that ends a check, and by the reconciler. Returns how many moved."""
    from app.config import get_settings

    settings = settings or get_settings()
    moved = 0
    for run in repo.waiting_for_files(session, dataset_id=dataset_id):
        session.refresh(run, with_for_update=True)  # a cancel that landed meanwhile is seen, and waits for us
        if run.status == RunStatus.validating_files:
            moved += _release(session, run, settings)
    return moved


def _release(session: Session, run: Run, settings: Settings) -> bool:
    files = [(f, d) for f, d in (("training_file", run.dataset_id), ("validation_file", run.eval_dataset_id))
             if d is not None]
    rows = [(param, session.get(Dataset, d)) for param, d in files]
    if any(row is not None and (row.status in CHECKING or derive.split_pending(row)) for _, row in rows):
        return False
    for param, row in rows:
        if row is None or row.team_id != run.team_id or row.status != DatasetStatus.valid:
            error = file_error(row) if row is not None else {
                "code": "file_deleted", "message": "The file was deleted before its check ended.", "line": None}
            where = f" (line {error['line']})" if error["line"] else ""
            name = row.name if row is not None else f"#{dict(files)[param]}"
            _fail_waiting(session, run, f"The file '{name}' did not pass validation{where}: {error['message']}",
                          {**error, "param": param, "dataset_id": dict(files)[param]})
            return True
    dataset = session.get(Dataset, run.dataset_id)
    model = models_repo.get_visible(session, team_id=run.team_id, model_id=run.base_model_id)
    if model is None or not model.is_enabled or model.status != ModelStatus.ready:
        _fail_waiting(session, run, "The base model is no longer available.",
                      {"code": "model_unavailable", "message": "The base model is no longer available.",
                       "line": None, "param": "model"})
        return True
    asked = (run.estimate or {}).get(SUBMISSION) or {}
    try:
        plan = _plan(session, dataset=dataset, model=model, asked=asked)
        why = _fits(plan, plan.estimate["device_known"], dataset, model)
    except InvalidInput as exc:
        plan, why = None, exc.message
    if why:
        _fail_waiting(session, run, why, {"code": "invalid_hyperparameters", "message": why, "line": None,
                                          "param": "hyperparameters"})
        return True
    run.config, run.method, run.seed = plan.config.model_dump(), plan.config.method, plan.config.seed
    run.goal = dataset.goal
    if run.eval_dataset_id is None:
        run.eval_dataset_id = dataset.eval_dataset_id
    run.estimate = {**plan.estimate, "reasons": plan.reasons, SUBMISSION: asked, PROVISIONAL: False}
    run.status, run.enqueued_at = RunStatus.queued, utcnow()
    add_event(session, run, "status", f"Files checked. Queued: {views.METHOD_LABELS.get(plan.config.method, plan.config.method)} of "
              f"{model.display_name} on {dataset.name} (v{dataset.version}).", data={"status": "queued"})
    for warning in plan.warnings:
        add_event(session, run, "warning", warning, level="warning")
    for _, row in rows:
        if (note := derive.split_note(row)) is not None:
            add_event(session, run, "evaluation", note[1], level=note[0])
    queue.enqueue(session, TRAIN_TASK, run.id, queue=run.queue)
    return True


def _fail_waiting(session: Session, run: Run, message: str, error: dict[str, Any]) -> None:
    run.status, run.finished_at = RunStatus.failed, utcnow()
    run.error_kind, run.error_message = "invalid_file" if error.get("param") != "hyperparameters" else "config", message
    run.result = {**(run.result or {}), "file_error": error}
    add_event(session, run, "status", f"Failed before it started: {message}", level="error",
              data={"status": "failed", **error})


def enqueue_ticket(session: Session, run: Run) -> None:
    """A ticket for a queued run, sent when the session commits (a worker claims whichever
    queued run is fairest next, so the ticket may start another one)."""
    queue.enqueue(session, TRAIN_TASK, run.id, queue=run.queue)


def cancel(session: Session, run: Run) -> Run:
    """A queued run ends at once, a running one is asked to stop. The edge then lets the run's
    sweep, if any, fill the freed slot (app.sweeps.service.run_ended)."""
    if run.status.is_final:
        raise Conflict(f"This run already ended ({run.status.value}).")
    if run.status in (RunStatus.queued, RunStatus.validating_files):
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
    if (run.result or {}).get("file_error") and run.error_kind == "invalid_file":
        raise Conflict("This run never started because its file did not pass validation: upload a corrected "
                       "file and start a new run with it.")
    check_team_limit(session, team_id=run.team_id, settings=settings)
    if (run.estimate or {}).get(PROVISIONAL):  # cancelled while its files were checked: wait for them again
        run.cancel_requested, run.finished_at = False, None
        run.error_kind = run.error_message = None
        run.status = RunStatus.validating_files
        add_event(session, run, "status", "Retry requested: checking the files again before it is queued.",
                  data={"status": "validating_files", "reason": "retry"})
        _release(session, run, settings)
        return run
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
