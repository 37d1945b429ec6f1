"""JSON shapes of the model registry API (/api/v1/registry)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ServingFindingOut(BaseModel):
    engine: str = Field(description="vllm or llama.cpp.")
    level: str = Field(description="ok, warning, or error (that engine will not load it as it is).")
    message: str


class ServingCheckOut(BaseModel):
    ok: bool = Field(description="True when no engine has a warning or an error.")
    kind: str = Field(description="adapter or model (a full fine-tune).")
    rank: int | None
    target_modules: list[str] | str
    dtype: str = Field(description="The training precision (auto, bf16, fp16, fp32).")
    use_dora: bool
    source: str = Field(description="adapter_config.json (read from the store) or the run configuration.")
    findings: list[ServingFindingOut]


class VersionOut(BaseModel):
    id: int
    name: str
    version: int
    label: str = Field(description="support-bot v3")
    model: str = Field(description="The fine-tuned model's id in /v1/models (ft:...); support-bot:v3 works too.")
    run_id: int
    base_model: str
    dataset_id: int | None
    dataset_name: str | None
    dataset_version: int | None
    config: dict[str, Any]
    scores: dict[str, float] = Field(description="The fine-tuned model's scores in its latest automatic evaluation.")
    trained_by: str
    trained_at: datetime | None
    aliases: list[str]
    serving: ServingCheckOut


class ModelGroupOut(BaseModel):
    name: str
    versions: list[VersionOut]


class ReleaseOut(BaseModel):
    id: int
    alias: str
    kind: str = Field(description="promote or rollback.")
    status: str = Field(description="pending (waiting for the golden-set evaluation), moved, refused, failed, cancelled.")
    from_version: str
    to_version: str
    requested_by: str
    override_reason: str | None
    gate: dict[str, Any] | None = Field(description="The gate as it was: metric, margin, dataset.")
    candidate_score: float | None
    holder_score: float | None
    candidate_evaluation_id: int | None
    holder_evaluation_id: int | None
    message: str
    created_at: datetime
    finished_at: datetime | None


class AliasOut(BaseModel):
    id: int
    model: str = Field(description="support-bot:prod: accepted wherever a model name is.")
    version_id: int | None
    version: str
    moved_at: datetime | None
    pending_release: ReleaseOut | None


class PromoteBody(BaseModel):
    name: str = Field(max_length=64, description="The model name (support-bot).")
    alias: str = Field(max_length=32, description="prod, staging, ... (made on first use).")
    version: int = Field(gt=0, description="The version number to release (3 for support-bot v3).")
    override_reason: str | None = Field(None, max_length=2000, description=(
        "Owners only: release without the gate; the reason is kept in the log."))


class RenameBody(BaseModel):
    name: str = Field(max_length=64, description="The new name; the version becomes its next version.")


class GateBody(BaseModel):
    dataset_id: int | None = Field(None, description="The golden dataset (not needed for ab_win_rate).")
    metric: str = Field(description="eval_loss, rougeL, exact_match, judge_score or ab_win_rate.")
    margin: float = Field(0.0, ge=0, le=100, description="How much worse than the current version a new one may "
                                                          "be, in the metric's units.")


class GateOut(BaseModel):
    dataset_id: int | None
    metric: str
    margin: float
    higher_is_better: bool
