"""JSON shapes of the evaluations API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EvaluationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    run_id: int
    kind: str = Field(description="automatic (metrics computed by the studio), llm_judge (scores by an LLM), "
                                  "golden (the same metrics on the team's golden set, for a release's quality "
                                  "gate) or golden_judge (LLM scores of a golden-set evaluation).")
    status: str = Field(description="pending, running, succeeded or failed.")
    metrics: dict[str, Any] | None = Field(
        description='{"base": {...}, "finetuned": {...}}: eval_loss, perplexity, bleu (0-100), rouge1/rouge2/'
                    'rougeL (0-1), exact_match (0-1), accuracy (0-1, classification goals), '
                    'tool_call_accuracy (0-1, datasets with tools), general_ability (0-1: share '
                    'of the studio\'s general questions answered right; a drop is forgetting), samples.')
    samples: list[dict[str, Any]] | None = Field(
        description="Sample prompts with the reference answer and both models' answers.")
    details: dict[str, Any] | None = Field(description=(
        "How it was made: split, sample size, max_new_tokens, seconds. overlap: eval examples whose prompt is "
        "also a training prompt (eval_examples, overlapping, samples_overlapping, clean_loss_examples) and, when "
        "any overlap, metrics {base, finetuned} measured without them. general_ability: questions, base_correct, "
        "finetuned_correct, dropped, by_language, items (each question with both answers)."))
    error_message: str | None
    created_at: datetime
    finished_at: datetime | None
