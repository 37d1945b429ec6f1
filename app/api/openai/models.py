"""`/v1/models`: the base models a team can use, its fine-tuned models (succeeded runs) and the
aliases of its registry (support-bot:prod); `resolve` also takes versions (support-bot:v3)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from app.api.openai import names
from app.api.openai import repository as repo
from app.api.openai.files import delete_after_commit
from app.api.openai.schemas import ModelDeletedOut, ModelList, ModelOut
from app.deps import CurrentPrincipal, SessionDep
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.runs import service as runs_service
from app.inference import targets
from app.inference.client import Target
from app.models import BaseModel, Checkpoint, Run, ModelStatus
from app.models_registry import repository as models_repo
from app.registry import repository as registry_repo
from app.storage import Store
from app.registry import lookup

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
    return [_base_out(b) for b in bases] + tuned + alias_models(db, team_id)


def alias_models(db: Session, team_id: int) -> list[ModelOut]:
    """The team's aliases that point at a servable version (support-bot:prod), as model ids."""
    servable = {r.id for r in repo.servable_runs(db, team_id=team_id)}
    versions = {v.id: v for v in registry_repo.versions(db, team_id=team_id)}
    out = []
    for alias in registry_repo.aliases(db, team_id=team_id):
        version = versions.get(alias.version_id)
        if version is not None and version.run_id in servable:
            out.append(ModelOut(id=f"{alias.name}:{alias.alias}", created=names.unix(alias.moved_at or alias.created_at),
                                owned_by=f"team-{team_id}"))
    return out


def _checkpoint(db: Session, team_id: int, name: str) -> tuple[Run, Checkpoint]:
    """The run and checkpoint behind `ft:...:ckpt-step-<n>`, listed by GET .../checkpoints."""
    run, step = names.checkpoint_run(db, team_id=team_id, name=name)
    row = repo.checkpoint(db, team_id=team_id, run_id=run.id, step=step)
    if row is None:
        raise NotFound(f"This job has no checkpoint at step {step} (GET /v1/fine_tuning/jobs/"
                       f"{names.encode('ftjob', run.id)}/checkpoints lists them).", param="model")
    return run, row


def resolve(db: Session, store: Store, team_id: int, name: str) -> Target:
    """The directories to serve for a model name of this team: from its rows, never from input."""
    if names.is_checkpoint(name):
        run, checkpoint = _checkpoint(db, team_id, name)
        return targets.checkpoint_target(db, store, team_id=team_id, run=run, checkpoint=checkpoint)
    registered = lookup.registered_run(db, team_id=team_id, name=name)  # support-bot:v3, support-bot:prod
    if registered is not None:
        return targets.run_target(db, store, team_id=team_id, run=registered)[1]
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
    if names.is_checkpoint(model):
        run, checkpoint = _checkpoint(db, p.team_id, model)
        return ModelOut(id=model, created=names.unix(checkpoint.created_at), owned_by=f"team-{run.team_id}")
    registered = lookup.registered_run(db, team_id=p.team_id, name=model)
    if registered is not None:
        if repo.servable_output(db, team_id=p.team_id, run_id=registered.id) is None:
            raise NotFound("This model does not exist or you do not have access to it.", param="model")
        return ModelOut(id=model, created=names.unix(registered.finished_at or registered.created_at),
                        owned_by=f"team-{registered.team_id}")
    if model.startswith("ft:"):
        run = names.fine_tuned_run(db, team_id=p.team_id, name=model)
        if repo.servable_output(db, team_id=p.team_id, run_id=run.id) is None:
            raise NotFound("This model does not exist or you do not have access to it.", param="model")
        return _tuned_out(run, model.split(":")[1])
    return _base_out(names.base_model(db, team_id=p.team_id, name=model))


@router.delete("/models/{model}", response_model=ModelDeletedOut)
def delete_model(request: Request, model: str, db: SessionDep, p: CurrentPrincipal) -> ModelDeletedOut:
    """Deletes a fine-tuned model of the team: its weights (adapter or model, merged copy) and its
    checkpoints leave the store; the job and its log stay. Needs the 'admin' scope (OpenAI asks
    for the owner role); base models and checkpoints are refused, as is a model still in use."""
    p.require("admin")
    if names.is_checkpoint(model):
        _checkpoint(db, p.team_id, model)  # a 404 for a name that is not the team's
        raise InvalidInput("A checkpoint is deleted with its fine-tuned model: delete "
                           f"'{model.rpartition(names.CHECKPOINT)[0]}'.", param="model")
    if not model.startswith("ft:"):
        names.base_model(db, team_id=p.team_id, name=model)  # a 404 for a model the team cannot see
        raise Forbidden("Only a fine-tuned model can be deleted here; base models are managed on the "
                        "Models page by an administrator.", param="model")
    run = names.fine_tuned_run(db, team_id=p.team_id, name=model)
    weights = repo.weights(db, team_id=p.team_id, run_id=run.id)
    if not any(a.kind in repo.SERVABLE for a in weights):
        raise NotFound("This model does not exist or you do not have access to it.", param="model")
    version = registry_repo.version_of_run(db, team_id=p.team_id, run_id=run.id)
    held = registry_repo.aliases_on(db, team_id=p.team_id, version_id=version.id) if version else []
    if held:
        raise Conflict(f"This model is released as {', '.join(f'{a.name}:{a.alias}' for a in held)}: move or roll "
                       "back those aliases first (Models page), then delete it.", param="model")
    busy = repo.busy_with(db, team_id=p.team_id, run_id=run.id)
    if busy:
        raise Conflict(f"This model is still in use by {', '.join(busy)}: wait for it to finish or cancel it, "
                       "then delete the model.", param="model")
    checkpoints = repo.checkpoints_of(db, run_id=run.id)
    keys = [a.path for a in weights if a.kind != "model_card"] + [c.path for c in checkpoints]
    for row in (*weights, *checkpoints):
        db.delete(row)
    who = p.user.email if p.user is not None else f"API key {p.api_key.prefix if p.api_key else ''}".strip()
    runs_service.add_event(db, run, "model_deleted", f"The fine-tuned model {model} was deleted by {who}: its "
                           "weights and checkpoints are gone; the run's record and log are kept.",
                           data={"model": model, "checkpoints": [c.step for c in checkpoints]})
    delete_after_commit(db, request.app.state.store, keys)
    return ModelDeletedOut(id=model, deleted=True)
