"""Queries of webhooks and deliveries; every one of a team's rows is read scoped by team."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import DeliveryAttempt, NotificationDelivery, User, Webhook


def webhooks(session: Session, team_id: int, *, active_only: bool = False) -> list[Webhook]:
    q = select(Webhook).where(Webhook.team_id == team_id)
    if active_only:
        q = q.where(Webhook.is_active.is_(True))
    return list(session.scalars(q.order_by(Webhook.id)))


def webhook(session: Session, *, team_id: int, webhook_id: int) -> Webhook | None:
    return session.scalar(select(Webhook).where(Webhook.id == webhook_id, Webhook.team_id == team_id))


def deliveries(session: Session, *, team_id: int, webhook_id: int | None = None, limit: int = 50,
               channel: str | None = None) -> list[NotificationDelivery]:
    q = select(NotificationDelivery).where(NotificationDelivery.team_id == team_id)
    if webhook_id is not None:
        q = q.where(NotificationDelivery.webhook_id == webhook_id)
    if channel is not None:
        q = q.where(NotificationDelivery.channel == channel)
    return list(session.scalars(q.order_by(NotificationDelivery.id.desc()).limit(limit)))


def attempts_of(session: Session, *, team_id: int, delivery_ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
    out: dict[int, list[DeliveryAttempt]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return out
    rows = session.scalars(select(DeliveryAttempt).where(
        DeliveryAttempt.team_id == team_id, DeliveryAttempt.delivery_id.in_(delivery_ids))
        .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.attempt))
    for row in rows:
        out[row.delivery_id].append(row)
    return out


def delivery_for_update(session: Session, delivery_id: int) -> NotificationDelivery | None:
    """By id alone: the worker's task knows only the id it was sent (the row carries its team)."""
    return session.scalar(select(NotificationDelivery).where(NotificationDelivery.id == delivery_id)
                          .with_for_update())


def due(session: Session, *, before: datetime, limit: int = 200) -> list[int]:
    """Pending deliveries whose next attempt was due before `before` (their message was lost,
    or an attempt in flight died with its process)."""
    return list(session.scalars(select(NotificationDelivery.id).where(
        NotificationDelivery.status == "pending", NotificationDelivery.next_attempt_at < before)
        .order_by(NotificationDelivery.next_attempt_at).limit(limit)))


def email_of(session: Session, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    return user.email if user is not None and user.is_active else None
