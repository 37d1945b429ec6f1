from __future__ import annotations

import pytest

from app.storage import ArtifactStore
from tests.factories import make_account, make_api_key
from tests.runs.factories import make_dataset, register_model, write_model_dir


@pytest.fixture
def store(settings):
    return ArtifactStore(settings.artifact_dir)


@pytest.fixture
def team(db):
    acc = make_account(db)
    return acc, {"Authorization": f"Bearer {make_api_key(db, acc, scopes=('read', 'write'))}"}


@pytest.fixture
def model(db, tmp_path):
    return register_model(db, write_model_dir(tmp_path / "tiny-model"))


@pytest.fixture
def dataset(db, store, team):
    return make_dataset(db, store, team[0].team_id)
