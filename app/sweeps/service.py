"""Sweeps (grid search): one search space becomes child runs, submitted a few at a time, and
the best child by a chosen metric is marked and can be promoted.

A sweep's grid point i is its child i: the child's idempotency key names the point, so a
point can never be queued twice. `advance` is called after every child ends (the training
task's hook), when a child is cancelled from the web (`run_ended`), and by every worker's
reconciler; it locks the sweep, so several workers calling it at once do the work once.
Services flush; the edges commit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.errors import Conflict, InvalidInput, NotFound, RateLimited, StudioError
from app.home import glossary
from app.notifications import service as notifications
from app.runs import configure, views
from app.runs import repository as runs_repo
from app.runs import service as runs_service
from app.models import BaseModel, Dataset, Run, RunStatus, Sweep, utcnow
from app.sweeps import grid
from app.sweeps import repository as repo

MAX_PARALLEL = 16
METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
# Reported by every run in its results; any other metric comes from the run's evaluation.
RUN_METRICS = ("eval_loss", "train_loss", "perplexity", "loss")
EVALUATION_WAIT_S = 600  # a run's evaluation starts right after it ends
METRIC_LABELS = {"eval_loss": "Evaluation loss", "train_loss": "Training loss", "perplexity": "Perplexity",
                 "loss": "Last training loss", "bleu": "BLEU", "rougeL": "ROUGE-L", "exact_match": "Exact match",
                 "accuracy": "Accuracy"}


def default_mode(metric: str) -> str:
    """Losses and perplexity are better low; any other score (BLEU, ROUGE, judge) high."""
    return "min" if "loss" in metric or "perplexity" in metric else "max"


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


@dataclass
class SweepRequest:
    team_id: int
    user_id: int | None
    dataset_id: int
    base_model_id: int
    search_space: dict[str, Any]
    preset: str = "auto"
    hyperparameters: dict[str, Any] | None = None  # the same for every run
    name: str = ""
    metric: str = "eval_loss"
    mode: str | None = None  # min | max; None: from the metric
    max_parallel: int = 2


def get(session: Session, *, team_id: int, sweep_id: int) -> Sweep:
    sweep = repo.get(session, team_id=team_id, sweep_id=sweep_id)
    if sweep is None:
        raise NotFound("No such sweep.")
    return sweep


def _check_request(req: SweepRequest) -> tuple[dict[str, list[Any]], dict[str, Any], str]:
    if not METRIC_NAME.match(req.metric or ""):
        raise InvalidInput("Name the metric that picks the best run, e.g. eval_loss (the default), train_loss or "
                           "perplexity.", param="metric")
    mode = req.mode or default_mode(req.metric)
    if mode not in ("min", "max"):
        raise InvalidInput("mode is 'min' (lower is better) or 'max' (higher is better).", param="mode")
    if not 1 <= req.max_parallel <= MAX_PARALLEL:
        raise InvalidInput(f"max_parallel is how many runs of the sweep may be queued or running at once: "
                           f"1 to {MAX_PARALLEL}.", param="max_parallel")
    space = grid.validate_space(req.search_space)
    fixed = dict(req.hyperparameters or {})
    both = sorted(set(fixed) & set(space))
    if both:
        raise InvalidInput(f"{', '.join(both)}: set both as a fixed setting and in the search space; keep one.",
                           param="search_space")
    return space, fixed, mode


def _plan_points(session: Session, req: SweepRequest, space: dict,
                 fixed: dict) -> tuple[Dataset, BaseModel, configure.Plan]:
    """Plans the base and every point as submit will, so an invalid or oversized combination is
    refused before anything is queued."""
    dataset, model = runs_service.trainable(session, team_id=req.team_id, dataset_id=req.dataset_id,
                                            base_model_id=req.base_model_id)
    device = runs_service.training_device(session)
    base = configure.plan(dataset=dataset, model=model, device=device, preset=req.preset, overrides=fixed)
    for point in grid.expand(space):
        try:
            plan = configure.plan(dataset=dataset, model=model, device=device, preset=req.preset,
                                  overrides={**fixed, **point})
        except InvalidInput as exc:
            raise InvalidInput(f"The run {grid.label(point)} would not be valid: "
                               f"{exc.message.removeprefix('These settings are not valid: ')}",
                               param="search_space") from None
        if device.known and plan.estimate["memory"]["fits"] is False:
            raise InvalidInput(f"The run {grid.label(point)} would not fit on {device.name}: "
                               f"{glossary.memory_sentence(plan.estimate, views.METHOD_LABELS)}",
                               param="search_space", details={"estimate": plan.estimate})
    return dataset, model, base


def create(session: Session, *, req: SweepRequest, settings: Settings) -> Sweep:
    """Checks the whole grid, stores the sweep and queues its first runs (as many as
    max_parallel and the team's limit allow; the others wait)."""
    space, fixed, mode = _check_request(req)
    dataset, model, base = _plan_points(session, req, space, fixed)
    sweep = Sweep(team_id=req.team_id, created_by_id=req.user_id, dataset_id=dataset.id, base_model_id=model.id,
                  name=(req.name.strip() or f"Sweep of {model.display_name} on {dataset.name}")[:200],
                  base_config={"preset": req.preset, "hyperparameters": fixed, "config": base.config.model_dump()},
                  search_space=space, metric=req.metric, mode=mode, max_parallel=req.max_parallel,
                  status="running")
    session.add(sweep)
    session.flush()
    _fill(session, sweep, repo.children(session, team_id=sweep.team_id, sweep_id=sweep.id),
          settings=settings, strict=True)
    return sweep


# -- advancing ------------------------------------------------------------------------------

def waiting_points(sweep: Sweep, children: list[Run]) -> list[tuple[int, dict[str, Any]]]:
    """Grid points that have no child yet, in grid order."""
    taken = {repo.point_index(j) for j in children}
    return [(i, p) for i, p in enumerate(grid.expand(sweep.search_space)) if i not in taken]


def _fill(session: Session, sweep: Sweep, children: list[Run], *, settings: Settings,
          strict: bool = False) -> int:
    """Submits waiting points while the sweep and the team have room; returns how many."""
    waiting = waiting_points(sweep, children)
    active = sum(j.status in repo.ACTIVE for j in children)
    room = min(sweep.max_parallel - active,
               settings.max_active_runs_per_team - runs_repo.active_runs(session, team_id=sweep.team_id))
    submitted = 0
    fixed = (sweep.base_config or {}).get("hyperparameters") or {}
    for index, point in waiting[:max(room, 0)]:
        sub = runs_service.Submission(
            team_id=sweep.team_id, user_id=sweep.created_by_id, dataset_id=sweep.dataset_id or 0,
            base_model_id=sweep.base_model_id or 0, preset=(sweep.base_config or {}).get("preset", "auto"),
            hyperparameters={**fixed, **point}, name=f"{sweep.name} · {grid.label(point)}",
            idempotency_key=repo.child_key(sweep.id, index), sweep_id=sweep.id, sweep_params=point)
        try:
            runs_service.submit(session, sub=sub, settings=settings)
        except RateLimited:
            break  # the team is at its limit: the point waits for a slot
        except StudioError as exc:
            message = f"The run {grid.label(point)} could not be queued: {exc.message}"
            if strict:
                raise type(exc)(message, param=exc.param, details=exc.details) from None
            _end(session, sweep, "failed", f"{message} The sweep stopped queueing runs; the ones already queued or "
                 "running go on and are listed here.")
            break
        submitted += 1
    return submitted


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def metric_values(session: Session, sweep: Sweep, children: list[Run]) -> dict[int, float | None]:
    """Each succeeded child's value of the sweep's metric: a training metric from the run's
    results; any other name from the fine-tuned model's scores of its evaluations."""
    succeeded = [j for j in children if j.status == RunStatus.succeeded]
    scores = {} if sweep.metric in RUN_METRICS else repo.evaluation_scores(session, [j.id for j in succeeded])[0]
    out: dict[int, float | None] = {j.id: None for j in children}
    for run in succeeded:
        source = ((run.result or {}).get("metrics") or {}) if sweep.metric in RUN_METRICS else scores.get(run.id, {})
        out[run.id] = _number(source.get(sweep.metric))
    return out


def _awaiting_scores(session: Session, sweep: Sweep, children: list[Run], values: dict[int, float | None]) -> bool:
    """An evaluation score arrives after its run ends: wait for runs whose evaluation is still
    going, or has not started yet (for at most EVALUATION_WAIT_S after the run ended)."""
    missing = [j for j in children if j.status == RunStatus.succeeded and values.get(j.id) is None]
    if sweep.metric in RUN_METRICS or not missing:
        return False
    states = repo.evaluation_scores(session, [j.id for j in missing])[1]
    now = utcnow()
    for run in missing:
        seen = states.get(run.id, set())
        if seen & {"pending", "running"}:
            return True
        if not seen and run.finished_at and (now - run.finished_at).total_seconds() < EVALUATION_WAIT_S:
            return True
    return False


def pick_best(sweep: Sweep, children: list[Run], values: dict[int, float | None]) -> Run | None:
    """The succeeded child with the best value; a tie goes to the earliest grid point."""
    sign = 1 if sweep.mode == "min" else -1
    scored = [(sign * values[j.id], repo.point_index(j) or 0, j.id, j) for j in children
              if j.status == RunStatus.succeeded and values.get(j.id) is not None]
    return min(scored, key=lambda t: t[:3])[3] if scored else None


def _end(session: Session, sweep: Sweep, status: str, message: str | None = None, *, tell: bool = True) -> None:
    """The sweep's end, told to the team's webhooks in the same transaction (sweep.finished);
    `tell=False` leaves that to a caller that still has something to settle (cancel's best run)."""
    sweep.status = status
    sweep.error_message = message
    sweep.finished_at = utcnow()
    if tell:
        notifications.sweep_ended(session, sweep)


def _finish_if_done(session: Session, sweep: Sweep, children: list[Run]) -> None:
    if sweep.status != "running" or waiting_points(sweep, children) or any(j.status in repo.ACTIVE for j in children):
        return
    values = metric_values(session, sweep, children)
    if _awaiting_scores(session, sweep, children, values):
        return  # the reconciler's next pass looks again
    best = pick_best(sweep, children, values)
    succeeded = [j for j in children if j.status == RunStatus.succeeded]
    if best is not None:
        sweep.best_run_id = best.id
        _end(session, sweep, "succeeded")
    elif not succeeded:
        counts = {s: sum(j.status == s for j in children) for s in (RunStatus.failed, RunStatus.cancelled)}
        _end(session, sweep, "failed", f"None of the {len(children)} runs succeeded ({counts[RunStatus.failed]} failed, "
             f"{counts[RunStatus.cancelled]} cancelled): open a run to see why it stopped, fix that, and start "
             "the sweep again.")
    else:
        hint = (" The dataset has no evaluation examples: add some, or pick by train_loss."
                if sweep.metric == "eval_loss" else "")
        _end(session, sweep, "failed", f"{len(succeeded)} runs succeeded, but none reported {sweep.metric}, so no best run "
             f"could be picked.{hint} Their results are below.")


def _needs_work(session: Session, sweep: Sweep, settings: Settings) -> bool:
    children = repo.children(session, team_id=sweep.team_id, sweep_id=sweep.id, fresh=True)
    active = sum(j.status in repo.ACTIVE for j in children)
    if not waiting_points(sweep, children):
        return active == 0 and not _awaiting_scores(session, sweep, children, metric_values(session, sweep, children))
    return active < sweep.max_parallel and \
        runs_repo.active_runs(session, team_id=sweep.team_id) < settings.max_active_runs_per_team


def advance(session: Session, sweep_id: int, *, settings: Settings | None = None) -> Sweep | None:
    """Queues waiting points while there is room; once every run has ended, picks the best.
    Idempotent and safe to call from several processes at once."""
    settings = settings or get_settings()
    sweep = repo.fresh(session, sweep_id)
    if sweep is None or sweep.status != "running" or not _needs_work(session, sweep, settings):
        return sweep
    sweep = repo.lock(session, sweep_id, wait=False)
    if sweep is None or sweep.status != "running":
        return sweep
    children = repo.children(session, team_id=sweep.team_id, sweep_id=sweep.id, fresh=True)
    if _fill(session, sweep, children, settings=settings):
        children = repo.children(session, team_id=sweep.team_id, sweep_id=sweep.id, fresh=True)
    _finish_if_done(session, sweep, children)
    session.flush()
    return sweep


def run_ended(session: Session, run: Run) -> None:
    """The web's hook once a child of a sweep ended (cancelled before it started): its next
    waiting run takes the freed slot, in the same unit of work. The worker's hook is the
    training task's (worker/tasks/runs.py), the repair the reconciler's pass."""
    if run.sweep_id is not None and run.status.is_final:
        advance(session, run.sweep_id)


# -- cancel and promote ---------------------------------------------------------------------

def cancel(session: Session, sweep: Sweep) -> Sweep:
    """Stops the sweep: no more runs are queued; its queued runs are cancelled and its running
    ones asked to stop. The best run among those that already succeeded is still marked."""
    sweep = repo.lock(session, sweep.id)
    if sweep.status != "running":
        raise Conflict(f"This sweep already ended ({sweep.status}).")
    _end(session, sweep, "cancelled", tell=False)
    session.flush()  # before the children: their cancel hook then sees an ended sweep
    children = repo.children(session, team_id=sweep.team_id, sweep_id=sweep.id, fresh=True)
    for run in children:
        if run.status in repo.ACTIVE and not run.cancel_requested:
            runs_service.cancel(session, run)
    best = pick_best(sweep, children, metric_values(session, sweep, children))
    sweep.best_run_id = best.id if best is not None else None
    notifications.sweep_ended(session, sweep)
    session.flush()
    return sweep


def promote(session: Session, sweep: Sweep, run_id: int | None = None) -> Run:
    """Marks one succeeded run of the sweep as the team's chosen model (the best by default);
    promoting another run later moves the mark, so a sweep has at most one promoted run."""
    sweep = repo.lock(session, sweep.id)
    if run_id is None:
        if sweep.best_run_id is None:
            raise Conflict("This sweep has no best run yet: it picks one when every run has ended. "
                           "Name a run (run_id) to promote it now.")
        run_id = sweep.best_run_id
    run = runs_service.get(session, team_id=sweep.team_id, run_id=run_id)
    if run.sweep_id != sweep.id:
        raise InvalidInput(f"Run #{run.id} is not part of this sweep.", param="run_id")
    if run.status != RunStatus.succeeded:
        raise Conflict(f"Only a run that succeeded can be promoted (run #{run.id} is {run.status.value}).")
    if sweep.promoted_run_id == run.id:
        return run
    if sweep.promoted_run_id is not None:
        previous = runs_service.get(session, team_id=sweep.team_id, run_id=sweep.promoted_run_id)
        previous.promoted_at = None
        runs_service.add_event(session, previous, "promotion", f"No longer the promoted run of the sweep "
                               f"“{sweep.name}”: run #{run.id} replaced it.")
    run.promoted_at = utcnow()
    sweep.promoted_run_id = run.id
    runs_service.add_event(session, run, "promotion", f"Promoted: the chosen run of the sweep “{sweep.name}” "
                           f"({metric_label(sweep.metric)} {_fmt(metric_values(session, sweep, [run])[run.id])}).")
    session.flush()
    return run


def _fmt(value: float | None) -> str:
    return "not reported" if value is None else f"{value:.4g}"
