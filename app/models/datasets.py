"""Uploaded datasets: immutable once validated; a new upload of the same name is a new version."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import BigInteger, Enum, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, Timestamped


class DatasetStatus(str, enum.Enum):
    uploaded = "uploaded"
    validating = "validating"
    valid = "valid"
    invalid = "invalid"


class Dataset(Timestamped, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("team_id", "name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[DatasetStatus] = mapped_column(
        Enum(DatasetStatus, native_enum=False, length=16), default=DatasetStatus.uploaded
    )
    original_filename: Mapped[str] = mapped_column(String(255), default="")
    purpose: Mapped[str] = mapped_column(String(32), default="fine-tune")
    # Goal the user picked (support, brand_voice, classification, extraction, code, other).
    goal: Mapped[str] = mapped_column(String(32), default="other")
    format: Mapped[str | None] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Artifact-store keys of the raw upload and of the normalised records (the internal
    # {"messages": [...]} form), already split into training and evaluation examples.
    raw_path: Mapped[str] = mapped_column(String(500))
    normalized_path: Mapped[str | None] = mapped_column(String(500))
    normalized_eval_path: Mapped[str | None] = mapped_column(String(500))
    # The base model whose tokenizer counted the tokens in `stats`.
    tokenizer_model_id: Mapped[int | None] = mapped_column(ForeignKey("base_models.id", ondelete="SET NULL"))
    column_mapping: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    num_examples: Mapped[int | None] = mapped_column(Integer)
    eval_fraction: Mapped[float] = mapped_column(Float, default=0.1)
    split_seed: Mapped[int] = mapped_column(Integer, default=42)
    # A separate eval file, when the user gave one instead of a split.
    eval_dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL")
    )
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
