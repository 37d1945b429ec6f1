"""JSON shapes of the webhook endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class WebhookCreate(BaseModel):
    url: str = Field(max_length=500, examples=["https://hooks.example.com/studio"])
    events: list[str] = Field(min_length=1, max_length=20, examples=[["run.succeeded", "run.failed"]],
                              description="Event names: run.succeeded, run.failed, run.cancelled, "
                                          "sweep.finished, ab_test.finished, release.moved.")
    description: str = Field("", max_length=200, examples=["deploy bot"])


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    description: str
    events: list[str]
    secret_prefix: str = Field(description="The first characters of the signing secret.")
    is_active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...). Shown only in this response (when the "
                                    "webhook is added, and when its secret is rotated).")


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int | None
    created_at: datetime


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int | None
    event: str
    event_id: str
    status: str = Field(description="pending (tried again at next_attempt_at), succeeded or failed.")
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any] = Field(description="The JSON body sent.")
    attempt_log: list[AttemptOut]


class EventOut(BaseModel):
    name: str
    description: str
