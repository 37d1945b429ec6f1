"""Base models a team can fine-tune."""

from __future__ import annotations

from pydantic import BaseModel as Schema
from pydantic import ConfigDict

from fastapi import APIRouter

from app.deps import CurrentPrincipal, SessionDep
from app.errors import NotFound
from app.models_registry import repository as repo

api = APIRouter(prefix="/api/v1", tags=["models"])


class BaseModelOut(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    display_name: str
    source: str
    status: str
    architecture: str
    parameter_count: int
    context_length: int
    license: str
    shared: bool


def _out(row) -> BaseModelOut:  # noqa: ANN001
    return BaseModelOut.model_validate({**{k: getattr(row, k) for k in BaseModelOut.model_fields if k != "shared"},
                                        "status": row.status.value, "shared": row.team_id is None})


@api.get("/models", response_model=list[BaseModelOut])
def list_models(db: SessionDep, p: CurrentPrincipal) -> list[BaseModelOut]:
    p.require("read")
    return [_out(m) for m in repo.visible(db, p.team_id)]


@api.get("/models/{model_id}", response_model=BaseModelOut)
def get_model(model_id: int, db: SessionDep, p: CurrentPrincipal) -> BaseModelOut:
    p.require("read")
    row = repo.get_visible(db, team_id=p.team_id, model_id=model_id)
    if row is None:
        raise NotFound("No such base model.")
    return _out(row)
