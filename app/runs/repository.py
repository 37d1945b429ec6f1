"""Queries for runs and what runs write back. Tenant reads take the team id; the worker-side
queries (claim, reconcile) work on ids the broker handed over or on state, never on input."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Row, and_, delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from app.models import Artifact, Checkpoint, Run, RunEvent, RunStatus, Metric, Team

ACTIVE = (RunStatus.validating_files, RunStatus.queued, RunStatus.running)


def get(session: Session, *, team_id: int, run_id: int) -> Run | None:
    return session.scalar(select(Run).where(Run.team_id == team_id, Run.id == run_id))


def by_idempotency_key(session: Session, *, team_id: int, key: str) -> Run | None:
    return session.scalar(select(Run).where(Run.team_id == team_id, Run.idempotency_key == key))


def list_runs(session: Session, *, team_id: int, status: str | None = None, dataset_id: int | None = None,
              base_model_id: int | None = None, method: str | None = None, author_id: int | None = None,
              before_id: int | None = None, limit: int = 50) -> list[Run]:
    stmt = select(Run).where(Run.team_id == team_id)
    filters = {Run.status: status, Run.dataset_id: dataset_id, Run.base_model_id: base_model_id,
               Run.method: method, Run.created_by_id: author_id}
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if before_id is not None:
        stmt = stmt.where(Run.id < before_id)
    return list(session.scalars(stmt.order_by(Run.id.desc()).limit(limit)))


def finished_with_estimates(session: Session, *, team_id: int, limit: int = 50) -> list[Row]:
    """The team's latest succeeded runs with their start, finish and recorded estimate."""
    return list(session.execute(
        select(Run.started_at, Run.finished_at, Run.estimate)
        .where(Run.team_id == team_id, Run.status == RunStatus.succeeded, Run.started_at.is_not(None),
               Run.finished_at.is_not(None), Run.estimate.is_not(None))
        .order_by(Run.finished_at.desc()).limit(limit)).all())


def events(session: Session, run_id: int, *, after_id: int = 0, limit: int = 500,
           exclude_kinds: Sequence[str] = ()) -> list[RunEvent]:
    stmt = select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.id > after_id)
    if exclude_kinds:
        stmt = stmt.where(RunEvent.kind.not_in(list(exclude_kinds)))
    return list(session.scalars(stmt.order_by(RunEvent.id).limit(limit)))


def metrics(session: Session, run_id: int, *, after_id: int = 0, names: Sequence[str] | None = None,
            limit: int = 20000) -> list[Metric]:
    stmt = select(Metric).where(Metric.run_id == run_id, Metric.id > after_id)
    if names:
        stmt = stmt.where(Metric.name.in_(list(names)))
    return list(session.scalars(stmt.order_by(Metric.id).limit(limit)))


def events_of_kinds(session: Session, run_id: int, kinds: Sequence[str]) -> list[RunEvent]:
    """A run's events of these kinds, oldest first (the retry counts read them)."""
    return list(session.scalars(select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.kind.in_(kinds))
                                .order_by(RunEvent.id)))


def checkpoints(session: Session, run_id: int) -> list[Checkpoint]:
    return list(session.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step)))


def artifacts(session: Session, *, team_id: int, run_id: int) -> list[Artifact]:
    stmt = select(Artifact).where(Artifact.team_id == team_id, Artifact.run_id == run_id).order_by(Artifact.id)
    return list(session.scalars(stmt))


def artifact(session: Session, *, team_id: int, run_id: int, artifact_id: int) -> Artifact | None:
    stmt = select(Artifact).where(Artifact.team_id == team_id, Artifact.run_id == run_id,
                                  Artifact.id == artifact_id)
    return session.scalar(stmt)


# -- worker side -----------------------------------------------------------------------------

def by_id(session: Session, run_id: int, *, for_update: bool = False) -> Run | None:
    """The run a broker message or another row named (for_update: locked until the end of the
    transaction)."""
    if for_update:
        return session.get(Run, run_id, with_for_update=True)
    return session.get(Run, run_id)


def stop_signals(session: Session, run_id: int) -> Row:
    """(cancel_requested, lease_token): what a run in progress polls to know whether to stop."""
    return session.execute(select(Run.cancel_requested, Run.lease_token).where(Run.id == run_id)).one()


def add_metrics(session: Session, rows: list[dict]) -> None:
    session.execute(insert(Metric), rows)


def replace_metrics(session: Session, *, run_id: int, attempt: int, rows: list[dict]) -> None:
    """Writes a batch again after a failed commit: whatever part of it the database may have kept
    (a connection cut after COMMIT was sent) is replaced, so that each (run, attempt, name, step)
    has one row. Only the attempt's own reporter writes these keys."""
    keys = {(row["name"], row["step"]) for row in rows}
    session.execute(delete(Metric).where(Metric.run_id == run_id, Metric.attempt == attempt,
                                         tuple_(Metric.name, Metric.step).in_(keys))
                    .execution_options(synchronize_session=False))
    session.execute(insert(Metric), rows)


def checkpoint(session: Session, run_id: int, step: int) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.step == step))


def latest_checkpoint_step(session: Session, run_id: int) -> int | None:
    return session.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.run_id == run_id))


def delete_checkpoints(session: Session, run_id: int, steps: Sequence[int]) -> None:
    session.execute(delete(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.step.in_(steps)))


def running_worker_names(session: Session) -> set[str]:
    """The workers that hold a run in progress."""
    return set(session.scalars(select(Run.worker_id).where(Run.status == RunStatus.running)))


def devices_held(session: Session) -> list[Row]:
    """(worker_id, device_ids, config, eta_s, estimate, started_at) of every run in progress: what
    each worker's devices are busy with, and for how long."""
    return list(session.execute(select(Run.worker_id, Run.device_ids, Run.config, Run.eta_s, Run.estimate,
                                       Run.started_at)
                                .where(Run.status == RunStatus.running)))


def _fair_order(queue: str):  # noqa: ANN202
    """Queued runs of a queue in fair order. Teams first: the team with the fewest running runs,
    then the one that started a run least recently (never first), then the one whose oldest
    queued run is oldest; within a team, its own priority, then age. A team's priority therefore
    orders only its own runs: no team jumps ahead of another by raising it."""
    running = (select(Run.team_id, func.count(Run.id).label("n")).where(Run.status == RunStatus.running)
               .group_by(Run.team_id).subquery())
    last_start = (select(Run.team_id, func.max(Run.started_at).label("t")).where(Run.started_at.is_not(None))
                  .group_by(Run.team_id).subquery())
    waiting = (Run.status == RunStatus.queued, Run.queue == queue, Run.cancel_requested.is_(False))
    oldest = select(Run.team_id, func.min(Run.id).label("first")).where(*waiting).group_by(Run.team_id).subquery()
    return (
        select(Run)
        .outerjoin(running, running.c.team_id == Run.team_id)
        .outerjoin(last_start, last_start.c.team_id == Run.team_id)
        .join(oldest, oldest.c.team_id == Run.team_id)
        .where(*waiting)
        .order_by(func.coalesce(running.c.n, 0), last_start.c.t.is_not(None), last_start.c.t, oldest.c.first,
                  Run.priority.desc(), Run.id)
    )


def queued_in_fair_order(session: Session, queue: str, limit: int = 50, offset: int = 0) -> list[Run]:
    """One page of the queue in fair order (see `_fair_order`): the first page is who goes next."""
    return list(session.scalars(_fair_order(queue).limit(limit).offset(offset)))


def iter_fair_order(session: Session, queue: str, page: int = 50) -> Iterator[Run]:
    """The whole queue in fair order, read a page at a time: a worker looks past any number of
    runs it cannot take. A queue that changes between pages may show a run twice or skip one;
    the claim is a compare-and-set and the next ticket looks again."""
    offset = 0
    while True:
        rows = queued_in_fair_order(session, queue, limit=page, offset=offset)
        yield from rows
        if len(rows) < page:
            return
        offset += page


def queue_snapshot(session: Session, queue: str) -> tuple[list[Row], list[Row], dict[int, Row]]:
    """What a queued run's place in line is computed from (app/runs/queue_position.py), across
    teams: (queued runs, running runs, {team_id: (running, last_started_at)}). Other teams' rows
    carry no name here and are only ever shown as a count."""
    queued = list(session.execute(
        select(Run.id, Run.team_id, Run.priority, Run.config, Run.estimate)
        .where(Run.status == RunStatus.queued, Run.queue == queue, Run.cancel_requested.is_(False))))
    running = list(session.execute(
        select(Run.id, Run.team_id, Run.worker_id, Run.device_ids, Run.config, Run.eta_s, Run.heartbeat_at,
               Run.started_at, Run.estimate).where(Run.status == RunStatus.running, Run.queue == queue)))
    teams = {row.team_id: row for row in session.execute(
        select(Run.team_id, func.count(Run.id).filter(Run.status == RunStatus.running).label("running"),
               func.max(Run.started_at).label("last_started_at"))
        .where(Run.team_id.in_(sorted({r.team_id for r in queued}) or [-1])).group_by(Run.team_id))}
    return queued, running, teams


def ahead_in_queue(session: Session, queue: str, *, before: datetime) -> tuple[list[Row], list[Row]]:
    """What a task sent to `queue` at `before` waits behind, across teams (shown only as counts
    and times): the runs training on that queue now (eta_s, estimate, started_at) and the runs
    queued earlier (estimate)."""
    running = list(session.execute(
        select(Run.eta_s, Run.estimate, Run.started_at).where(Run.status == RunStatus.running, Run.queue == queue)))
    queued = list(session.execute(
        select(Run.estimate).where(Run.status == RunStatus.queued, Run.queue == queue,
                                   Run.cancel_requested.is_(False), Run.enqueued_at.is_not(None),
                                   Run.enqueued_at <= before)))
    return running, queued


def names(session: Session, *, team_id: int, ids: Sequence[int]) -> dict[int, str]:
    """The names of the team's runs among these ids."""
    if not ids:
        return {}
    return dict(session.execute(select(Run.id, Run.name).where(Run.team_id == team_id, Run.id.in_(list(ids)))).all())


def claim(session: Session, *, run_id: int, worker: str, lease_token: str, now: datetime,
          device_ids: list[int] | None = None) -> bool:
    """Compare-and-set queued -> running: only one worker ever wins a run."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.queued, Run.cancel_requested.is_(False))
        .values(status=RunStatus.running, worker_id=worker, lease_token=lease_token, heartbeat_at=now,
                attempt=Run.attempt + 1, started_at=func.coalesce(Run.started_at, now),
                device_ids=device_ids if device_ids is not None else [0])
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def renew_lease(session: Session, *, run_id: int, lease_token: str, now: datetime) -> bool:
    result = session.execute(
        update(Run).where(Run.id == run_id, Run.lease_token == lease_token, Run.status == RunStatus.running)
        .values(heartbeat_at=now).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def stale_running(session: Session, *, heartbeat_before: datetime) -> list[Run]:
    stmt = select(Run).where(Run.status == RunStatus.running,
                             and_(Run.heartbeat_at.is_not(None), Run.heartbeat_at < heartbeat_before))
    return list(session.scalars(stmt))


def take_back(session: Session, *, run_id: int, lease_token: str, values: dict) -> bool:
    """Compare-and-set on a run in progress whose worker was lost: applies `values` (queued again, or
    failed) only while the run still holds the lease the reconciler saw."""
    result = session.execute(
        update(Run).where(Run.id == run_id, Run.lease_token == lease_token, Run.status == RunStatus.running)
        .values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def waiting_since(session: Session, *, enqueued_before: datetime) -> list[Run]:
    stmt = select(Run).where(Run.status == RunStatus.queued, Run.cancel_requested.is_(False),
                             (Run.enqueued_at.is_(None)) | (Run.enqueued_at < enqueued_before))
    return list(session.scalars(stmt.order_by(Run.id)))


def waiting_for_files(session: Session, *, dataset_id: int | None = None) -> list[Run]:
    """Runs still waiting for their files to be checked: those that train or evaluate on this
    dataset, or all of them (the reconciler's pass), oldest first."""
    stmt = select(Run).where(Run.status == RunStatus.validating_files)
    if dataset_id is not None:
        stmt = stmt.where((Run.dataset_id == dataset_id) | (Run.eval_dataset_id == dataset_id))
    return list(session.scalars(stmt.order_by(Run.id)))


def active_runs(session: Session, *, team_id: int) -> int:
    """Runs of the team that are queued or running (what the team limit counts)."""
    return session.scalar(select(func.count(Run.id)).where(Run.team_id == team_id, Run.status.in_(ACTIVE))) or 0


def lock_team(session: Session, team_id: int) -> None:
    """Serialises submissions of one team until the transaction ends, so two of them cannot
    both see room under the team limit. An UPDATE rather than SELECT ... FOR UPDATE: Postgres
    locks the row either way, and SQLite (which ignores FOR UPDATE) takes its write lock."""
    session.execute(update(Team).where(Team.id == team_id).values(name=Team.name)
                    .execution_options(synchronize_session=False))
