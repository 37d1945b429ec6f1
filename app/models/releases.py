"""The team's model registry: named versions of fine-tuned runs, aliases that point at one
version (`support-bot:prod`), the log of every alias move, and the team's quality gate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, Timestamped, UTCDateTime


class ModelVersion(Timestamped, Base):
    """A fine-tuned run registered under a name: the n-th run of that name in the team is vn."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("team_id", "name", "version"), UniqueConstraint("run_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    registered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class ModelAlias(Timestamped, Base):
    """`<name>:<alias>` (support-bot:prod): the version that answers to it, moved by releases."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("team_id", "name", "alias"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    alias: Mapped[str] = mapped_column(String(32))
    # None until its first release completes (a first promotion may still be pending).
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    moved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Release(Timestamped, Base):
    """One request to move an alias, and what became of it: the alias's log.

    status: pending (waiting for the golden-set evaluations), moved, refused (the gate said no),
    failed (an evaluation could not be made), cancelled. kind: promote | rollback."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    alias_id: Mapped[int] = mapped_column(ForeignKey("model_aliases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="promote")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    to_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    # Kept as text too: the log still reads right when a version is deleted.
    from_label: Mapped[str] = mapped_column(String(120), default="")
    to_label: Mapped[str] = mapped_column(String(120), default="")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_by: Mapped[str] = mapped_column(String(320), default="")
    override_reason: Mapped[str | None] = mapped_column(Text)
    # The gate as it was: {"metric", "margin", "dataset_id", "dataset_name"}; None without a gate.
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    candidate_score: Mapped[float | None] = mapped_column(Float)
    holder_score: Mapped[float | None] = mapped_column(Float)
    candidate_evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id", ondelete="SET NULL"))
    holder_evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id", ondelete="SET NULL"))
    message: Mapped[str] = mapped_column(Text, default="")
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class QualityGate(Timestamped, Base):
    """The team's golden set and the metric a new version must not lose on by more than margin."""

    __tablename__ = "quality_gates"
    __table_args__ = (UniqueConstraint("team_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    metric: Mapped[str] = mapped_column(String(32), default="eval_loss")
    margin: Mapped[float] = mapped_column(Float, default=0.0)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
