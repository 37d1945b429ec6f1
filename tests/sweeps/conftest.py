from __future__ import annotations

import pytest

from app.models import Run, RunStatus, utcnow
from app.sweeps import service
from tests.runs.conftest import dataset, model, store, team  # noqa: F401  (shared fixtures)

SPACE = {"learning_rate": [1e-4, 3e-4], "lora_r": [8, 16]}


@pytest.fixture
def make_sweep(client, team, dataset, model, sent):  # noqa: F811
    """POST /api/v1/sweeps with a 2 x 2 grid (overridable); returns the response body."""
    def make(**body) -> dict:
        payload = {"dataset_id": dataset.id, "base_model_id": model.id, "search_space": SPACE,
                   "hyperparameters": {"max_steps": 4}, "name": "lr-rank", **body}
        r = client.post("/api/v1/sweeps", json=payload, headers=team[1])
        assert r.status_code == 201, r.text
        return r.json()

    return make


@pytest.fixture
def finish(db, settings):
    """Ends a child as a worker would (the outcome committed), then advances its sweep."""
    def end(run_id: int, status: RunStatus = RunStatus.succeeded, **metrics: float) -> None:
        db.expire_all()
        run = db.get(Run, run_id)
        run.status, run.finished_at = status, utcnow()
        if status == RunStatus.succeeded:
            run.result = {"global_step": 4, "metrics": {"train_loss": 2.0, **metrics}}
        db.commit()
        service.advance(db, run.sweep_id, settings=settings)
        db.commit()

    return end
