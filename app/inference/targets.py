"""What the inference process should load for a base model or a fine-tuned run: directories
resolved from the team's database rows, never from what a caller sent."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.api.openai import repository as openai_repo
from app.errors import NotFound
from app.inference.client import Target
from app.models import BaseModel, Checkpoint, Run
from app.models_registry import repository as models_repo
from app.storage import Store


STORE_SCHEME = "artifact:"  # a directory in a remote store: the inference process downloads it


def stored_directory(store: Store, key: str) -> str:
    """What the inference process loads for a directory in the store: its path when the store
    is a directory on this host, else `artifact:<key>` (fetched into the process's cache)."""
    local = store.local_path(key)
    return str(local) if local is not None else f"{STORE_SCHEME}{key}"


def base_target(model: BaseModel) -> Target:
    return Target(base=model.path)


def run_target(db: Session, store: Store, *, team_id: int, run: Run) -> tuple[Target, Target]:
    """(the base model, the fine-tuned model) of a run: its adapter on the base, or its full model."""
    output = openai_repo.servable_output(db, team_id=team_id, run_id=run.id)
    base = models_repo.get_visible(db, team_id=team_id, model_id=run.base_model_id)
    if output is None or base is None:
        raise NotFound("This fine-tuned model has no trained weights to serve.", param="model")
    if output.kind == "model":
        return base_target(base), Target(base=stored_directory(store, output.path))
    return base_target(base), Target(base=base.path, adapter=stored_directory(store, output.path))


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def checkpoint_target(db: Session, store: Store, *, team_id: int, run: Run, checkpoint: Checkpoint) -> Target:
    """A checkpoint of a run, served as a model: its LoRA adapter on the base model, or (full
    fine-tuning) its own weights. safetensors only: a checkpoint without them is not served."""
    base = models_repo.get_visible(db, team_id=team_id, model_id=run.base_model_id)
    if base is None:
        raise NotFound("This checkpoint's base model is no longer available.", param="model")
    files = {name for name, _ in store.list_tree(checkpoint.path)}
    if all(f in files for f in ADAPTER_FILES):
        return Target(base=base.path, adapter=stored_directory(store, checkpoint.path))
    if "config.json" in files and any(f.endswith(".safetensors") and "/" not in f for f in files):
        return Target(base=stored_directory(store, checkpoint.path))
    raise NotFound(f"The checkpoint at step {checkpoint.step} has no safetensors weights to serve.", param="model")
