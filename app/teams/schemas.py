"""JSON shapes for the team, member and API-key endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Me(BaseModel):
    team_id: int
    team_name: str
    role: str
    scopes: list[str]
    user_email: str | None = None
    api_key_prefix: str | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120, examples=["nightly pipeline"])
    scopes: list[str] = Field(default=["read", "write"], examples=[["read", "write"]])


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret key. Shown only in this response.")
