"""The team's webhooks page (/team/webhooks) and the webhook endpoints of the native API.
Anyone on the team sees the webhooks and their delivery log; owners (API: the admin scope)
add, delete and test them and rotate their signing secrets."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.deps import CurrentPrincipal, CurrentUser, SessionDep
from app.errors import StudioError
from app.models import Role
from app.notifications import delivery
from app.notifications import repository as repo
from app.notifications import service
from app.notifications.schemas import (AttemptOut, DeliveryOut, EventOut, WebhookCreate, WebhookCreated,
                                       WebhookOut)
from app.teams.service import require_owner
from app.web import redirect, render

pages = APIRouter(tags=["notifications"], include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["notifications"])
LOG_SIZE = 30


def _log(db, team_id: int, webhook_id: int | None = None, limit: int = LOG_SIZE) -> list[DeliveryOut]:  # noqa: ANN001
    rows = repo.deliveries(db, team_id=team_id, webhook_id=webhook_id, channel="webhook", limit=limit)
    attempts = repo.attempts_of(db, team_id=team_id, delivery_ids=[d.id for d in rows])
    return [DeliveryOut(id=d.id, webhook_id=d.webhook_id, event=d.event, event_id=d.event_id, status=d.status,
                        attempts=d.attempts, max_attempts=d.max_attempts,
                        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                        last_status_code=d.last_status_code, last_error=d.last_error, created_at=d.created_at,
                        finished_at=d.finished_at, payload=d.payload,
                        attempt_log=[AttemptOut.model_validate(a) for a in attempts[d.id]]) for d in rows]


def _page(request: Request, db, p, **extra) -> Response:  # noqa: ANN001
    status_code = extra.pop("status_code", 200)
    hooks = repo.webhooks(db, p.team_id)
    ctx = {"hooks": hooks, "by_id": {h.id: h for h in hooks}, "log": _log(db, p.team_id),
           "events": service.EVENTS, "is_owner": p.role == Role.owner,
           "smtp": bool(request.app.state.settings.smtp_host), **extra}
    return render(request, "team/webhooks.html", ctx, status_code=status_code)


@pages.get("/team/webhooks")
def webhooks_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return _page(request, db, p)


@pages.post("/team/webhooks")
async def create_webhook_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    require_owner(p.role)
    form = await request.form()
    try:
        hook, secret = service.create_webhook(db, team_id=p.team_id, user_id=p.user.id, url=str(form.get("url", "")),
                                              events=[str(e) for e in form.getlist("events")],
                                              description=str(form.get("description", "")))
    except StudioError as exc:
        db.rollback()
        return _page(request, db, p, error=exc.message, status_code=exc.status_code,
                     asked={"url": str(form.get("url", "")), "description": str(form.get("description", "")),
                            "events": [str(e) for e in form.getlist("events")]})
    db.commit()
    return _page(request, db, p, new_secret=secret, new_hook=hook)


@pages.post("/team/webhooks/{webhook_id}/delete")
def delete_webhook_page(request: Request, webhook_id: int, db: SessionDep, p: CurrentUser) -> Response:
    require_owner(p.role)
    service.delete_webhook(db, team_id=p.team_id, webhook_id=webhook_id)
    return redirect(request, "/team/webhooks", flash=("success", "Webhook deleted: it is no longer called."))


@pages.post("/team/webhooks/{webhook_id}/rotate-secret")
def rotate_secret_page(request: Request, webhook_id: int, db: SessionDep, p: CurrentUser) -> Response:
    require_owner(p.role)
    hook, secret = service.rotate_secret(db, team_id=p.team_id, webhook_id=webhook_id)
    db.commit()
    return _page(request, db, p, new_secret=secret, new_hook=hook, rotated=True)


def _test(request: Request, db, team_id: int, webhook_id: int):  # noqa: ANN001, ANN202
    """Writes the test delivery, commits it, and sends it now (one try), in this request."""
    row = service.send_test(db, team_id=team_id, webhook_id=webhook_id)
    db.commit()
    delivery.attempt(row.id, force=True, settings=request.app.state.settings)
    db.expire_all()
    return repo.deliveries(db, team_id=team_id, webhook_id=webhook_id, limit=1)[0]


@pages.post("/team/webhooks/{webhook_id}/test")
def test_webhook_page(request: Request, webhook_id: int, db: SessionDep, p: CurrentUser) -> Response:
    require_owner(p.role)
    d = _test(request, db, p.team_id, webhook_id)
    if d.status == "succeeded":
        flash = ("success", f"Test delivered: the receiver answered {d.last_status_code}.")
    else:
        flash = ("error", f"The test was not delivered: {d.last_error}")
    return redirect(request, "/team/webhooks", flash=flash)


# -- native API ----------------------------------------------------------------------------------

@api.get("/webhooks/events", response_model=list[EventOut])
def list_events(p: CurrentPrincipal) -> list[EventOut]:
    """The events a webhook can take."""
    p.require("read")
    return [EventOut(name=k, description=v) for k, v in service.EVENTS.items()]


@api.get("/webhooks", response_model=list[WebhookOut])
def list_webhooks(db: SessionDep, p: CurrentPrincipal) -> list[WebhookOut]:
    p.require("admin")
    return [WebhookOut.model_validate(h) for h in repo.webhooks(db, p.team_id)]


@api.post("/webhooks", response_model=WebhookCreated, status_code=201)
def create_webhook(body: WebhookCreate, db: SessionDep, p: CurrentPrincipal) -> WebhookCreated:
    """Adds a webhook. The response carries its signing secret, shown only this once."""
    p.require("admin")
    hook, secret = service.create_webhook(db, team_id=p.team_id, user_id=p.user_id, url=body.url,
                                          events=body.events, description=body.description)
    return WebhookCreated(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


@api.delete("/webhooks/{webhook_id}", response_model=WebhookOut)
def delete_webhook(webhook_id: int, db: SessionDep, p: CurrentPrincipal) -> WebhookOut:
    p.require("admin")
    out = WebhookOut.model_validate(service.get_webhook(db, team_id=p.team_id, webhook_id=webhook_id))
    service.delete_webhook(db, team_id=p.team_id, webhook_id=webhook_id)
    return out


@api.post("/webhooks/{webhook_id}/rotate-secret", response_model=WebhookCreated)
def rotate_secret(webhook_id: int, db: SessionDep, p: CurrentPrincipal) -> WebhookCreated:
    """Gives the webhook a new signing secret, shown only in this response. The old secret stops
    at once: every call from now on, retries included, is signed with the new one."""
    p.require("admin")
    hook, secret = service.rotate_secret(db, team_id=p.team_id, webhook_id=webhook_id)
    return WebhookCreated(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


@api.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(webhook_id: int, db: SessionDep, p: CurrentPrincipal) -> list[DeliveryOut]:
    """The webhook's latest deliveries (newest first), each with its attempts."""
    p.require("admin")
    service.get_webhook(db, team_id=p.team_id, webhook_id=webhook_id)
    return _log(db, p.team_id, webhook_id=webhook_id, limit=100)


@api.post("/webhooks/{webhook_id}/test", response_model=DeliveryOut)
def test_webhook(request: Request, webhook_id: int, db: SessionDep, p: CurrentPrincipal) -> DeliveryOut:
    """Sends a "webhook.test" event to this webhook now (one try) and returns the delivery."""
    p.require("admin")
    _test(request, db, p.team_id, webhook_id)
    return _log(db, p.team_id, webhook_id=webhook_id, limit=1)[0]
