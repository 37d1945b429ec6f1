"""Runs through real Celery worker processes on a tiny real model: success with everything
recorded, cancel while running, a SIGKILLed worker replaced by a new one that resumes, Redis
flushed with runs queued, and the web restarted during a run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid

import pytest
from sqlalchemy import func, select

from app.models import Artifact, Checkpoint, Evaluation, Run, RunEvent, RunStatus, Metric, Worker
from tests.factories import make_account, make_api_key
from tests.processes import spawn, stop_all, wait_for
from tests.runs.factories import make_dataset, register_model

SHORT = {"method": "lora", "precision": "fp32", "max_steps": 6, "per_device_batch_size": 2, "grad_accum": 1, "save_strategy": "steps",
         "save_steps": 2, "eval_strategy": "no", "max_length": 96, "warmup": 0.0, "save_total_limit": None}


class Studio:
    """The test's view of a studio: an API client, the database, worker processes."""

    def __init__(self, settings, db, client, headers, tmp_path, env):  # noqa: ANN001
        self.settings, self.db, self.client, self.headers = settings, db, client, headers
        self.tmp_path, self.env, self.procs = tmp_path, env, []

    def start_worker(self) -> subprocess.Popen:
        name = f"train-{uuid.uuid4().hex[:6]}@test"
        proc = spawn(["worker", "--queues", "train,default", "--name", name], self.env,
                     self.tmp_path / f"{name}.log")
        proc.studio_name = name
        self.procs.append(proc)
        wait_for(lambda: self.worker_row(name), 90, f"worker {name} to start")
        return proc

    def worker_row(self, name: str):  # noqa: ANN201
        self.db.expire_all()
        return self.db.scalar(select(Worker).where(Worker.name == name))

    def submit(self, dataset, model, **overrides) -> int:  # noqa: ANN001
        r = self.client.post("/api/v1/runs", headers=self.headers, json={
            "dataset_id": dataset.id, "base_model_id": model.id, "hyperparameters": {**SHORT, **overrides}})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def run(self, run_id: int) -> Run:
        self.db.expire_all()
        return self.db.get(Run, run_id)

    def wait_status(self, run_id: int, status: RunStatus, timeout: float = 180) -> Run:
        def check():  # noqa: ANN202
            run = self.run(run_id)
            if run.status in (RunStatus.failed,) and status != RunStatus.failed:
                pytest.fail(f"run failed: {run.error_message}\n{self.logs()}")
            return run if run.status == status else None

        return wait_for(check, timeout, f"run {run_id} to be {status.value}")

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in self.tmp_path.glob("*@test.log"))

    def stop_all(self) -> None:
        stop_all(self.procs)


@pytest.fixture(params=["sqlite-broker", "redis"])
def broker(request, settings):
    """The embedded SQLite broker or real Redis (tests may narrow it with indirect parametrize)."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else settings.broker_url


@pytest.fixture
def studio(settings, broker, db, client, tmp_path):
    settings.broker_url = broker
    from app import queue

    queue._celery.cache_clear()
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_BROKER_URL": broker, "STUDIO_SECRET_KEY": settings.secret_key, "HF_HUB_OFFLINE": "1",
           "STUDIO_HEARTBEAT_TIMEOUT_S": "8", "STUDIO_RECONCILE_EVERY_S": "1", "STUDIO_REQUEUE_AFTER_S": "3",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    os.environ["STUDIO_BROKER_URL"] = broker  # the web side's producer
    acc = make_account(db)
    s = Studio(settings, db, client, {"Authorization": f"Bearer {make_api_key(db, acc)}"}, tmp_path, env)
    s.account = acc
    yield s
    s.stop_all()
    os.environ.pop("STUDIO_BROKER_URL", None)
    queue._celery.cache_clear()


@pytest.fixture
def model_and_data(studio, db, tiny_model_dir, settings):
    from app.storage import ArtifactStore

    model = register_model(db, tiny_model_dir, name="Tiny Llama")
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), studio.account.team_id, n_train=16, n_eval=4)
    return model, dataset


@pytest.mark.slow
def test_submit_runs_to_success_with_everything_recorded(studio, model_and_data, db, settings):
    model, dataset = model_and_data
    studio.start_worker()
    started = time.monotonic()
    run_id = studio.submit(dataset, model)
    run = studio.wait_status(run_id, RunStatus.succeeded)
    print(f"\nsubmit -> succeeded in {time.monotonic() - started:.1f}s")
    assert run.current_step == 6 and run.attempt == 1 and run.result["global_step"] == 6
    losses = db.scalars(select(Metric.value).where(Metric.run_id == run_id, Metric.name == "loss")).all()
    assert len(losses) == 6
    steps = db.scalars(select(Checkpoint.step).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step)).all()
    assert steps == [2, 4, 6]
    kinds = set(db.scalars(select(Artifact.kind).where(Artifact.run_id == run_id)))
    assert {"adapter", "model_card", "log"} <= kinds and "merged" not in kinds  # merged: built on demand
    adapter = db.scalar(select(Artifact).where(Artifact.run_id == run_id, Artifact.kind == "adapter"))
    assert (settings.artifact_dir / adapter.path / "adapter_model.safetensors").is_file() and adapter.size_bytes > 0
    messages = [e.message for e in db.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id))]
    assert messages[0].startswith("Queued") and messages[1].startswith("Running on")
    assert any(m.startswith("Succeeded after 6 steps") for m in messages)  # evaluation events may follow

    def evaluated():  # noqa: ANN202
        db.expire_all()
        row = db.scalar(select(Evaluation).where(Evaluation.run_id == run_id))
        return row if row is not None and row.status in ("succeeded", "failed") else None

    evaluation = wait_for(evaluated, 120, "the automatic evaluation")
    assert evaluation.status == "succeeded", evaluation.error_message
    assert set(evaluation.metrics) == {"base", "finetuned"} and evaluation.details["split"] == "eval"
    log = studio.client.get(f"/api/v1/runs/{run_id}/log", headers=studio.headers).text
    assert "Trainable parameters" in log and "checkpoint at step 6" in log
    zipped = studio.client.get(f"/api/v1/runs/{run_id}/artifacts/{adapter.id}/download", headers=studio.headers)
    assert zipped.status_code == 200 and zipped.content[:2] == b"PK"


@pytest.mark.slow
def test_cancel_while_running_stops_within_seconds(studio, model_and_data):
    model, dataset = model_and_data
    studio.start_worker()
    run_id = studio.submit(dataset, model, max_steps=400)
    wait_for(lambda: studio.run(run_id).current_step >= 2, 120, "the run to make progress")
    asked = time.monotonic()
    r = studio.client.post(f"/api/v1/runs/{run_id}/cancel", headers=studio.headers)
    assert r.status_code == 200 and r.json()["cancel_requested"]
    run = studio.wait_status(run_id, RunStatus.cancelled, timeout=30)
    took = time.monotonic() - asked
    print(f"\ncancel -> cancelled in {took:.1f}s at step {run.current_step}")
    assert took < 15 and run.current_step < 400
    assert any("Cancelled at step" in e["message"] for e in
               studio.client.get(f"/api/v1/runs/{run_id}/events", headers=studio.headers).json())


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["sqlite-broker"], indirect=True)  # the reconciler resumes, not the broker
def test_sigkilled_worker_is_replaced_and_the_run_resumes(studio, model_and_data, db, broker):
    model, dataset = model_and_data
    first = studio.start_worker()
    # ~0.05 s a step: 200 steps leave the kill ~9 seconds of training to land in, even on a busy machine
    run_id = studio.submit(dataset, model, max_steps=200, save_steps=8, save_total_limit=2)
    wait_for(lambda: db.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.run_id == run_id)), 120,
             "a first checkpoint")
    os.killpg(first.pid, signal.SIGKILL)
    studio.start_worker()
    run = studio.wait_status(run_id, RunStatus.succeeded, timeout=240)
    assert run.attempt == 2 and run.result["global_step"] == 200
    log = studio.client.get(f"/api/v1/runs/{run_id}/log", headers=studio.headers).text
    resumed_from = int(re.search(r"Resuming from \S*checkpoint-(\d+)", log).group(1))
    assert 8 <= resumed_from < 200, log
    second = db.scalars(select(Metric.step).where(Metric.run_id == run_id, Metric.attempt == 2, Metric.name == "loss")).all()
    assert min(second) == resumed_from + 1 and max(second) == 200  # resumed, not restarted
    events = [e.message for e in db.scalars(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id))]
    assert any("stopped answering" in m for m in events)
    assert sum(m.startswith("Running on") for m in events) == 2


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_runs_queued_when_redis_is_flushed_still_run(studio, model_and_data, broker):
    import redis

    model, dataset = model_and_data
    ids = [studio.submit(dataset, model, max_steps=2, save_strategy="no") for _ in range(2)]
    redis.Redis.from_url(broker).flushdb()
    studio.start_worker()
    for run_id in ids:
        studio.wait_status(run_id, RunStatus.succeeded, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_web_restart_during_a_run_loses_nothing(studio, model_and_data, app, broker):
    from fastapi.testclient import TestClient

    from app.main import create_app

    model, dataset = model_and_data
    studio.start_worker()
    run_id = studio.submit(dataset, model, max_steps=150, save_strategy="no")
    first = wait_for(lambda: studio.client.get(f"/api/v1/runs/{run_id}/metrics?names=loss",
                                               headers=studio.headers).json()["series"].get("loss"), 120, "progress")
    first = studio.client.get(f"/api/v1/runs/{run_id}/metrics?names=loss", headers=studio.headers).json()
    assert studio.run(run_id).status == RunStatus.running
    studio.client.close()  # the web process goes away mid-run
    with TestClient(create_app(studio.settings)) as restarted:
        run = studio.wait_status(run_id, RunStatus.succeeded, timeout=180)
        rest = restarted.get(f"/api/v1/runs/{run_id}/metrics?names=loss&after={first['last_id']}",
                             headers=studio.headers).json()
    before = [s for s, _ in first["series"]["loss"]]
    after = [s for s, _ in rest["series"].get("loss", [])]
    assert after, "the run went on after the restart and the new view saw it"
    assert before + after == list(range(1, 151)) and run.current_step == 150
