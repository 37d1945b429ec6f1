"""Notifications: a team's webhooks and the e-mail to the person who started a run.

`emit(session, team_id, event, payload)` is the one way in. It writes one delivery row per
webhook of the team that takes the event, in the caller's transaction (the outbox), and sends the
delivery task its id once that transaction commits (app.queue). A rollback drops both; a process
that dies after the commit leaves rows that the reconciler sends (`redeliver_due`). Services
flush; the edge commits.

Where events come from:
- run.succeeded | run.failed | run.cancelled: app.runs.service.add_event, the one place every
  final status event of a run is written (web, worker, reconciler); `run_ended` also queues the
  e-mail to the run's starter when SMTP is configured;
- sweep.finished: app.sweeps.service._end; ab_test.finished: app.ab.service.close;
- release.moved: the releases service, when an alias moves (docs/notifications.md).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app import queue
from app.config import Settings, get_settings
from app.errors import InvalidInput, NotFound
from app.models import BaseModel, NotificationDelivery, Run, Webhook, utcnow
from app.notifications import repository as repo
from app.notifications import targets

NOTIFY_TASK = "studio.notify"
EVENTS = {
    "run.succeeded": "A fine-tuning run succeeded",
    "run.failed": "A fine-tuning run failed",
    "run.cancelled": "A fine-tuning run was cancelled",
    "sweep.finished": "A sweep ended (its best run picked, or it failed or was cancelled)",
    "ab_test.finished": "An A/B test was closed and its results shown",
    "release.moved": "A release alias (such as support-bot:prod) was moved to another version",
}
TEST_EVENT = "webhook.test"  # sent by "Send test", to that webhook only
MAX_WEBHOOKS = 20


# -- the signing secret, at rest -----------------------------------------------------------------

def _fernet(settings: Settings):  # noqa: ANN202
    from cryptography.fernet import Fernet

    digest = hashlib.sha256(f"studio-webhook-secret:{settings.resolved_secret_key()}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def secret_of(webhook: Webhook, settings: Settings | None = None) -> str:
    return _fernet(settings or get_settings()).decrypt(webhook.secret_encrypted.encode()).decode()


# -- webhooks ------------------------------------------------------------------------------------

def check_events(events: list[str]) -> list[str]:
    chosen = sorted({e.strip() for e in events if e and e.strip()})
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise InvalidInput(f"Unknown event{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
                           f"The events are: {', '.join(EVENTS)}.", param="events")
    if not chosen:
        raise InvalidInput("Choose at least one event to send to this webhook.", param="events")
    return chosen


def create_webhook(session: Session, *, team_id: int, user_id: int | None, url: str, events: list[str],
                   description: str = "", settings: Settings | None = None) -> tuple[Webhook, str]:
    """The new webhook and its signing secret, which is shown to the caller this once."""
    settings = settings or get_settings()
    url = targets.check_url(url, settings)
    chosen = check_events(events)
    description = (description or "").strip()
    if len(description) > 200:
        raise InvalidInput("Keep the description under 200 characters.", param="description")
    if len(repo.webhooks(session, team_id)) >= MAX_WEBHOOKS:
        raise InvalidInput(f"A team may have at most {MAX_WEBHOOKS} webhooks: delete one first.", param="url")
    row = Webhook(team_id=team_id, created_by_id=user_id, url=url, description=description, events=chosen,
                  is_active=True)
    secret = _set_new_secret(row, settings)
    session.add(row)
    session.flush()
    return row, secret


def _set_new_secret(row: Webhook, settings: Settings) -> str:
    """Gives the webhook a new signing secret (stored encrypted, its prefix shown) and returns it."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    row.secret_encrypted = _fernet(settings).encrypt(secret.encode()).decode()
    row.secret_prefix = secret[:10]
    return secret


def rotate_secret(session: Session, *, team_id: int, webhook_id: int,
                  settings: Settings | None = None) -> tuple[Webhook, str]:
    """Replaces the webhook's signing secret; the new one is shown to the caller this once. The old
    one stops at once: every call sent from now on, retries of earlier deliveries included, is
    signed with the new one (the delivery reads the secret when it sends)."""
    row = get_webhook(session, team_id=team_id, webhook_id=webhook_id)
    secret = _set_new_secret(row, settings or get_settings())
    session.flush()
    return row, secret


def get_webhook(session: Session, *, team_id: int, webhook_id: int) -> Webhook:
    row = repo.webhook(session, team_id=team_id, webhook_id=webhook_id)
    if row is None:
        raise NotFound("No such webhook.")
    return row


def delete_webhook(session: Session, *, team_id: int, webhook_id: int) -> Webhook:
    """Deletes the webhook and its delivery log; a delivery in flight finds it gone and stops."""
    row = get_webhook(session, team_id=team_id, webhook_id=webhook_id)
    session.delete(row)
    session.flush()
    return row


# -- events --------------------------------------------------------------------------------------

def link(path: str, settings: Settings | None = None) -> str:
    base = (settings or get_settings()).public_url.rstrip("/")
    return f"{base}{path}"


def body(team_id: int, event: str, payload: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {"id": event_id, "type": event, "created_at": utcnow().isoformat(), "team_id": team_id,
            "data": payload}


def _delivery(session: Session, *, team_id: int, channel: str, event: str, event_id: str,
              payload: dict[str, Any], webhook_id: int | None = None, recipient: str | None = None,
              max_attempts: int) -> NotificationDelivery:
    row = NotificationDelivery(team_id=team_id, channel=channel, webhook_id=webhook_id, recipient=recipient,
                               event=event, event_id=event_id, payload=payload, status="pending", attempts=0,
                               max_attempts=max_attempts, next_attempt_at=utcnow())
    session.add(row)
    session.flush()
    queue.enqueue(session, NOTIFY_TASK, row.id, queue="default")
    return row


def emit(session: Session, team_id: int, event: str, payload: dict[str, Any]) -> list[NotificationDelivery]:
    """Tells the team's webhooks that take `event` (one of EVENTS) about it: `payload` becomes the
    body's "data". Sent once the caller's transaction commits; nothing is sent on a rollback."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    event_id = "evt_" + uuid.uuid4().hex
    document = body(team_id, event, payload, event_id)
    settings = get_settings()
    return [_delivery(session, team_id=team_id, channel="webhook", webhook_id=hook.id, event=event,
                      event_id=event_id, payload=document, max_attempts=settings.webhook_max_attempts)
            for hook in repo.webhooks(session, team_id, active_only=True) if event in (hook.events or [])]


def send_test(session: Session, *, team_id: int, webhook_id: int) -> NotificationDelivery:
    """A "webhook.test" delivery to this webhook alone, tried once (the caller sends it at once)."""
    hook = get_webhook(session, team_id=team_id, webhook_id=webhook_id)
    event_id = "evt_" + uuid.uuid4().hex
    document = body(team_id, TEST_EVENT, {"webhook_id": hook.id, "message": "A test from the fine-tuning studio."},
                    event_id)
    row = NotificationDelivery(team_id=team_id, channel="webhook", webhook_id=hook.id, event=TEST_EVENT,
                               event_id=event_id, payload=document, status="pending", attempts=0, max_attempts=1,
                               next_attempt_at=utcnow() + timedelta(minutes=5))  # the request sends it
    session.add(row)
    session.flush()
    return row


def run_payload(session: Session, run: Run) -> dict[str, Any]:
    from app.api.openai.names import fine_tuned_name

    model = session.get(BaseModel, run.base_model_id)
    status = run.status.value
    return {"run": {
        "id": run.id, "name": run.name, "status": status, "method": run.method,
        "base_model": model.slug if model is not None else None,
        "fine_tuned_model": fine_tuned_name(run, model.slug) if model is not None and status == "succeeded" else None,
        "dataset_id": run.dataset_id, "sweep_id": run.sweep_id,
        "created_by": repo.email_of(session, run.created_by_id),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": {"kind": run.error_kind, "message": run.error_message} if status == "failed" else None,
        "url": link(f"/runs/{run.id}"),
    }}


def run_ended(session: Session, run: Run) -> None:
    """A run reached succeeded, failed or cancelled (called in the transaction that wrote it):
    the team's webhooks, and an e-mail to the person who started it when SMTP is configured."""
    event = f"run.{run.status.value}"
    payload = run_payload(session, run)
    deliveries = emit(session, run.team_id, event, payload)
    settings = get_settings()
    recipient = repo.email_of(session, run.created_by_id)
    if settings.smtp_host and recipient:
        event_id = deliveries[0].event_id if deliveries else "evt_" + uuid.uuid4().hex
        _delivery(session, team_id=run.team_id, channel="email", recipient=recipient, event=event,
                  event_id=event_id, payload=body(run.team_id, event, payload, event_id),
                  max_attempts=settings.webhook_max_attempts)


def sweep_ended(session: Session, sweep) -> None:  # noqa: ANN001
    emit(session, sweep.team_id, "sweep.finished", {"sweep": {
        "id": sweep.id, "name": sweep.name, "status": sweep.status, "metric": sweep.metric,
        "best_run_id": sweep.best_run_id, "error_message": sweep.error_message,
        "finished_at": sweep.finished_at.isoformat() if sweep.finished_at else None,
        "url": link(f"/sweeps/{sweep.id}")}})


def ab_closed(session: Session, comparison, *, label_a: str, label_b: str,  # noqa: ANN001
              votes: dict[str, int]) -> None:
    emit(session, comparison.team_id, "ab_test.finished", {"ab_test": {
        "id": comparison.id, "name": comparison.name, "status": comparison.status,
        "model_a": label_a, "model_b": label_b, "votes": votes,
        "closed_at": comparison.closed_at.isoformat() if comparison.closed_at else None,
        "url": link(f"/ab/{comparison.id}")}})


def redeliver_due(session: Session, *, grace_s: float) -> int:
    """The reconciler's pass: a pending delivery overdue by more than grace_s lost its message
    (broker down at commit) or its attempt (the process died mid-call): it is enqueued again.
    An extra message is harmless: the task claims the delivery by its due time."""
    ids = repo.due(session, before=utcnow() - timedelta(seconds=grace_s))
    for delivery_id in ids:
        queue.enqueue(session, NOTIFY_TASK, delivery_id, queue="default")
    return len(ids)
