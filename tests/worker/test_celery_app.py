"""A real Celery worker process, against real Redis and against the embedded SQLite broker:
it announces itself with heartbeats and runs a task sent through the broker."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import select

from app.models import Worker
from tests.processes import spawn, wait_for


@pytest.fixture(params=["sqlite-broker", "redis"])
def broker(request, settings):
    """The embedded SQLite broker or Redis (tests/conftest.py pairs them with the databases)."""
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    return settings.broker_url


def test_worker_heartbeat_and_task_round_trip(settings, broker, db, tmp_path):
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_BROKER_URL": broker, "STUDIO_SECRET_KEY": settings.secret_key}
    name = f"test-{uuid.uuid4().hex[:6]}@local"
    proc = spawn(["worker", "--queues", "default", "--name", name], env, tmp_path / "worker.log")
    try:
        def row():
            db.expire_all()
            return db.scalar(select(Worker).where(Worker.name == name))

        worker = wait_for(row, 60, "the worker's first heartbeat")
        assert worker.queues == "default" and worker.device == "cpu" and worker.device_memory_bytes > 0

        from worker.celery_app import make_celery

        settings.broker_url = broker
        sender = make_celery(settings)
        nonce = uuid.uuid4().hex
        sender.send_task("studio.ping", args=[nonce], queue="default")
        wait_for(lambda: (row().info or {}).get("last_ping") == nonce, 30, "the ping task to run")
    finally:
        proc.terminate()  # as a supervisor does; the wait is part of the test: a clean, prompt shutdown
        proc.wait(timeout=30)
    # a clean shutdown removes the worker's row
    db.expire_all()
    assert db.scalar(select(Worker).where(Worker.name == name)) is None, (tmp_path / "worker.log").read_text()[-2000:]


def test_a_train_worker_drives_as_many_devices_as_it_has(settings, db, tmp_path):
    """A CPU train worker told it has 2 devices (STUDIO_WORKER_DEVICES) says so in its heartbeat
    row and runs two tasks at once (a thread per device, in its own process)."""
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_BROKER_URL": settings.broker_url, "STUDIO_SECRET_KEY": settings.secret_key,
           "STUDIO_WORKER_DEVICES": "2"}
    name = f"train-{uuid.uuid4().hex[:6]}@local"
    log = tmp_path / "worker.log"
    proc = spawn(["worker", "--queues", "train", "--name", name], env, log)
    try:
        def row():
            db.expire_all()
            return db.scalar(select(Worker).where(Worker.name == name))

        worker = wait_for(row, 90, "the worker's first heartbeat")
        assert (worker.queues, worker.device, worker.device_count) == ("train", "cpu", 2)
        assert "2 (thread)" in log.read_text()  # Celery's banner: concurrency 2, thread pool
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_device_count_and_the_pool_it_gives():
    from app.cli import train_pool
    from worker.runtime.heartbeat import device_count

    assert [device_count(None, None), device_count(None, 2)] == [1, 2]  # a CPU: 1, or what the setting says
    assert [device_count(8, None), device_count(8, 2), device_count(2, 8), device_count(0, None)] == [8, 2, 2, 1]
    assert train_pool(1) == ["-P", "solo"] and train_pool(4) == ["-P", "threads", "-c", "4"]
