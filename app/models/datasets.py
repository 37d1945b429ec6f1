"""Uploaded datasets: immutable once validated; a new upload of the same name is a new version."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Enum, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, Timestamped, UTCDateTime


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
    # The cleaning scan (studio.scan_dataset, after validation): near duplicates and personal
    # data with a few examples each; {"status": "running"} while it runs. See datacheck.cleaning.
    # Deferred: it lists every example a clean version would drop, so lists of datasets skip it.
    cleaning: Mapped[dict[str, Any] | None] = mapped_column(JSONType, deferred=True)
    # How this version was made from another one, when it was: {"kind": "without_near_duplicates"
    # | "redacted" | "augmented", "from_dataset_id": 3, ...}. Per-example provenance is the
    # dataset's "dataset_provenance" artifact (one JSON object per training example).
    origin: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class AugmentationStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class AugmentationJob(Timestamped, Base):
    """Generating new examples from a dataset through an OpenAI-compatible endpoint. The
    examples wait in `generated_examples` until someone reviews them."""

    __tablename__ = "augmentation_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[AugmentationStatus] = mapped_column(
        Enum(AugmentationStatus, native_enum=False, length=16), default=AugmentationStatus.queued)
    endpoint_url: Mapped[str] = mapped_column(String(500))
    # Encrypted with a key derived from the studio's secret key; never shown or logged.
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    # {"kinds": ["paraphrase", ...], "house_style": "...", "max_calls": 50, "max_tokens": 20000,
    #  "sources": 10}
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType)
    calls_used: Mapped[int] = mapped_column(Integer, default=0)
    tokens_used: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    done_steps: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message: Mapped[str | None] = mapped_column(Text)  # why it stopped, or the budget note
    result_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))


class GeneratedExample(Timestamped, Base):
    """One generated example; `status` pending until reviewed (accepted | rejected), or
    duplicate when it repeats an existing example (dropped, never offered)."""

    __tablename__ = "generated_examples"
    __table_args__ = (UniqueConstraint("job_id", "source_example", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("augmentation_jobs.id", ondelete="CASCADE"), index=True)
    source_example: Mapped[int] = mapped_column(Integer)  # 1-based training example number
    kind: Mapped[str] = mapped_column(String(32))  # paraphrase | new_question | house_style
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
