"""JSON shapes of the runs API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PreferenceHyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beta: float | Literal["auto"] | None = Field(None, description="The preference strength (TrainingConfig.beta).")


class PreferenceMethod(BaseModel):
    hyperparameters: PreferenceHyperparameters | None = None


class Method(BaseModel):
    """The OpenAI fine-tuning API's `method`, accepted here too."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised", "dpo", "orpo"] = Field(
        description="supervised (sft): learn from example answers; dpo / orpo: learn from preference pairs.")
    supervised: dict[str, Any] | None = None
    dpo: PreferenceMethod | None = None
    orpo: PreferenceMethod | None = None

    def overrides(self) -> dict[str, Any]:
        """As TrainingConfig overrides: objective and beta."""
        out: dict[str, Any] = {"objective": "sft" if self.type == "supervised" else self.type}
        chosen = self.dpo if self.type == "dpo" else self.orpo if self.type == "orpo" else None
        if chosen and chosen.hyperparameters and chosen.hyperparameters.beta not in (None, "auto"):
            out["beta"] = chosen.hyperparameters.beta
        return out


class RunCreate(BaseModel):
    dataset_id: int = Field(description="A validated dataset of your team.", examples=[1])
    base_model_id: int = Field(description="A base model from GET /api/v1/models.", examples=[1])
    preset: str = Field("auto", description="auto (adapted to model, data and hardware) or classic.")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of TrainingConfig fields, e.g. {\"learning_rate\": 1e-4}. "
        "With {\"devices\": N}, per_device_batch_size x grad_accum is the effective batch asked for and the "
        "accumulation is divided by N so that it stays so (the estimate's reasons say how).",
        examples=[{"max_steps": 30}])
    method: Method | None = Field(
        None, description='As in the OpenAI API: {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}} '
        '(or "orpo"); the same as hyperparameters {"objective": "dpo", "beta": 0.1}. Without it, a dataset '
        "of preference pairs trains with dpo and any other with sft.",
        examples=[{"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}])
    name: str = Field("", max_length=200)
    priority: int = Field(0, ge=0, le=10, description="Higher runs first among your queued runs.")
    suffix: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9_-]*$")
    time_budget_minutes: float | None = Field(None, gt=0, le=7 * 24 * 60,
                                              description="The auto preset limits steps to fit this time.")


class RunAhead(BaseModel):
    id: int
    name: str


class QueueAhead(BaseModel):
    own: list[RunAhead] = Field(description="Your team's queued runs ahead of this one, next first.")
    other_teams: int = Field(description="How many runs of other teams are ahead (never named).")


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: str
    method: str
    dataset_id: int
    base_model_id: int
    goal: str
    priority: int
    attempt: int
    max_attempts: int
    cancel_requested: bool
    current_step: int
    total_steps: int | None
    eta_s: float | None
    error_kind: str | None
    error_message: str | None
    config: dict[str, Any]
    estimate: dict[str, Any] | None
    result: dict[str, Any] | None
    worker_id: str | None
    device_ids: list[int] | None = Field(None, description="The worker's devices the run holds (or last held).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_position: int | None = Field(
        None, description="A queued run's place in line (1 = next), in fair order across teams; null unless queued.")
    queue_ahead: QueueAhead | None = Field(None, description="What is ahead of a queued run; null unless queued.")
    expected_start_at: datetime | None = Field(
        None, description="When a queued run should start, from the running runs' ETAs and the estimated "
        "durations of the runs ahead; null when unknown or not queued.")
    queue_status: str | None = Field(None, description="The same in plain words, as the run page says it.")


class RunPage(BaseModel):
    data: list[RunOut]
    next_cursor: int | None = Field(None, description="Pass as ?before= for the next page.")


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    level: str
    kind: str
    message: str
    data: dict[str, Any] | None


class MetricPoints(BaseModel):
    last_id: int = Field(description="Pass as ?after= to read only newer points.")
    series: dict[str, list[tuple[int, float]]] = Field(description="name -> [(step, value), ...]")


class CheckpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    step: int
    size_bytes: int
    created_at: datetime
    metrics: dict[str, Any] | None


class ArtifactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    size_bytes: int
    sha256: str
    content_type: str
    created_at: datetime


class EstimateOut(BaseModel):
    config: dict[str, Any]
    reasons: list[str]
    estimate: dict[str, Any]
    warnings: list[str]
