"""Playground transcripts: a conversation with up to three models side by side, saved for the team."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, Timestamped


class Transcript(Timestamped, Base):
    """One playground conversation. Every model keeps its own thread: turn i's prompt is shared,
    each model's answer is its own and is what that model saw at later turns."""

    __tablename__ = "playground_transcripts"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200))
    system: Mapped[str | None] = mapped_column(Text)
    temperature: Mapped[float] = mapped_column(Float, default=0.0)
    max_tokens: Mapped[int] = mapped_column(Integer, default=256)
    # The model names as asked (base, ft:..., checkpoint or alias), one per column.
    models: Mapped[list[str]] = mapped_column(JSONType)
    # [{"prompt": "...", "answers": ["column 0's answer", ...]}], one answer per model
    turns: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
