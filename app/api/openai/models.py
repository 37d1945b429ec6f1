"""`/v1/models`: the base models a team can use and its fine-tuned models (succeeded runs)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from app.api.openai import names
from app.api.openai import repository as repo
from app.api.openai.schemas import ModelList, ModelOut
from app.deps import CurrentPrincipal, SessionDep
from app.errors import NotFound
from app.inference import targets
from app.inference.client import Target
from app.models import BaseModel, Run, ModelStatus
from app.models_registry import repository as models_repo
from app.storage import Store

router = APIRouter(tags=["openai: models"])


def _base_out(row: BaseModel) -> ModelOut:
    owner = "studio" if row.team_id is None else f"team-{row.team_id}"
    return ModelOut(id=names.base_name(row), created=names.unix(row.created_at), owned_by=owner)


def _tuned_out(run: Run, slug: str) -> ModelOut:
    return ModelOut(id=names.fine_tuned_name(run, slug), created=names.unix(run.finished_at or run.created_at),
                    owned_by=f"team-{run.team_id}")


def team_models(db: Session, team_id: int) -> list[ModelOut]:
    bases = models_repo.visible(db, team_id)
    slugs = {b.id: b.slug for b in models_repo.visible(db, team_id, ready_only=False)}
    tuned = [_tuned_out(j, slugs[j.base_model_id]) for j in repo.servable_runs(db, team_id=team_id)
             if j.base_model_id in slugs]
    return [_base_out(b) for b in bases] + tuned


def resolve(db: Session, store: Store, team_id: int, name: str) -> Target:
    """The directories to serve for a model name of this team: from its rows, never from input."""
    if name.startswith("ft:"):
        run = names.fine_tuned_run(db, team_id=team_id, name=name)
        return targets.run_target(db, store, team_id=team_id, run=run)[1]
    row = names.base_model(db, team_id=team_id, name=name)
    if row.status != ModelStatus.ready:
        raise NotFound(f"The model '{name}' is not ready ({row.status.value}).", param="model")
    return targets.base_target(row)


@router.get("/models", response_model=ModelList)
def list_models(db: SessionDep, p: CurrentPrincipal) -> ModelList:
    p.require("read")
    return ModelList(data=team_models(db, p.team_id))


@router.get("/models/{model}", response_model=ModelOut)
def retrieve_model(model: str, db: SessionDep, p: CurrentPrincipal) -> ModelOut:
    p.require("read")
    if model.startswith("ft:"):
        run = names.fine_tuned_run(db, team_id=p.team_id, name=model)
        if repo.servable_output(db, team_id=p.team_id, run_id=run.id) is None:
            raise NotFound("This model does not exist or you do not have access to it.", param="model")
        return _tuned_out(run, model.split(":")[1])
    return _base_out(names.base_model(db, team_id=p.team_id, name=model))
