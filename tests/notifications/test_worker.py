"""The delivery task in a real Celery worker process on the embedded broker: a run's end is
committed, the worker calls the receiver, gets a 500, schedules its own retry with backoff, and
the second call is delivered."""

from __future__ import annotations

import os
import uuid

import pytest

from app.models import NotificationDelivery
from app.notifications import service
from app.storage import ArtifactStore
from tests.factories import make_account
from tests.processes import spawn, wait_for
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir


pytestmark = [pytest.mark.slow, pytest.mark.one_database]  # a worker process starts and stops (~30 s)


def test_a_worker_delivers_and_retries_with_backoff(settings, db, tmp_path, receiver):
    account = make_account(db)
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    model = register_model(db, write_model_dir(tmp_path / "model"), team_id=account.team_id)
    hook, receiver.secret = service.create_webhook(db, team_id=account.team_id, user_id=account.user_id,
                                                   url=receiver.url, events=["run.cancelled"])
    db.commit()
    receiver.answers = [500]
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_BROKER_URL": settings.broker_url, "STUDIO_SECRET_KEY": settings.secret_key,
           "STUDIO_WEBHOOK_BACKOFF_S": "0.5"}
    log = tmp_path / "worker.log"
    proc = spawn(["worker", "--queues", "default", "--name", f"notify-{uuid.uuid4().hex[:6]}@local"], env, log)
    try:
        from app.runs import service as runs

        runs.cancel(db, make_run(db, account.team_id, dataset, model))
        db.commit()  # the message goes to the broker now

        def delivered():
            db.expire_all()
            row = db.query(NotificationDelivery).one()
            return row if row.status == "succeeded" else None

        row = wait_for(delivered, 90, "the webhook to be delivered by the worker", log=log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (row.attempts, row.last_status_code) == (2, 200)
    assert [c.verified for c in receiver.calls] == [True, True]
    assert receiver.calls[0].json["id"] == receiver.calls[1].json["id"]
