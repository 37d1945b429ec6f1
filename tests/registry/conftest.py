"""Fixtures for the model registry: a team (owner, member), a base model, a dataset, a golden set
and succeeded runs with an adapter, registered by suffix."""

from __future__ import annotations

import json

import pytest

from app.models import Artifact, RunStatus
from tests.ab.conftest import dataset, model, store, team  # noqa: F401 - the A/B tests' fixtures, shared
from tests.factories import make_api_key
from tests.runs.factories import make_dataset, make_run


@pytest.fixture
def golden(db, store, team):
    return make_dataset(db, store, team.team_id, n_train=6, n_eval=2, name="golden")


def tuned(db, store, team_id: int, dataset, model, *, suffix: str, adapter: dict | None = None, **values):  # noqa: ANN001
    """A succeeded run with an adapter in the store (its adapter_config.json when given)."""
    run = make_run(db, team_id, dataset, model, status=RunStatus.succeeded, suffix=suffix,
                   name=values.pop("name", f"{suffix} run"), **values)
    key = f"teams/{team_id}/jobs/{run.id}/run/adapter"
    if adapter is not None:
        store.write_bytes(f"{key}/adapter_config.json", json.dumps(adapter).encode())
    db.add(Artifact(team_id=team_id, run_id=run.id, kind="adapter", path=key))
    db.commit()
    return run


@pytest.fixture
def owner_key(db, team):
    return make_api_key(db, team.owner, scopes=("read", "write", "admin"))


@pytest.fixture
def member_key(db, team):
    return make_api_key(db, team.member, scopes=("read", "write"))


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}
