"""What a team pays for its hardware, and what it pays today for the answers it wants to replace."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime


class TeamCostSettings(Base):
    """One row per team, made when an owner first saves prices (until then the defaults of
    app/costs/catalog.py apply). ``prices`` maps a device type key (catalog.DEVICE_TYPES) to the
    price of one device for one hour; keys not in it take the default."""

    __tablename__ = "team_cost_settings"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    prices: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Return on investment: what the team pays today per request (e.g. to a hosted API), how many
    # requests a month, and how many tokens an answer has (what the serving estimate generates).
    api_price_per_request: Mapped[float | None] = mapped_column(Float)
    monthly_requests: Mapped[int | None] = mapped_column(Integer)
    tokens_per_answer: Mapped[int | None] = mapped_column(Integer)
    serving_device: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
