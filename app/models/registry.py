"""Base models the studio can fine-tune: the built-in one and local directories."""

from __future__ import annotations

import enum

from sqlalchemy import BigInteger, Boolean, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamped


class ModelStatus(str, enum.Enum):
    importing = "importing"
    ready = "ready"
    failed = "failed"


class BaseModel(Timestamped, Base):
    __tablename__ = "base_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL: shared with every team (the built-in model, or one an admin imported for all).
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(120), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))  # builtin | local
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[ModelStatus] = mapped_column(
        Enum(ModelStatus, native_enum=False, length=16), default=ModelStatus.ready
    )
    status_message: Mapped[str] = mapped_column(Text, default="")
    architecture: Mapped[str] = mapped_column(String(120), default="")
    parameter_count: Mapped[int] = mapped_column(BigInteger, default=0)
    context_length: Mapped[int] = mapped_column(Integer, default=0)
    hidden_size: Mapped[int] = mapped_column(Integer, default=0)
    num_layers: Mapped[int] = mapped_column(Integer, default=0)
    vocab_size: Mapped[int] = mapped_column(Integer, default=0)
    chat_template: Mapped[str] = mapped_column(Text, default="")
    license: Mapped[str] = mapped_column(String(120), default="")
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
