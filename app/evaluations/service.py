"""The life of an automatic evaluation: pending -> running -> succeeded | failed.

The worker that trained a run evaluates it right after the run is marked succeeded (see
worker/tasks/evaluation.py); `rerun` queues a fresh evaluation of a finished run. An evaluation whose
worker went away (killed, host lost, restarted) is interrupted: the page says so and offers a
re-run, and `fail_interrupted` (run by every training worker when it picks up a ticket) marks
such rows failed so that none stays "running" for ever. Services flush; the edges commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app import queue
from app.errors import Conflict
from app.evaluations import repository as repo
from app.runs import repository as runs_repo
from app.runs import service as runs_service
from app.models import Evaluation, Run, RunStatus, utcnow
from app.workers import repository as workers_repo

AUTOMATIC = "automatic"
LLM_JUDGE = "llm_judge"
EVALUATE_TASK = "studio.evaluate"
# A re-run nobody has picked up after this long lost its broker message: it may be queued again.
STALE_PENDING_S = 600
INTERRUPTED = ("The worker stopped while evaluating (it was restarted or lost). The fine-tuned model is not "
               "affected; re-run the evaluation.")


def worker_of(evaluation: Evaluation) -> str | None:
    return (evaluation.details or {}).get("worker")


def alive_workers(session: Session) -> dict[str, int | None]:
    """Live workers by name, with the process id each runs as now."""
    return {w.name: (w.info or {}).get("pid") for w in workers_repo.alive(session)}


def is_interrupted(evaluation: Evaluation, alive: dict[str, int | None], now: datetime | None = None) -> bool:
    """Unfinished, and no live worker is working on it: its worker is gone, or came back as a new process."""
    if evaluation.status not in repo.UNFINISHED:
        return False
    worker = worker_of(evaluation)
    if worker:
        pid = (evaluation.details or {}).get("worker_pid")
        return worker not in alive or (pid is not None and alive[worker] is not None and alive[worker] != pid)
    age = ((now or utcnow()) - evaluation.created_at).total_seconds()
    return evaluation.status == "pending" and age > STALE_PENDING_S


def can_rerun(run: Run, latest: Evaluation | None, alive: dict[str, int | None]) -> bool:
    return run.status == RunStatus.succeeded and (
        latest is None or latest.status not in repo.UNFINISHED or is_interrupted(latest, alive))


def mark_failed(session: Session, evaluation: Evaluation, message: str) -> None:
    evaluation.status, evaluation.error_message, evaluation.finished_at = "failed", message, utcnow()
    run = runs_repo.by_id(session, evaluation.run_id)
    if run is not None:
        runs_service.add_event(session, run, "evaluation", f"Evaluation failed: {message}", level="warning",
                               data={"evaluation_id": evaluation.id, "status": "failed"})


def fail_interrupted(session: Session, *, alive: dict[str, int | None], this_worker: str | None = None) -> int:
    """Marks failed the unfinished automatic evaluations whose worker is gone, and those of
    `this_worker`, which is idle when it calls this. Returns how many."""
    count = 0
    for evaluation in repo.unfinished(session):
        worker = worker_of(evaluation)
        if (worker is not None and worker == this_worker) or is_interrupted(evaluation, alive):
            mark_failed(session, evaluation, INTERRUPTED)
            count += 1
    session.flush()
    return count


def rerun(session: Session, *, run: Run, alive: dict[str, int | None]) -> Evaluation:
    """Queues a fresh automatic evaluation of a finished run (on the run's training queue)."""
    if run.status != RunStatus.succeeded:
        raise Conflict("Only a run that finished can be evaluated.")
    latest = repo.latest(session, team_id=run.team_id, run_id=run.id, kind=AUTOMATIC)
    if latest is not None and latest.status in repo.UNFINISHED:
        if not is_interrupted(latest, alive):
            raise Conflict("This run is being evaluated already.")
        mark_failed(session, latest, INTERRUPTED)
    evaluation = Evaluation(team_id=run.team_id, run_id=run.id, kind=AUTOMATIC, status="pending",
                            details={"source": "rerun"})
    session.add(evaluation)
    session.flush()
    runs_service.add_event(session, run, "evaluation", "Evaluation queued again.",
                           data={"evaluation_id": evaluation.id, "status": "pending"})
    queue.enqueue(session, EVALUATE_TASK, evaluation.id, queue=run.queue)
    return evaluation
