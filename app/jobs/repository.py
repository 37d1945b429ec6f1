"""Queries for jobs and what runs write back. Tenant reads take the team id; the worker-side
queries (claim, reconcile) work on ids the broker handed over or on state, never on input."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from app.models import Artifact, Checkpoint, Job, JobEvent, JobStatus, Metric, Team

ACTIVE = (JobStatus.queued, JobStatus.running)


def get(session: Session, *, team_id: int, job_id: int) -> Job | None:
    return session.scalar(select(Job).where(Job.team_id == team_id, Job.id == job_id))


def by_idempotency_key(session: Session, *, team_id: int, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.team_id == team_id, Job.idempotency_key == key))


def list_jobs(session: Session, *, team_id: int, status: str | None = None, dataset_id: int | None = None,
              base_model_id: int | None = None, method: str | None = None, author_id: int | None = None,
              before_id: int | None = None, limit: int = 50) -> list[Job]:
    stmt = select(Job).where(Job.team_id == team_id)
    filters = {Job.status: status, Job.dataset_id: dataset_id, Job.base_model_id: base_model_id,
               Job.method: method, Job.created_by_id: author_id}
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if before_id is not None:
        stmt = stmt.where(Job.id < before_id)
    return list(session.scalars(stmt.order_by(Job.id.desc()).limit(limit)))


def events(session: Session, job_id: int, *, after_id: int = 0, limit: int = 500) -> list[JobEvent]:
    stmt = (select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after_id)
            .order_by(JobEvent.id).limit(limit))
    return list(session.scalars(stmt))


def metrics(session: Session, job_id: int, *, after_id: int = 0, names: Sequence[str] | None = None,
            limit: int = 20000) -> list[Metric]:
    stmt = select(Metric).where(Metric.job_id == job_id, Metric.id > after_id)
    if names:
        stmt = stmt.where(Metric.name.in_(list(names)))
    return list(session.scalars(stmt.order_by(Metric.id).limit(limit)))


def checkpoints(session: Session, job_id: int) -> list[Checkpoint]:
    return list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)))


def artifacts(session: Session, *, team_id: int, job_id: int) -> list[Artifact]:
    stmt = select(Artifact).where(Artifact.team_id == team_id, Artifact.job_id == job_id).order_by(Artifact.id)
    return list(session.scalars(stmt))


def artifact(session: Session, *, team_id: int, job_id: int, artifact_id: int) -> Artifact | None:
    stmt = select(Artifact).where(Artifact.team_id == team_id, Artifact.job_id == job_id,
                                  Artifact.id == artifact_id)
    return session.scalar(stmt)


# -- worker side -----------------------------------------------------------------------------

def by_id(session: Session, job_id: int, *, for_update: bool = False) -> Job | None:
    """The job a broker message or another row named (for_update: locked until the end of the
    transaction)."""
    if for_update:
        return session.get(Job, job_id, with_for_update=True)
    return session.get(Job, job_id)


def stop_signals(session: Session, job_id: int) -> Row:
    """(cancel_requested, lease_token): what a running job polls to know whether to stop."""
    return session.execute(select(Job.cancel_requested, Job.lease_token).where(Job.id == job_id)).one()


def add_metrics(session: Session, rows: list[dict]) -> None:
    session.execute(insert(Metric), rows)


def checkpoint(session: Session, job_id: int, step: int) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step == step))


def delete_checkpoints(session: Session, job_id: int, steps: Sequence[int]) -> None:
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step.in_(steps)))


def running_worker_names(session: Session) -> set[str]:
    """The workers that hold a running job."""
    return set(session.scalars(select(Job.worker_id).where(Job.status == JobStatus.running)))


def queued_in_fair_order(session: Session, queue: str, limit: int = 50) -> list[Job]:
    """Queued jobs of a queue, best first: higher priority, then the team with the fewest
    running jobs, then the team that started a job least recently, then the oldest job.
    One team's fifty jobs therefore alternate with another team's one."""
    running = (select(Job.team_id, func.count(Job.id).label("n")).where(Job.status == JobStatus.running)
               .group_by(Job.team_id).subquery())
    last_start = (select(Job.team_id, func.max(Job.started_at).label("t")).where(Job.started_at.is_not(None))
                  .group_by(Job.team_id).subquery())
    stmt = (
        select(Job)
        .outerjoin(running, running.c.team_id == Job.team_id)
        .outerjoin(last_start, last_start.c.team_id == Job.team_id)
        .where(Job.status == JobStatus.queued, Job.queue == queue, Job.cancel_requested.is_(False))
        .order_by(Job.priority.desc(), func.coalesce(running.c.n, 0),
                  last_start.c.t.is_not(None), last_start.c.t, Job.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def claim(session: Session, *, job_id: int, worker: str, lease_token: str, now: datetime) -> bool:
    """Compare-and-set queued -> running: only one worker ever wins a job."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued, Job.cancel_requested.is_(False))
        .values(status=JobStatus.running, worker_id=worker, lease_token=lease_token, heartbeat_at=now,
                attempt=Job.attempt + 1, started_at=func.coalesce(Job.started_at, now))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def renew_lease(session: Session, *, job_id: int, lease_token: str, now: datetime) -> bool:
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_token == lease_token, Job.status == JobStatus.running)
        .values(heartbeat_at=now).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def stale_running(session: Session, *, heartbeat_before: datetime) -> list[Job]:
    stmt = select(Job).where(Job.status == JobStatus.running,
                             and_(Job.heartbeat_at.is_not(None), Job.heartbeat_at < heartbeat_before))
    return list(session.scalars(stmt))


def take_back(session: Session, *, job_id: int, lease_token: str, values: dict) -> bool:
    """Compare-and-set on a running job whose worker was lost: applies `values` (queued again, or
    failed) only while the job still holds the lease the reconciler saw."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.lease_token == lease_token, Job.status == JobStatus.running)
        .values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def waiting_since(session: Session, *, enqueued_before: datetime) -> list[Job]:
    stmt = select(Job).where(Job.status == JobStatus.queued, Job.cancel_requested.is_(False),
                             (Job.enqueued_at.is_(None)) | (Job.enqueued_at < enqueued_before))
    return list(session.scalars(stmt.order_by(Job.id)))


def active_jobs(session: Session, *, team_id: int) -> int:
    """Jobs of the team that are queued or running (what the team limit counts)."""
    return session.scalar(select(func.count(Job.id)).where(Job.team_id == team_id, Job.status.in_(ACTIVE))) or 0


def lock_team(session: Session, team_id: int) -> None:
    """Serialises submissions of one team until the transaction ends, so two of them cannot
    both see room under the team limit. An UPDATE rather than SELECT ... FOR UPDATE: Postgres
    locks the row either way, and SQLite (which ignores FOR UPDATE) takes its write lock."""
    session.execute(update(Team).where(Team.id == team_id).values(name=Team.name)
                    .execution_options(synchronize_session=False))
