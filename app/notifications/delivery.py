"""Sends one delivery: a signed JSON POST to a webhook, or an e-mail over SMTP.

`attempt(delivery_id)` claims the delivery when it is due (a compare of its due time under a row
lock: a duplicate message finds it not due and does nothing), makes the call outside any
transaction, then records the attempt. A failed call is due again after
webhook_backoff_s * 2**(attempts - 1); the task schedules that, and the reconciler repeats
whatever a lost message or a dead process left behind. The receiver sees the same event id in
every retry (X-Studio-Delivery) and can drop repeats."""

from __future__ import annotations

import json
import smtplib
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage


from app.config import Settings, get_settings
from app.db import session_scope
from app.errors import InvalidInput
from app.models import DeliveryAttempt, Webhook, utcnow
from app.notifications import repository as repo
from app.notifications import service, signing, targets

USER_AGENT = "FineTuningStudio-Webhooks/1"
LEASE_MARGIN_S = 60  # an attempt not recorded this long after its timeout died with its process
EXCERPT = 300
CLOCK_SLACK_S = 2  # a retry's message may arrive a little before its due time (clocks of two hosts)


@dataclass
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


@dataclass
class Job:
    channel: str
    event: str
    event_id: str
    payload: dict
    url: str | None = None
    secret: str | None = None
    recipient: str | None = None


def backoff_s(attempts: int, settings: Settings) -> float:
    """The wait after the attempts-th failed try: base, 2 x base, 4 x base, ..."""
    return settings.webhook_backoff_s * 2 ** max(0, attempts - 1)


def _claim(delivery_id: int, settings: Settings, now, force: bool) -> tuple[Job | None, int]:  # noqa: ANN001
    with session_scope(settings) as s:
        d = repo.delivery_for_update(s, delivery_id)
        if d is None or d.status != "pending" or d.attempts >= d.max_attempts:
            return None, 0
        if not force and d.next_attempt_at is not None and d.next_attempt_at > now + timedelta(seconds=CLOCK_SLACK_S):
            return None, 0  # not due: a duplicate or early message; the one scheduled comes later
        job = Job(channel=d.channel, event=d.event, event_id=d.event_id, payload=d.payload, recipient=d.recipient)
        if d.channel == "webhook":
            hook = s.get(Webhook, d.webhook_id) if d.webhook_id is not None else None
            if hook is None or not hook.is_active:
                d.status, d.finished_at, d.last_error = "failed", now, "The webhook was deleted or turned off."
                return None, 0
            job.url, job.secret = hook.url, service.secret_of(hook, settings)
        d.attempts += 1
        timeout = settings.webhook_timeout_s if d.channel == "webhook" else settings.smtp_timeout_s
        d.next_attempt_at = now + timedelta(seconds=timeout + LEASE_MARGIN_S)
        return job, d.attempts


def post(job: Job, settings: Settings) -> Outcome:
    import httpx  # here, not at the top: the web process starts without it (tests/app/test_health.py)

    body = json.dumps(job.payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Studio-Event": job.event,
               "X-Studio-Delivery": job.event_id, signing.HEADER: signing.header(job.secret, body)}
    started = time.monotonic()
    try:
        targets.check_destination(job.url, settings)
        # No redirects (a receiver cannot bounce the call elsewhere); no proxy from the environment.
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False) as client:
            with client.stream("POST", job.url, content=body, headers=headers) as response:
                excerpt = b""
                for chunk in response.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT:
                        break
    except InvalidInput as exc:
        return Outcome(False, error=f"Refused: {exc.message}", duration_ms=_ms(started))
    except httpx.TimeoutException:
        return Outcome(False, error=f"No answer within {settings.webhook_timeout_s:g} s.", duration_ms=_ms(started))
    except httpx.HTTPError as exc:
        return Outcome(False, error=f"Could not connect: {type(exc).__name__}: {str(exc)[:200]}",
                       duration_ms=_ms(started))
    ok = 200 <= response.status_code < 300
    text = excerpt[:EXCERPT].decode("utf-8", "replace").strip()
    error = None if ok else f"HTTP {response.status_code}" + (f": {text}" if text else "")
    return Outcome(ok, status_code=response.status_code, error=error, duration_ms=_ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def email_text(job: Job) -> tuple[str, str]:
    """The subject and plain text of a run's e-mail."""
    run = (job.payload.get("data") or {}).get("run") or {}
    name, verdict = run.get("name") or f"#{run.get('id')}", (run.get("status") or "ended")
    subject = f"Your fine-tuning run '{name}' {verdict}"
    lines = [f"Your fine-tuning run '{name}' {verdict}."]
    if run.get("fine_tuned_model"):
        lines.append(f"Use it as the model {run['fine_tuned_model']}.")
    if (run.get("error") or {}).get("message"):
        lines.append(f"Why: {run['error']['message']}")
    lines += ["", f"See the run: {run.get('url')}", "",
              "You get this message because you started the run in the fine-tuning studio."]
    return subject, "\n".join(lines)


def send_email(job: Job, settings: Settings) -> Outcome:
    subject, text = email_text(job)
    message = EmailMessage()
    message["From"] = settings.smtp_from or settings.smtp_user or "studio@localhost"
    message["To"], message["Subject"] = job.recipient, subject
    message["X-Studio-Event"] = job.event
    message.set_content(text)
    started = time.monotonic()
    try:
        smtp_class = smtplib.SMTP_SSL if settings.smtp_port == 465 else smtplib.SMTP
        with smtp_class(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s) as smtp:
            if settings.smtp_starttls and smtp_class is smtplib.SMTP:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        code = getattr(exc, "smtp_code", None)
        return Outcome(False, status_code=code, error=f"{type(exc).__name__}: {str(exc)[:200]}",
                       duration_ms=_ms(started))
    return Outcome(True, status_code=250, duration_ms=_ms(started))


def attempt(delivery_id: int, *, settings: Settings | None = None, now=None,  # noqa: ANN001
            force: bool = False) -> float | None:
    """One try at the delivery. Returns the seconds until the next try when it failed and has
    tries left, else None (done, failed for good, or not this message's turn)."""
    settings = settings or get_settings()
    job, number = _claim(delivery_id, settings, now or utcnow(), force)
    if job is None:
        return None
    if job.channel == "email":
        outcome = send_email(job, settings) if settings.smtp_host else Outcome(False, error="SMTP is not configured.")
    else:
        outcome = post(job, settings)
    return _record(delivery_id, number, outcome, settings)


def _record(delivery_id: int, number: int, outcome: Outcome, settings: Settings) -> float | None:
    with session_scope(settings) as s:
        d = repo.delivery_for_update(s, delivery_id)
        if d is None or d.status != "pending" or d.attempts != number:
            return None  # deleted meanwhile, or an overdue retry already took it over
        s.add(DeliveryAttempt(team_id=d.team_id, delivery_id=d.id, attempt=number, status_code=outcome.status_code,
                              error=outcome.error, duration_ms=outcome.duration_ms))
        d.last_status_code, d.last_error = outcome.status_code, outcome.error
        now = utcnow()
        if outcome.ok:
            d.status, d.finished_at, d.next_attempt_at = "succeeded", now, None
            return None
        if d.attempts >= d.max_attempts:
            d.status, d.finished_at, d.next_attempt_at = "failed", now, None
            return None
        delay = backoff_s(d.attempts, settings)
        d.next_attempt_at = now + timedelta(seconds=delay)
        return delay
