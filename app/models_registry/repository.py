"""Queries for base models: shared ones (team_id NULL) plus the team's own."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.models import BaseModel, Run, ModelStatus


def visible(session: Session, team_id: int, *, ready_only: bool = True) -> list[BaseModel]:
    stmt = select(BaseModel).where(or_(BaseModel.team_id.is_(None), BaseModel.team_id == team_id))
    if ready_only:
        stmt = stmt.where(BaseModel.status == ModelStatus.ready, BaseModel.is_enabled.is_(True))
    return list(session.scalars(stmt.order_by(BaseModel.parameter_count, BaseModel.id)))


def get_visible(session: Session, *, team_id: int, model_id: int) -> BaseModel | None:
    stmt = select(BaseModel).where(
        BaseModel.id == model_id, or_(BaseModel.team_id.is_(None), BaseModel.team_id == team_id)
    )
    return session.scalar(stmt)


def of_run(session: Session, run: Run) -> BaseModel | None:
    """The base model of a run that was found through its team."""
    return session.get(BaseModel, run.base_model_id)


def by_slug(session: Session, slug: str, team_id: int | None) -> BaseModel | None:
    cond = BaseModel.team_id.is_(None) if team_id is None else BaseModel.team_id == team_id
    return session.scalar(select(BaseModel).where(BaseModel.slug == slug, cond))


def all_paths(session: Session) -> list[str]:
    """The directory of every registered model, of every team (the inference process serves
    only models under the stores or registered here)."""
    return list(session.scalars(select(BaseModel.path)))
