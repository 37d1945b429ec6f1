"""A studio on PostgreSQL + Redis keeps a run going while Postgres, then Redis, is restarted.

Real processes (a web server and a train worker) against a private PostgreSQL and a private
Redis (tests/services.py: the shared servers are never restarted). A run trains; Postgres is
stopped for longer than the lease timeout and started again, then Redis is (losing every
message, as a Redis without persistence does). The run finishes on its first attempt with
exactly one metric row per (name, step); the web answers throughout, /readyz reports each
outage while it lasts and recovers; a run submitted after the restarts runs too.

    PYTHONPATH=$PWD pytest -q tests/worker/test_service_restarts.py
"""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.models import Checkpoint, Metric, Run, RunEvent, RunStatus, Worker
from app.storage import ArtifactStore
from tests.factories import make_account, make_api_key
from tests.processes import Processes, free_port, wait_for
from tests.runs.factories import make_dataset, register_model
from tests.services import migrated_database, private_postgres, private_redis  # noqa: F401  (fixtures)

HEARTBEAT_TIMEOUT_S = 5  # short, so that the Postgres outage below outlasts it
POSTGRES_DOWN_S = HEARTBEAT_TIMEOUT_S + 2
REDIS_DOWN_S = 2
# The run must still be going once both outages are over, whatever the machine's speed (a step took
# 0.16 s on one 2-core CPU and under 0.04 s on another, where a fixed 360 steps ended too soon): a
# short run first measures the step time, and the long run is given enough steps to last
# OUTAGES_S x SPAN_FACTOR, in multiples of SAVE_STEPS, never fewer than MIN_STEPS.
OUTAGES_S = 15  # from step 10 to /readyz answering after Redis: both restarts and their recoveries
SPAN_FACTOR = 4
SAVE_STEPS, MIN_STEPS, MAX_STEPS = 30, 360, 6000
CALIBRATION_STEPS = 40
RUN = {"method": "lora", "per_device_batch_size": 2, "grad_accum": 1, "save_strategy": "steps",
       "save_steps": SAVE_STEPS, "save_total_limit": 2, "eval_strategy": "no", "max_length": 96, "warmup": 0.0}


def steps_to_span(step_s: float) -> int:
    """Steps of `step_s` seconds that outlast the outages SPAN_FACTOR times over."""
    wanted = OUTAGES_S * SPAN_FACTOR / max(step_s, 1e-3)
    return min(MAX_STEPS, max(MIN_STEPS, SAVE_STEPS * -(-int(wanted) // SAVE_STEPS)))


class ReadyPoller(threading.Thread):
    """GET /healthz and /readyz every 0.2 s; keeps (monotonic time asked, healthz status, readyz
    status, readyz checks)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.seen, self.done = base, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.done.wait(0.2):
                asked = time.monotonic()
                try:
                    live = client.get("/healthz").status_code
                    ready = client.get("/readyz")
                    self.seen.append((asked, live, ready.status_code, ready.json().get("checks", {})))
                except httpx.HTTPError as exc:
                    self.seen.append((asked, None, None, {"error": str(exc)}))

    def between(self, start: float, end: float) -> list[tuple]:
        return [s for s in self.seen if start <= s[0] <= end]


@pytest.fixture
def db_url(private_postgres):
    """The studio's database on the private server (this module's override of conftest's)."""
    return migrated_database(private_postgres)


def _read(db, fn):  # noqa: ANN001, ANN202
    """A read on the test's own session, which may hold a connection the restart cut."""
    for _ in range(20):
        try:
            db.rollback()
            db.expire_all()
            return fn()
        except OperationalError:
            time.sleep(0.5)
    return fn()


@pytest.mark.slow
def test_postgres_then_redis_restarted_during_a_run(settings, db, private_postgres, private_redis, tiny_model_dir,
                                                   tmp_path):
    account = make_account(db)
    headers = {"Authorization": f"Bearer {make_api_key(db, account)}"}
    model = register_model(db, tiny_model_dir, name="Tiny Llama")
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id, n_train=16, n_eval=4)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_BROKER_URL": private_redis.url, "STUDIO_SECRET_KEY": settings.secret_key, "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "STUDIO_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S), "STUDIO_RECONCILE_EVERY_S": "1",
           "STUDIO_REQUEUE_AFTER_S": "3", "STUDIO_INFERENCE_URL": f"http://127.0.0.1:{free_port()}"}
    procs = Processes(env, tmp_path)
    worker_name = "train-restarts@test"
    poller = ReadyPoller(base)

    def run(run_id: int) -> Run:
        return _read(db, lambda: db.get(Run, run_id))

    def finished(run_id: int) -> Run | None:
        row = run(run_id)
        if row.status == RunStatus.failed:
            pytest.fail(f"run {run_id} failed: {row.error_message}\n{procs.tail()}")
        return row if row.status in (RunStatus.succeeded, RunStatus.cancelled) else None

    def ready_again(after: float) -> float:
        seen = wait_for(lambda: next((s for s in poller.seen if s[0] > after and s[2] == 200), None), 60,
                        f"/readyz to answer 200 again\n{procs.tail()}")
        return seen[0]

    def submit(**overrides) -> int:
        r = httpx.post(f"{base}/api/v1/runs", headers=headers, timeout=30, json={
            "dataset_id": dataset.id, "base_model_id": model.id, "hyperparameters": {**RUN, **overrides}})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    try:
        procs.start("web", "serve", "--port", str(port))
        procs.start("worker", "worker", "--queues", "train,default", "--name", worker_name)
        wait_for(lambda: _read(db, lambda: db.scalar(select(Worker).where(Worker.name == worker_name))), 120,
                 f"the train worker's first heartbeat\n{procs.tail()}")
        wait_for(lambda: _status(f"{base}/readyz") == 200, 60, f"the web server to be ready\n{procs.tail()}")
        poller.start()
        calibration = submit(max_steps=CALIBRATION_STEPS, save_strategy="no")
        timed = wait_for(lambda: finished(calibration), 240, f"the calibration run\n{procs.tail()}")
        step_s = timed.result["metrics"]["train_runtime_s"] / CALIBRATION_STEPS
        steps = steps_to_span(step_s)
        print(f"\n{step_s:.3f} s a step: {steps} steps")
        run_id = submit(max_steps=steps)
        wait_for(lambda: run(run_id).current_step >= 10, 120, f"the run to make progress\n{procs.tail()}")

        # -- Postgres goes away for longer than the lease timeout, and comes back -------------------
        step_before = run(run_id).current_step
        pg_down = time.monotonic()
        private_postgres.restart(down_s=POSTGRES_DOWN_S)
        pg_up = time.monotonic()
        pg_ready = ready_again(pg_up)
        assert httpx.get(f"{base}/api/v1/runs/{run_id}", headers=headers, timeout=10).status_code == 200
        during_pg = poller.between(pg_down + 0.5, pg_up - 0.5)
        assert during_pg and all(s[1] == 200 for s in during_pg), during_pg  # alive throughout
        assert any(s[2] == 503 and not s[3]["database"]["ok"] and s[3]["broker"]["ok"] for s in during_pg), during_pg
        after_pg = wait_for(lambda: run(run_id).current_step > step_before and run(run_id), 60,
                            "progress recorded after the Postgres restart")
        assert after_pg.status == RunStatus.running and after_pg.worker_id == worker_name and after_pg.attempt == 1

        # -- then Redis: every message it held is lost --------------------------------------------
        redis_down = time.monotonic()
        private_redis.restart(down_s=REDIS_DOWN_S)
        redis_up = time.monotonic()
        redis_ready = ready_again(redis_up)
        during_redis = poller.between(redis_down + 0.5, redis_up - 0.5)
        assert during_redis and all(s[1] == 200 for s in during_redis), during_redis
        assert any(s[2] == 503 and not s[3]["broker"]["ok"] and s[3]["database"]["ok"] for s in during_redis), \
            during_redis
        mid = run(run_id)
        assert mid.status == RunStatus.running and mid.current_step < steps, \
            f"the run ended before Redis was restarted (step {mid.current_step} of {steps}): raise OUTAGES_S"

        after = submit(max_steps=4, save_strategy="no")  # the web's producer and the worker's consumer reconnected
        first = wait_for(lambda: finished(run_id), 240 + 2 * steps * step_s, f"the run to finish\n{procs.tail()}")
        second = wait_for(lambda: finished(after), 120, f"the run submitted after the restarts\n{procs.tail()}")
        print(f"/readyz ready {pg_ready - pg_up:.1f}s after Postgres and {redis_ready - redis_up:.1f}s after "
              f"Redis came back; {len(poller.seen)} polls")
    finally:
        poller.done.set()
        procs.stop()

    assert first.status == RunStatus.succeeded and first.attempt == 1, first.error_message
    assert first.result["global_step"] == steps and first.current_step == steps
    assert second.status == RunStatus.succeeded and second.result["global_step"] == 4
    events = _read(db, lambda: db.scalars(select(RunEvent.message).where(RunEvent.run_id == run_id)).all())
    assert not any("stopped answering" in m for m in events), events  # the outage did not cost the lease
    doubled = _read(db, lambda: db.execute(
        select(Metric.name, Metric.step, func.count()).where(Metric.run_id == run_id)
        .group_by(Metric.name, Metric.step).having(func.count() > 1)).all())
    assert doubled == []
    losses = _read(db, lambda: db.scalars(select(Metric.step).where(Metric.run_id == run_id, Metric.name == "loss")
                                          .order_by(Metric.step)).all())
    assert losses == list(range(1, steps + 1))  # none lost in either outage
    # checkpoint rows (some saved or deleted while Postgres was down) match what is on disk
    recorded = _read(db, lambda: db.scalars(select(Checkpoint.step).where(Checkpoint.run_id == run_id)
                                            .order_by(Checkpoint.step)).all())
    on_disk = sorted(int(p.name.rsplit("-", 1)[1]) for p in
                     (settings.artifact_dir / f"teams/{account.team_id}/jobs/{run_id}/run/checkpoints").iterdir())
    assert recorded == on_disk == [steps - SAVE_STEPS, steps]
    assert _read(db, lambda: db.scalar(select(func.count()).select_from(Run).where(Run.status == RunStatus.running))) == 0


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None
