"""E-mail to the person who started a run, through a real SMTP server the test starts (aiosmtpd)."""

from __future__ import annotations

import pytest

from app.config import get_settings
from app.models import NotificationDelivery, RunStatus
from app.notifications import delivery, service
from app.storage import ArtifactStore
from tests.factories import make_account
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir


@pytest.fixture
def smtp_settings(settings, mailbox, monkeypatch):
    from app import config

    for key, value in {"STUDIO_SMTP_HOST": mailbox.host, "STUDIO_SMTP_PORT": str(mailbox.port),
                       "STUDIO_SMTP_FROM": "studio@example.com", "STUDIO_SMTP_STARTTLS": "false",
                       "STUDIO_PUBLIC_URL": "https://studio.example.com"}.items():
        monkeypatch.setenv(key, value)
    config.get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def run_parts(db, settings, tmp_path):
    account = make_account(db, email="starter@example.com")
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id)
    model = register_model(db, write_model_dir(tmp_path / "model"), team_id=account.team_id)
    return account, dataset, model


def _emails(sent, db) -> list[int]:  # noqa: ANN001
    ids = [args[0] for task, args, _ in sent if task == service.NOTIFY_TASK]
    return [i for i in ids if db.get(NotificationDelivery, i).channel == "email"]


def test_the_starter_gets_an_email_when_the_run_succeeds(db, run_parts, mailbox, smtp_settings, sent):
    from worker.tasks import runs as run_tasks

    account, dataset, model = run_parts
    run = make_run(db, account.team_id, dataset, model, name="lumio v2", created_by_id=account.user_id,
                   status=RunStatus.running, lease_token="lease", worker_id="w")

    class Result:  # what the engine returns, as far as _finish reads it
        status, global_step, metrics, warnings = "completed", 40, {"eval_loss": 0.5}, []
        adapter_dir = merged_dir = model_dir = None

        def as_dict(self):  # noqa: ANN201
            return {"status": "completed"}

    run_tasks._finish(run.id, "lease", workspace=None, result=Result())
    (delivery_id,) = _emails(sent, db)
    assert delivery.attempt(delivery_id, settings=smtp_settings) is None
    (message,) = mailbox.messages
    assert message["To"] == "starter@example.com" and message["From"] == "studio@example.com"
    assert message["Subject"] == "Your fine-tuning run 'lumio v2' succeeded"
    text = message.get_payload(decode=True).decode()
    assert f"https://studio.example.com/runs/{run.id}" in text
    assert f"ft:{model.slug}:team-{account.team_id}::{run.id}" in text
    db.expire_all()
    row = db.get(NotificationDelivery, delivery_id)
    assert (row.status, row.last_status_code, row.recipient) == ("succeeded", 250, "starter@example.com")


def test_a_failed_run_says_why_and_an_unreachable_server_is_retried(db, run_parts, mailbox, smtp_settings, sent,
                                                                     monkeypatch):
    from app.runs import service as runs

    account, dataset, model = run_parts
    run = make_run(db, account.team_id, dataset, model, name="bad file", created_by_id=account.user_id,
                   status=RunStatus.validating_files)
    runs._fail_waiting(db, run, "Line 3 is not JSON.", {"code": "invalid_json", "param": "training_file"})
    db.commit()
    (delivery_id,) = _emails(sent, db)
    down = smtp_settings.model_copy(update={"smtp_port": 9})  # nothing listens there
    assert delivery.attempt(delivery_id, settings=down) == pytest.approx(smtp_settings.webhook_backoff_s)
    db.expire_all()
    assert "Error" in db.get(NotificationDelivery, delivery_id).last_error
    assert delivery.attempt(delivery_id, settings=smtp_settings, force=True) is None
    (message,) = mailbox.messages
    assert message["Subject"] == "Your fine-tuning run 'bad file' failed"
    assert "Why: Line 3 is not JSON." in message.get_payload(decode=True).decode()


def test_no_smtp_host_means_no_email(db, run_parts, settings, sent):
    from app.runs import service as runs

    account, dataset, model = run_parts
    runs.cancel(db, make_run(db, account.team_id, dataset, model, created_by_id=account.user_id))
    db.commit()
    assert _emails(sent, db) == []
