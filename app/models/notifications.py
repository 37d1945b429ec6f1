"""Notifications: a team's webhooks, and the outbox of deliveries (webhook calls and e-mails)
with every attempt at each. A delivery row is written in the same transaction as the change it
tells about, so a message is never lost when a process dies after the commit: the reconciler
sends again whatever is due (app/notifications/service.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, Timestamped, UTCDateTime


class Webhook(Timestamped, Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    url: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[str]] = mapped_column(JSONType)  # the event names it is sent
    # The signing secret, encrypted with a key derived from the studio's secret key; the first
    # characters are kept in clear so a person can tell which secret a receiver holds.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class NotificationDelivery(Timestamped, Base):
    """One message to one destination: a webhook (channel "webhook") or a person's e-mail
    address (channel "email"). pending -> succeeded | failed."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_status_next", "status", "next_attempt_at"),
                      Index("ix_notification_deliveries_webhook", "webhook_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # webhook | email
    webhook_id: Mapped[int | None] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    recipient: Mapped[str | None] = mapped_column(String(254))  # the e-mail address
    event: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(40))  # evt_..., the same for every destination
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the JSON body, fixed when written
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    # When the next attempt is due; while an attempt is in flight, when it counts as lost.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeliveryAttempt(Timestamped, Base):
    """One try at a delivery: what the receiver answered (or why there was no answer)."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("notification_deliveries.id", ondelete="CASCADE"),
                                             index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
