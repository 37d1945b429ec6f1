"""Evaluations, blind A/B comparisons with their votes, and sweeps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, Timestamped, UTCDateTime


class Evaluation(Timestamped, Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="automatic")  # automatic | llm_judge
    status: Mapped[str] = mapped_column(String(16), default="pending")
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # [{prompt, reference, base, finetuned}] for a sample of eval prompts.
    samples: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    error_message: Mapped[str | None] = mapped_column(Text)
    # How it was made: sample size, generation settings, the judge's endpoint and model, ...
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Comparison(Timestamped, Base):
    """A blind A/B comparison between two models (base or fine-tuned) over a prompt set."""

    __tablename__ = "comparisons"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    # {"kind": "base", "id": 1} or {"kind": "run", "id": 7}
    model_a: Mapped[dict[str, Any]] = mapped_column(JSONType)
    model_b: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Where the prompts came from: {"kind": "eval_split", "dataset_id": 3, "count": 20} or {"kind": "custom"}
    prompt_source: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error_message: Mapped[str | None] = mapped_column(Text)
    # Once closed, the A/B mapping is revealed to everyone and no more votes are taken.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ComparisonPair(Base):
    __tablename__ = "comparison_pairs"

    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(
        ForeignKey("comparisons.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    answer_a: Mapped[str] = mapped_column(Text, default="")
    answer_b: Mapped[str] = mapped_column(Text, default="")
    reference: Mapped[str | None] = mapped_column(Text)  # the dataset's answer, when there is one
    # Shown to voters as left/right; swapped says left is B. Revealed only after voting.
    swapped: Mapped[bool] = mapped_column(Boolean, default=False)


class Vote(Timestamped, Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("pair_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(
        ForeignKey("comparison_pairs.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    choice: Mapped[str] = mapped_column(String(8))  # a | b | tie (in model terms, not sides)


class Sweep(Timestamped, Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    base_config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    search_space: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metric: Mapped[str] = mapped_column(String(64), default="eval_loss")
    mode: Mapped[str] = mapped_column(String(8), default="min")
    max_parallel: Mapped[int] = mapped_column(Integer, default=2)
    status: Mapped[str] = mapped_column(String(16), default="running")
    best_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL", use_alter=True, name="fk_sweeps_best_run")
    )
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    base_model_id: Mapped[int | None] = mapped_column(ForeignKey("base_models.id", ondelete="SET NULL"))
    promoted_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL", use_alter=True, name="fk_sweeps_promoted_run")
    )
    error_message: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
