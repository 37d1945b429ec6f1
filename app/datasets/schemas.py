"""JSON shapes of the dataset endpoints (/api/v1/datasets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.models import Dataset
from datacheck import Row


class DatasetOut(BaseModel):
    id: int
    name: str
    version: int
    status: Literal["uploaded", "validating", "valid", "invalid"] = Field(
        description="uploaded: waiting for a worker; validating: being checked; valid: ready to "
                    "train on (and never changes again); invalid: see the report")
    original_filename: str
    goal: str
    format: str | None = Field(description="chat, prompt_completion, input_output, alpaca, csv, tsv")
    sha256: str
    size_bytes: int
    num_examples: int | None = Field(description="examples read (training and evaluation)")
    train_examples: int | None
    eval_examples: int | None
    eval_fraction: float
    split_seed: int
    has_eval_file: bool = Field(description="a separate evaluation file was uploaded")
    column_mapping: dict[str, Any] | None
    tokenizer_model_id: int | None
    explanation: str | None = Field(description="the report's summary in plain words")
    created_at: datetime
    duplicate_of: int | None = Field(
        None, description="set when this upload was identical to an existing dataset: that one's id")

    @classmethod
    def of(cls, dataset: Dataset, *, duplicate: bool = False) -> DatasetOut:
        report = dataset.report or {}
        counts = report.get("counts") or {}
        return cls(
            id=dataset.id, name=dataset.name, version=dataset.version, status=dataset.status.value,
            original_filename=dataset.original_filename, goal=dataset.goal, format=dataset.format,
            sha256=dataset.sha256, size_bytes=dataset.size_bytes, num_examples=dataset.num_examples,
            train_examples=counts.get("train_examples") if report else None,
            eval_examples=counts.get("eval_examples") if report else None,
            eval_fraction=dataset.eval_fraction, split_seed=dataset.split_seed,
            has_eval_file=dataset.eval_dataset_id is not None, column_mapping=dataset.column_mapping,
            tokenizer_model_id=dataset.tokenizer_model_id, explanation=report.get("explanation"),
            created_at=dataset.created_at, duplicate_of=dataset.id if duplicate else None)


class DatasetPage(BaseModel):
    data: list[DatasetOut]
    total: int
    offset: int
    limit: int


class ReportOut(BaseModel):
    dataset_id: int
    status: str
    report: dict[str, Any] | None = Field(
        description="the validation report (see docs/datasets.md); null until the check ran")


class RowsOut(BaseModel):
    dataset_id: int
    split: Literal["train", "eval"]
    offset: int
    limit: int
    query: str
    rows: list[Row]
    has_more: bool


class MappingIn(BaseModel):
    prompt: str = Field(min_length=1, description="column holding the prompt (the user message)")
    completion: str = Field(min_length=1, description="column holding the answer")
    system: str | None = Field(None, description="column holding a system message, if any")
