"""JSON shapes of the sweeps API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.sweeps.grid import MAX_RUNS
from app.sweeps.service import MAX_PARALLEL


class SweepCreate(BaseModel):
    dataset_id: int = Field(description="A validated dataset of your team.", examples=[1])
    base_model_id: int = Field(description="A base model from GET /api/v1/models.", examples=[1])
    search_space: dict[str, list[Any]] = Field(
        description=f"TrainingConfig field -> values to try; every combination is one run (at most {MAX_RUNS}).",
        examples=[{"learning_rate": [1e-4, 3e-4], "lora_r": [8, 16]}])
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Settings shared by every run (overrides of the preset).",
        examples=[{"max_steps": 30}])
    preset: str = Field("auto", description="auto (adapted to model, data and hardware) or classic.")
    name: str = Field("", max_length=200)
    metric: str = Field("eval_loss", max_length=64,
                        description="What picks the best run: eval_loss (default), train_loss, perplexity, or a "
                        "score of the runs' evaluations (bleu, rougeL, exact_match, accuracy).")
    mode: Literal["min", "max"] | None = Field(None, description="min: lower is better (the default for losses "
                                               "and perplexity); max: higher is better (other scores).")
    max_parallel: int = Field(2, ge=1, le=MAX_PARALLEL,
                              description="How many runs of the sweep may be queued or running at once.")


class PromoteBody(BaseModel):
    run_id: int | None = Field(None, description="A succeeded run of the sweep; empty promotes the best one.")


class SweepRun(BaseModel):
    index: int = Field(description="The grid point's position in the search space's expansion.")
    params: dict[str, Any]
    status: str = Field(description="waiting (not queued yet), not_run (the sweep ended first), or the run's status.")
    run_id: int | None
    value: float | None = Field(description="The run's value of the sweep's metric, once it has one.")
    is_best: bool
    is_promoted: bool


class SweepOut(BaseModel):
    id: int
    name: str
    status: str
    metric: str
    mode: str
    max_parallel: int
    search_space: dict[str, list[Any]]
    base_config: dict[str, Any]
    dataset_id: int | None
    base_model_id: int | None
    best_run_id: int | None
    promoted_run_id: int | None
    error_message: str | None
    created_at: datetime
    finished_at: datetime | None
    total_runs: int
    counts: dict[str, int] = Field(description="Runs by status, waiting included.")
    runs: list[SweepRun] | None = Field(None, description="Every grid point, best first (GET one sweep only).")


class SweepPage(BaseModel):
    data: list[SweepOut]
    next_cursor: int | None = Field(None, description="Pass as ?before= for the next page.")
