"""Read queries for the run pages: names for the runs list, filter choices, curve points for one
run or many. Every query of tenant data takes the team id; metric queries take run ids that a
team-scoped query returned."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ARRAY, Integer, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from app.models import BaseModel, Dataset, DatasetStatus, Run, Membership, Metric, User


def runs_by_ids(session: Session, *, team_id: int, ids: Sequence[int]) -> list[Run]:
    found = {j.id: j for j in session.scalars(select(Run).where(Run.team_id == team_id, Run.id.in_(list(ids))))}
    return [found[i] for i in ids if i in found]


def dataset_names(session: Session, *, team_id: int, ids: set[int]) -> dict[int, str]:
    rows = session.execute(select(Dataset.id, Dataset.name, Dataset.version)
                           .where(Dataset.team_id == team_id, Dataset.id.in_(ids))) if ids else []
    return {i: f"{name} v{version}" for i, name, version in rows}


def model_names(session: Session, *, team_id: int, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(BaseModel.id, BaseModel.display_name).where(
        BaseModel.id.in_(ids), or_(BaseModel.team_id.is_(None), BaseModel.team_id == team_id)))
    return dict(rows.all())


def member_names(session: Session, *, team_id: int) -> dict[int, str]:
    rows = session.execute(select(User.id, User.name, User.email).join(Membership, Membership.user_id == User.id)
                           .where(Membership.team_id == team_id).order_by(User.email))
    return {i: name or email for i, name, email in rows}


def trainable_datasets(session: Session, *, team_id: int) -> list[Dataset]:
    """The team's validated fine-tuning datasets, newest first."""
    stmt = (select(Dataset).where(Dataset.team_id == team_id, Dataset.status == DatasetStatus.valid,
                                  Dataset.purpose == "fine-tune").order_by(Dataset.id.desc()).limit(200))
    return list(session.scalars(stmt))


def datasets_in_runs(session: Session, *, team_id: int) -> list[tuple[int, str, int]]:
    stmt = (select(Dataset.id, Dataset.name, Dataset.version).where(Dataset.team_id == team_id,
                                                                   Dataset.purpose == "fine-tune")
            .order_by(Dataset.name, Dataset.version))
    return list(session.execute(stmt).all())


def curve_rows(session: Session, run_ids: Sequence[int], names: Sequence[str], *,
               up_to_id: int | None = None) -> list[tuple[int, str, int, float]]:
    """(run_id, name, step, value) of the given curves, in step order, as plain tuples."""
    if not run_ids:
        return []
    stmt = (select(Metric.run_id, Metric.name, Metric.step, Metric.value)
            .where(Metric.run_id.in_(list(run_ids)), Metric.name.in_(list(names)))
            .order_by(Metric.run_id, Metric.name, Metric.step, Metric.id))
    if up_to_id is not None:
        stmt = stmt.where(Metric.id <= up_to_id)
    return list(session.execute(stmt).all())


def thinned_curve_rows(session: Session, last_steps: dict[int, int], names: Sequence[str],
                       dense: Sequence[str], max_points: int) -> list[tuple[int, str, int, float]]:
    """Like curve_rows, but the dense curves (logged every step) come thinned to about max_points
    per run: every k-th step and the last k steps, asked for by step so that the (run, name,
    step) index finds them without reading the rest. Sparse curves (evaluation) come whole."""
    if not last_steps:
        return []
    cols = (Metric.run_id, Metric.name, Metric.step, Metric.value)
    order = (Metric.run_id, Metric.name, Metric.step, Metric.id)
    arms = []
    for run_id, last in last_steps.items():
        k = max(1, -(-last // max_points))
        steps = sorted(set(range(k, last + 1, k)) | set(range(max(1, last - k + 1), last + 1)))
        arms.append(and_(Metric.run_id == run_id, _one_of(session, Metric.step, steps)) if k > 1
                    else Metric.run_id == run_id)
    thinned = select(*cols).where(Metric.name.in_(list(dense)), or_(*arms))
    sparse = [n for n in names if n not in dense]
    rows = list(session.execute(thinned).all())
    if sparse:
        rows += session.execute(select(*cols).where(Metric.run_id.in_(list(last_steps)),
                                                    Metric.name.in_(sparse)).order_by(*order)).all()
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return rows


def _one_of(session: Session, column, values: list[int]):  # noqa: ANN001, ANN202
    """column IN values; on PostgreSQL as = ANY(one array parameter), cheap to send and to plan."""
    if session.get_bind().dialect.name == "postgresql":
        return column == func.any(bindparam(None, values, type_=ARRAY(Integer)))
    return column.in_(values)


def last_metric_id(session: Session, run_id: int) -> int:
    return session.scalar(select(func.max(Metric.id)).where(Metric.run_id == run_id)) or 0


def recent_runs(session: Session, *, team_id: int, limit: int = 5) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.team_id == team_id).order_by(Run.id.desc()).limit(limit)))
