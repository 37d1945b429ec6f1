"""The must-show: a real 4-run sweep (2 learning rates x 2 LoRA ranks) on the tiny model through
real Celery worker processes completes, never has more than max_parallel runs active, and picks
the run with the lowest evaluation loss."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app.models import Run, RunStatus, Sweep
from tests.processes import wait_for
from tests.worker.conftest import builtin_dir, tiny_model_dir, tokenizer  # noqa: F401  (fixtures)
from tests.worker.test_run_lifecycle import broker, model_and_data, studio  # noqa: F401  (fixtures)

FAST = {"method": "lora", "max_steps": 4, "per_device_batch_size": 2, "grad_accum": 1, "save_strategy": "no",
        "eval_strategy": "no", "max_length": 96, "warmup": 0.0}


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["sqlite-broker"], indirect=True)
def test_a_four_run_sweep_completes_and_picks_the_lowest_eval_loss(studio, model_and_data, db, broker):  # noqa: F811
    model, dataset = model_and_data
    studio.env.update(STUDIO_EVAL_SAMPLES="1", STUDIO_EVAL_MAX_NEW_TOKENS="4")  # keep the after-run evaluation short
    studio.start_worker()
    studio.start_worker()
    started = time.monotonic()
    r = studio.client.post("/api/v1/sweeps", headers=studio.headers, json={
        "dataset_id": dataset.id, "base_model_id": model.id, "name": "tiny sweep", "max_parallel": 2,
        "search_space": {"learning_rate": [1e-4, 2e-3], "lora_r": [4, 8]}, "hyperparameters": FAST})
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    assert r.json()["counts"] == {"queued": 2, "waiting": 2}

    most_active = 0

    def finished() -> Sweep | None:
        nonlocal most_active
        db.expire_all()
        children = db.scalars(select(Run).where(Run.sweep_id == sweep_id)).all()
        most_active = max(most_active, sum(j.status in (RunStatus.queued, RunStatus.running) for j in children))
        sweep = db.get(Sweep, sweep_id)
        if sweep.status == "failed":
            pytest.fail(f"sweep failed: {sweep.error_message}\n{studio.logs()}")
        return sweep if sweep.status == "succeeded" else None

    sweep = wait_for(finished, 240, "the sweep to finish", interval=0.5)
    print(f"\n4-run sweep -> succeeded in {time.monotonic() - started:.1f}s")
    children = db.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)).all()
    assert len(children) == 4 and all(j.status == RunStatus.succeeded for j in children)
    assert most_active <= 2
    assert sorted((j.sweep_params["learning_rate"], j.sweep_params["lora_r"]) for j in children) == [
        (1e-4, 4), (1e-4, 8), (2e-3, 4), (2e-3, 8)]
    for run in children:
        assert run.config["learning_rate"] == run.sweep_params["learning_rate"]
        assert run.config["lora_r"] == run.sweep_params["lora_r"]
    losses = {j.id: j.result["metrics"]["eval_loss"] for j in children}
    assert len(set(losses.values())) > 1, "the grid points trained differently"
    assert sweep.best_run_id == min(losses, key=losses.get)

    body = studio.client.get(f"/api/v1/sweeps/{sweep_id}", headers=studio.headers).json()
    assert body["runs"][0]["run_id"] == sweep.best_run_id and body["runs"][0]["is_best"]
    assert [r_["value"] for r_ in body["runs"]] == sorted(losses.values())
    r = studio.client.post(f"/api/v1/sweeps/{sweep_id}/promote", headers=studio.headers)
    assert r.status_code == 200 and r.json()["promoted_run_id"] == sweep.best_run_id
