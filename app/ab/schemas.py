"""JSON shapes of the A/B comparisons API. Before the reveal nothing in them says which side is
which model: pairs come as left/right, votes are echoed as the side that was clicked."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.ab.prompts import MAX_PROMPTS


class ModelRef(BaseModel):
    kind: Literal["base", "run"] | None = Field(None, description="A base model, or a fine-tuned run (run).")
    id: int | None = Field(None, gt=0, description="The base model's id (GET /api/v1/models) or the run's id.")
    model: str | None = Field(None, max_length=300, description=(
        "Instead of kind and id: a model name as /v1/chat/completions takes it: a base model's slug, an "
        "ft: name, a version (support-bot:v3) or an alias (support-bot:prod: the version it points at now)."))


class ComparisonCreate(BaseModel):
    name: str = Field("", max_length=200, description="Defaults to “<model A> vs <model B>”.")
    model_a: ModelRef = Field(examples=[{"kind": "base", "id": 1}, {"model": "support-bot:prod"}])
    model_b: ModelRef = Field(examples=[{"kind": "run", "id": 7}])
    prompts: list[str] | None = Field(None, max_length=MAX_PROMPTS,
                                      description="The prompts; or leave out and give dataset_id.")
    dataset_id: int | None = Field(None, description="Sample prompts from this dataset's eval split (its "
                                                     "train split when it has none).")
    count: int = Field(20, ge=1, le=MAX_PROMPTS, description="How many prompts to sample from the dataset.")
    system: str | None = Field(None, max_length=4000, description="An optional system message for both models.")
    max_new_tokens: int = Field(256, ge=16, le=2048, description="Longest answer, in tokens (greedy decoding).")


class ModelOut(BaseModel):
    kind: str
    id: int
    label: str


class ResultsOut(BaseModel):
    votes: int
    voters: int
    a_wins: int
    b_wins: int
    ties: int
    decisive: int
    win_rate_a: float | None = Field(description="(A wins + ties/2) / votes.")
    win_rate_b: float | None = Field(description="(B wins + ties/2) / votes.")
    share_b_decisive: float | None = Field(description="B wins / decisive votes (ties left out).")
    ci_low: float = Field(description="95% Wilson score interval of share_b_decisive.")
    ci_high: float
    p_value: float = Field(description="Two-sided exact sign (binomial) test on decisive votes.")
    significant: bool
    preferred: Literal["a", "b"] | None
    verdict: str


class PairOut(BaseModel):
    id: int
    prompt: str
    reference: str | None
    left: str
    right: str
    your_vote: Literal["left", "right", "tie"] | None = Field(description="The side you chose.")
    left_model: Literal["a", "b"] | None = Field(None, description="Which model answered on the left; "
                                                                   "only once revealed to you.")
    votes: dict[str, int] | None = Field(None, description="Votes for a, b and tie; only once revealed.")


class ComparisonOut(BaseModel):
    id: int
    name: str
    status: str
    model_a: ModelOut
    model_b: ModelOut
    prompt_source: dict[str, Any] = Field(description="Where the prompts came from.")
    pairs_total: int
    progress: dict[str, int] = Field(description="Answers generated so far, of all to generate.")
    error_message: str | None
    created_at: datetime
    closed_at: datetime | None


class ComparisonDetail(ComparisonOut):
    your_votes: int
    can_vote: bool
    revealed: bool = Field(description="True once you voted on every pair, or once the comparison is closed.")
    votes_so_far: int
    pairs: list[PairOut] = Field(description="In your own random order; empty until the answers exist.")
    results: ResultsOut | None = Field(None, description="Only once revealed to you.")


class ComparisonPage(BaseModel):
    data: list[ComparisonOut]


class VoteIn(BaseModel):
    choice: Literal["left", "right", "tie"] = Field(description="The side you prefer, or tie.")


class VoteOut(BaseModel):
    pair_id: int
    choice: Literal["left", "right", "tie"]
    remaining: int = Field(description="Pairs you have not voted on yet.")
    revealed: bool
