"""A team (owner, member, viewer) with a base model, a succeeded run with an adapter and one
checkpoint: three model names the playground accepts."""

from __future__ import annotations

import pytest

from app.api.openai import names
from app.models import Checkpoint
from tests.ab.conftest import model, store, team  # noqa: F401 - the A/B tests' fixtures, shared
from tests.ab.conftest import succeeded_run
from tests.runs.factories import make_dataset


@pytest.fixture
def run(db, store, team, model):
    run = succeeded_run(db, team.team_id, make_dataset(db, store, team.team_id), model)
    path = f"teams/{team.team_id}/jobs/{run.id}/run/checkpoint-2"
    for name in ("adapter_config.json", "adapter_model.safetensors"):  # what a LoRA checkpoint is served from
        store.write_bytes(f"{path}/{name}", b"{}")
    db.add(Checkpoint(run_id=run.id, step=2, path=path))
    db.commit()
    return run


@pytest.fixture
def model_names(run, model) -> dict:
    tuned = names.fine_tuned_name(run, model.slug)
    return {"base": names.base_name(model), "tuned": tuned, "checkpoint": f"{tuned}{names.CHECKPOINT}2"}
