"""A team (owner, member, viewer) with a base model, a succeeded run with an adapter and one
checkpoint: three model names the playground accepts."""

from __future__ import annotations

import pytest

from app.api.openai import names
from app.models import Checkpoint
from app.storage import ArtifactStore
from tests.ab.conftest import Team, add_member, succeeded_run
from tests.factories import make_account
from tests.runs.factories import make_dataset, register_model, write_model_dir
from app.models import Role


@pytest.fixture
def store(settings):
    return ArtifactStore(settings.artifact_dir)


@pytest.fixture
def team(db) -> Team:
    owner = make_account(db, team_name="Nuage")
    return Team(owner=owner, member=add_member(db, owner.team_id, Role.member),
                viewer=add_member(db, owner.team_id, Role.viewer))


@pytest.fixture
def model(db, tmp_path):
    return register_model(db, write_model_dir(tmp_path / "tiny-model"), name="Tiny Base")


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
