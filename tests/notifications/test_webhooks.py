"""Webhooks end to end against a real local receiver that checks the signature: the outbox row is
written in the transaction of the change (and dropped with its rollback), every path that ends a
run tells it once, a failed call is retried with exponential backoff until it succeeds or gives
up, a lost message is sent again by the reconciler, and dangerous targets are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.errors import InvalidInput, NotFound
from app.models import DeliveryAttempt, NotificationDelivery, RunStatus, utcnow
from app.notifications import delivery, service, signing
from app.storage import ArtifactStore
from tests.factories import make_account
from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir

NOTIFY = service.NOTIFY_TASK


@pytest.fixture
def tuned(settings, monkeypatch):
    """Settings with a short backoff and four tries, as the delivery code reads them."""
    from app import config

    monkeypatch.setenv("STUDIO_WEBHOOK_BACKOFF_S", "0.5")
    monkeypatch.setenv("STUDIO_WEBHOOK_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("STUDIO_WEBHOOK_TIMEOUT_S", "5")
    config.get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def team(db, settings, tmp_path):
    account = make_account(db, email="owner@example.com")
    store = ArtifactStore(settings.artifact_dir)
    dataset = make_dataset(db, store, account.team_id)
    model = register_model(db, write_model_dir(tmp_path / "model"), team_id=account.team_id)
    return account, dataset, model


def _hook(db, account, receiver, events=("run.succeeded", "run.failed", "run.cancelled")):  # noqa: ANN001
    hook, secret = service.create_webhook(db, team_id=account.team_id, user_id=account.user_id,
                                          url=receiver.url, events=list(events))
    db.commit()
    receiver.secret = secret
    return hook


def _sent_ids(sent) -> list[int]:  # noqa: ANN001
    return [args[0] for task, args, _ in sent if task == NOTIFY]


def test_signature_verifies_and_refuses_tampering_and_replays():
    body = b'{"type":"run.succeeded"}'
    value = signing.header("whsec_x", body, timestamp=1_700_000_000)
    assert value.startswith("t=1700000000,v1=")
    assert signing.verify("whsec_x", value, body, now=1_700_000_100)
    assert not signing.verify("whsec_x", value, body + b" ", now=1_700_000_100)  # body changed
    assert not signing.verify("whsec_y", value, body, now=1_700_000_100)  # another secret
    assert not signing.verify("whsec_x", value, body, now=1_700_000_000 + 301)  # replayed later
    assert not signing.verify("whsec_x", "v1=abc", body)


def test_a_cancelled_run_reaches_the_receiver_signed(db, team, receiver, sent, tuned):
    account, dataset, model = team
    _hook(db, account, receiver)
    run = make_run(db, account.team_id, dataset, model, name="lumio v1", created_by_id=account.user_id)
    from app.runs import service as runs

    runs.cancel(db, run)
    db.commit()
    (delivery_id,) = _sent_ids(sent)  # sent after the commit, once
    assert delivery.attempt(delivery_id, settings=tuned) is None
    (call,) = receiver.calls
    assert call.verified, "the receiver could not verify the studio's signature"
    assert call.headers["X-Studio-Event"] == "run.cancelled"
    body = call.json
    assert body["type"] == "run.cancelled" and body["id"] == call.headers["X-Studio-Delivery"]
    assert body["data"]["run"]["id"] == run.id and body["data"]["run"]["name"] == "lumio v1"
    assert body["data"]["run"]["created_by"] == "owner@example.com"
    db.expire_all()
    row = db.get(NotificationDelivery, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("succeeded", 1, 200)


def test_a_rollback_drops_the_delivery_and_its_message(db, team, receiver, sent):
    account, dataset, model = team
    _hook(db, account, receiver)
    run = make_run(db, account.team_id, dataset, model)
    from app.runs import service as runs

    runs.cancel(db, run)
    db.rollback()
    assert _sent_ids(sent) == []
    assert db.scalars(select(NotificationDelivery)).all() == []


def test_only_subscribed_active_webhooks_of_the_team_get_the_event(db, team, receiver, sent):
    account, dataset, model = team
    _hook(db, account, receiver, events=("sweep.finished",))
    other = make_account(db, email="other@example.com")
    service.create_webhook(db, team_id=other.team_id, user_id=other.user_id, url=receiver.url,
                           events=["run.cancelled"])
    db.commit()
    from app.runs import service as runs

    runs.cancel(db, make_run(db, account.team_id, dataset, model))
    db.commit()
    assert _sent_ids(sent) == []  # our hook takes only sweeps; the other team's never hears of our run


def test_worker_and_reconciler_endings_are_told_once_each(db, team, receiver, sent, tuned):
    """The worker's outcome (worker.tasks.runs._finish) and the reconciler's give-up both write
    their status event through app.runs.service.add_event, where the notification is queued."""
    from worker.runtime import reconciler
    from worker.tasks import runs as run_tasks

    account, dataset, model = team
    _hook(db, account, receiver)
    now = utcnow()
    lost = make_run(db, account.team_id, dataset, model, status=RunStatus.running, attempt=3, max_attempts=3,
                    lease_token="lease-1", worker_id="gpu-1", heartbeat_at=now - timedelta(minutes=5))
    failing = make_run(db, account.team_id, dataset, model, status=RunStatus.running, lease_token="lease-2",
                       worker_id="gpu-2", heartbeat_at=now)
    assert reconciler.reconcile(tuned)["requeued"] == 1
    run_tasks._finish(failing.id, "lease-2", workspace=None, failure=("error", "The run failed at step 3."))
    ids = _sent_ids(sent)
    assert len(ids) == 2
    for delivery_id in ids:
        delivery.attempt(delivery_id, settings=tuned)
    got = {c.json["data"]["run"]["id"]: c.json for c in receiver.calls}
    assert got[lost.id]["type"] == "run.failed" and "attempt 3 of 3" in got[lost.id]["data"]["run"]["error"]["message"]
    assert got[failing.id]["type"] == "run.failed" and got[failing.id]["data"]["run"]["error"]["kind"] == "error"
    assert all(c.verified for c in receiver.calls)


def test_a_500_is_retried_with_exponential_backoff_then_delivered(db, team, receiver, sent, tuned):
    account, dataset, model = team
    _hook(db, account, receiver)
    receiver.answers = [500, 502]
    from app.runs import service as runs

    runs.cancel(db, make_run(db, account.team_id, dataset, model))
    db.commit()
    (delivery_id,) = _sent_ids(sent)

    assert delivery.attempt(delivery_id, settings=tuned) == pytest.approx(0.5)  # base
    db.expire_all()
    row = db.get(NotificationDelivery, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert "receiver says no" in row.last_error
    first_due = row.next_attempt_at
    assert timedelta(seconds=0.3) < first_due - utcnow() <= timedelta(seconds=0.5)

    assert delivery.attempt(delivery_id, settings=tuned, now=first_due - timedelta(seconds=10)) is None
    assert len(receiver.calls) == 1, "a message that came before the delivery was due must not call again"

    assert delivery.attempt(delivery_id, settings=tuned, now=first_due) == pytest.approx(1.0)  # twice the base
    db.expire_all()
    second_due = db.get(NotificationDelivery, delivery_id).next_attempt_at
    assert delivery.attempt(delivery_id, settings=tuned, now=second_due) is None
    db.expire_all()
    row = db.get(NotificationDelivery, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("succeeded", 3, 200)
    log = db.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                     .order_by(DeliveryAttempt.attempt)).all()
    assert [(a.attempt, a.status_code) for a in log] == [(1, 500), (2, 502), (3, 200)]
    assert all(a.duration_ms is not None for a in log)
    assert [c.verified for c in receiver.calls] == [True, True, True]
    assert len({c.headers["X-Studio-Delivery"] for c in receiver.calls}) == 1  # one event id for the retries


def test_it_gives_up_after_max_attempts_and_never_follows_a_redirect(db, team, receiver, sent, tuned):
    account, dataset, model = team
    _hook(db, account, receiver)
    receiver.answers = [302, 500, 500, 500]
    from app.runs import service as runs

    runs.cancel(db, make_run(db, account.team_id, dataset, model))
    db.commit()
    (delivery_id,) = _sent_ids(sent)
    delays, now = [], utcnow()
    for _ in range(4):
        delays.append(delivery.attempt(delivery_id, settings=tuned, now=now + timedelta(hours=1)))
    assert delays == [0.5, 1.0, 2.0, None]
    db.expire_all()
    row = db.get(NotificationDelivery, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("failed", 4, 500)
    assert len(receiver.calls) == 4  # the 302 was not followed to its Location
    assert delivery.attempt(delivery_id, settings=tuned, now=now + timedelta(hours=2)) is None  # stays failed


def test_the_task_schedules_the_retry_and_the_reconciler_resends_lost_ones(db, team, receiver, sent, tuned,
                                                                             monkeypatch):
    from worker.tasks import notify

    account, dataset, model = team
    _hook(db, account, receiver)
    receiver.answers = [503]
    from app.runs import service as runs

    runs.cancel(db, make_run(db, account.team_id, dataset, model))
    db.commit()
    (delivery_id,) = _sent_ids(sent)
    scheduled = []
    monkeypatch.setattr(notify.notify, "apply_async", lambda args, countdown, queue: scheduled.append((args, countdown)))
    notify.notify(delivery_id)
    assert scheduled == [((delivery_id,), 0.5)]

    # The scheduled message is lost (broker flushed): once overdue, the reconciler sends it again.
    db.expire_all()
    row = db.get(NotificationDelivery, delivery_id)
    row.next_attempt_at = utcnow() - timedelta(seconds=tuned.requeue_after_s + 5)
    db.commit()
    sent.clear()
    from worker.runtime import reconciler

    assert reconciler.reconcile(tuned)["notifications"] == 1
    assert _sent_ids(sent) == [delivery_id]
    notify.notify(delivery_id)
    db.expire_all()
    assert db.get(NotificationDelivery, delivery_id).status == "succeeded"


def test_deleting_the_webhook_stops_its_deliveries(db, team, receiver, sent, tuned):
    account, dataset, model = team
    hook = _hook(db, account, receiver)
    from app.runs import service as runs

    runs.cancel(db, make_run(db, account.team_id, dataset, model))
    db.commit()
    (delivery_id,) = _sent_ids(sent)
    service.delete_webhook(db, team_id=account.team_id, webhook_id=hook.id)
    db.commit()
    assert delivery.attempt(delivery_id, settings=tuned) is None
    assert receiver.calls == []
    assert db.get(NotificationDelivery, delivery_id) is None  # its log went with it


def test_sweeps_and_ab_tests_tell_when_they_end(db, team, receiver, sent, tuned):
    from app.ab import service as ab
    from app.deps import Principal
    from app.models import Comparison, Role, Sweep
    from app.sweeps import service as sweeps

    account, dataset, model = team
    _hook(db, account, receiver, events=("sweep.finished", "ab_test.finished"))
    sweep = Sweep(team_id=account.team_id, name="rank sweep", base_config={"preset": "auto"},
                  search_space={"lora_r": [8]}, status="running", dataset_id=dataset.id, base_model_id=model.id)
    comparison = Comparison(team_id=account.team_id, created_by_id=account.user_id, name="v1 or base", status="open",
                            model_a={"kind": "base", "id": model.id}, model_b={"kind": "base", "id": model.id},
                            prompt_source={"kind": "custom", "count": 1, "seed": 1})
    db.add_all([sweep, comparison])
    db.commit()
    sweeps.cancel(db, sweep)
    from app.models import User

    ab.close(db, Principal(team_id=account.team_id, role=Role.owner, scopes={"read", "write", "admin"},
                           user=db.get(User, account.user_id)), comparison)
    db.commit()
    for delivery_id in _sent_ids(sent):
        delivery.attempt(delivery_id, settings=tuned)
    got = {c.json["type"]: c.json["data"] for c in receiver.calls}
    assert got["sweep.finished"]["sweep"]["status"] == "cancelled" and got["sweep.finished"]["sweep"]["name"] == "rank sweep"
    assert got["ab_test.finished"]["ab_test"]["status"] == "closed"
    assert got["ab_test.finished"]["ab_test"]["url"] == f"/ab/{comparison.id}"
    assert all(c.verified for c in receiver.calls)


def test_emit_is_the_way_in_for_other_features(db, team, receiver, sent, tuned):
    """release.moved is emitted by the releases service through the public emit()."""
    account, _, _ = team
    _hook(db, account, receiver, events=("release.moved",))
    service.emit(db, account.team_id, "release.moved", {"alias": "support-bot:prod", "from_version": 2, "to_version": 3})
    db.commit()
    with pytest.raises(ValueError):
        service.emit(db, account.team_id, "release.moves", {})
    (delivery_id,) = _sent_ids(sent)
    delivery.attempt(delivery_id, settings=tuned)
    (call,) = receiver.calls
    assert call.verified and call.json["data"]["alias"] == "support-bot:prod"


@pytest.mark.parametrize("url, words", [
    ("ftp://example.com/x", "http:// or https://"),
    ("https://user:pw@example.com/x", "without a user name"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/x", "link-local"),
    ("http://0.0.0.0/x", "unspecified"),
])
def test_dangerous_targets_are_refused(db, team, url, words):
    account, _, _ = team
    with pytest.raises(InvalidInput, match=words):
        service.create_webhook(db, team_id=account.team_id, user_id=None, url=url, events=["run.failed"])


def test_the_allowlist_and_private_block_apply_when_saving_and_when_sending(db, team, receiver, sent, monkeypatch):
    from app import config

    account, dataset, model = team
    monkeypatch.setenv("STUDIO_WEBHOOK_ALLOWED_HOSTS", "hooks.example.com,*.corp.example,10.0.0.0/8")
    config.get_settings.cache_clear()
    with pytest.raises(InvalidInput, match="not one of them"):
        service.create_webhook(db, team_id=account.team_id, user_id=None, url=receiver.url, events=["run.failed"])
    for url in ("https://hooks.example.com/a", "https://ci.corp.example/a", "http://10.1.2.3/a"):
        service.create_webhook(db, team_id=account.team_id, user_id=None, url=url, events=["run.failed"])
    db.rollback()

    monkeypatch.setenv("STUDIO_WEBHOOK_ALLOWED_HOSTS", "")
    config.get_settings.cache_clear()
    _hook(db, account, receiver)  # saved while allowed
    monkeypatch.setenv("STUDIO_WEBHOOK_BLOCK_PRIVATE", "true")  # then the administrator blocks private targets
    config.get_settings.cache_clear()
    from app.runs import service as runs

    runs.cancel(db, make_run(db, account.team_id, dataset, model))
    db.commit()
    (delivery_id,) = _sent_ids(sent)
    delivery.attempt(delivery_id, settings=get_settings())
    assert receiver.calls == []
    db.expire_all()
    row = db.get(NotificationDelivery, delivery_id)
    assert row.last_status_code is None and "127.0.0.1" in row.last_error and "loopback or private" in row.last_error


def test_unknown_or_missing_events_are_refused(db, team, receiver):
    account, _, _ = team
    with pytest.raises(InvalidInput, match="Unknown event: run.exploded"):
        service.create_webhook(db, team_id=account.team_id, user_id=None, url=receiver.url, events=["run.exploded"])
    with pytest.raises(InvalidInput, match="at least one event"):
        service.create_webhook(db, team_id=account.team_id, user_id=None, url=receiver.url, events=[])


def test_a_retry_after_a_rotation_is_signed_with_the_new_secret(db, team, receiver, sent, tuned):
    """The secret is read when a call is sent: a delivery written before the rotation and retried
    after it carries the new secret's signature, and the old secret no longer verifies it."""
    account, dataset, model = team
    hook = _hook(db, account, receiver)
    old = receiver.secret
    receiver.answers = [500]
    from app.runs import service as runs

    runs.cancel(db, make_run(db, account.team_id, dataset, model))
    db.commit()
    (delivery_id,) = _sent_ids(sent)
    assert delivery.attempt(delivery_id, settings=tuned) == pytest.approx(0.5)  # failed once, signed with the old one
    assert signing.verify(old, receiver.calls[0].headers[signing.HEADER], receiver.calls[0].body)

    _, new = service.rotate_secret(db, team_id=account.team_id, webhook_id=hook.id)
    db.commit()
    assert new != old and new.startswith("whsec_")
    db.expire_all()
    assert service.secret_of(db.get(type(hook), hook.id), tuned) == new
    receiver.secret = new
    due = db.get(NotificationDelivery, delivery_id).next_attempt_at
    assert delivery.attempt(delivery_id, settings=tuned, now=due) is None  # delivered
    retry = receiver.calls[1]
    assert retry.verified and signing.verify(new, retry.headers[signing.HEADER], retry.body)
    assert not signing.verify(old, retry.headers[signing.HEADER], retry.body)
    assert retry.headers["X-Studio-Delivery"] == receiver.calls[0].headers["X-Studio-Delivery"]  # the same event


def test_rotating_another_teams_webhook_is_not_found(db, team, receiver):
    account, _, _ = team
    hook = _hook(db, account, receiver)
    other = make_account(db, email="other@example.com")
    before = (hook.secret_encrypted, hook.secret_prefix)
    with pytest.raises(NotFound):
        service.rotate_secret(db, team_id=other.team_id, webhook_id=hook.id)
    db.rollback()
    db.expire_all()
    assert (hook.secret_encrypted, hook.secret_prefix) == before
