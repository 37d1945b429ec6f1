"""Queries for sweeps. Tenant reads take the team id; the worker-side ones (advance, the
reconciler's pass) work on a sweep id that a run row or a state query handed over."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.runs.repository import ACTIVE  # noqa: F401  (queued or running: what the team limit counts)
from app.models import Evaluation, Run, Sweep

KEY_PREFIX = "studio-sweep"


def child_key(sweep_id: int, index: int) -> str:
    """The idempotency key of grid point `index`: the (team, key) unique constraint makes a
    second submission of the same point impossible, whoever tries it."""
    return f"{KEY_PREFIX}:{sweep_id}:{index}"


def point_index(run: Run) -> int | None:
    prefix, _, index = (run.idempotency_key or "").rpartition(":")
    return int(index) if prefix == f"{KEY_PREFIX}:{run.sweep_id}" and index.isascii() and index.isdigit() else None


def get(session: Session, *, team_id: int, sweep_id: int) -> Sweep | None:
    return session.scalar(select(Sweep).where(Sweep.team_id == team_id, Sweep.id == sweep_id))


def list_sweeps(session: Session, *, team_id: int, before_id: int | None = None, limit: int = 50) -> list[Sweep]:
    stmt = select(Sweep).where(Sweep.team_id == team_id)
    if before_id is not None:
        stmt = stmt.where(Sweep.id < before_id)
    return list(session.scalars(stmt.order_by(Sweep.id.desc()).limit(limit)))


def children(session: Session, *, team_id: int, sweep_id: int, fresh: bool = False) -> list[Run]:
    stmt = select(Run).where(Run.team_id == team_id, Run.sweep_id == sweep_id).order_by(Run.id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return list(session.scalars(stmt))


def child_counts(session: Session, *, team_id: int, sweep_ids: list[int]) -> dict[int, dict[str, int]]:
    """{sweep id: {status: count}} for the list page."""
    if not sweep_ids:
        return {}
    rows = session.execute(select(Run.sweep_id, Run.status, func.count(Run.id))
                           .where(Run.team_id == team_id, Run.sweep_id.in_(sweep_ids))
                           .group_by(Run.sweep_id, Run.status))
    out: dict[int, dict[str, int]] = {}
    for sweep_id, status, n in rows:
        out.setdefault(sweep_id, {})[status.value] = n
    return out


def lock(session: Session, sweep_id: int, *, wait: bool = True) -> Sweep | None:
    """The sweep, re-read under a lock held until the transaction ends: only one advance,
    cancel or promotion of a sweep runs at a time. wait=False returns None when someone else
    holds it (Postgres; they do the work, or the reconciler's next pass does). SQLite has one
    writer at a time: the UPDATE takes its write lock, waiting for it (see lock_team)."""
    fresh = {"populate_existing": True}
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(status=Sweep.status)
                        .execution_options(synchronize_session=False))
        return session.scalar(select(Sweep).where(Sweep.id == sweep_id).execution_options(**fresh))
    stmt = select(Sweep).where(Sweep.id == sweep_id).with_for_update(key_share=True, skip_locked=not wait)
    return session.scalar(stmt.execution_options(**fresh))


def evaluation_scores(session: Session, run_ids: list[int]) -> tuple[dict[int, dict[str, Any]], dict[int, set[str]]]:
    """Per run: the fine-tuned model's scores of its finished evaluations (later ones win), and
    the statuses of all its evaluations (to wait for those still running)."""
    scores: dict[int, dict[str, Any]] = {}
    states: dict[int, set[str]] = {}
    if not run_ids:
        return scores, states
    for e in session.scalars(select(Evaluation).where(Evaluation.run_id.in_(run_ids)).order_by(Evaluation.id)):
        states.setdefault(e.run_id, set()).add(e.status)
        if e.status == "succeeded" and isinstance(e.metrics, dict):
            tuned = e.metrics.get("finetuned", e.metrics)
            scores.setdefault(e.run_id, {}).update(tuned if isinstance(tuned, dict) else {})
    return scores, states


# -- worker side -----------------------------------------------------------------------------

def fresh(session: Session, sweep_id: int) -> Sweep | None:
    """The sweep as the database has it now (not as this session last saw it), without a lock."""
    return session.get(Sweep, sweep_id, populate_existing=True)


def running_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Sweep.id).where(Sweep.status == "running").order_by(Sweep.id)))


def sweep_of_run(session: Session, run_id: int) -> int | None:
    return session.scalar(select(Run.sweep_id).where(Run.id == run_id))
