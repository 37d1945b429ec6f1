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


# -- cleaning and augmentation (app/datasets/cleaning_api.py) ----------------------------------


class CleaningOut(BaseModel):
    dataset_id: int
    status: Literal["not_run", "queued", "running", "done", "failed"] = Field(
        description="the near-duplicate and personal-data scan: not_run (a dataset checked before the "
                    "scan existed, or not valid), queued, running, done, failed")
    message: str | None = Field(None, description="why the scan stopped, when it failed")
    train_examples: int | None = None
    eval_examples: int | None = None
    near_duplicates: dict[str, Any] | None = Field(
        None, description="groups (within training), extra (later copies), examples (first groups, 1-based), "
                          "eval_groups, between (evaluation examples resembling training ones), "
                          "between_examples ([eval, train] pairs), drop_train and drop_eval (what a version "
                          "without near duplicates removes), crossing (0-based evaluation examples the "
                          "re-split moves; empty once moved)")
    personal_data: dict[str, Any] | None = Field(
        None, description="per kind (email, phone, iban, card): count, examples_with, examples "
                          "(file, example, role, value partly hidden)")
    personal_total: int | None = None
    resplit: dict[str, Any] | None = Field(
        None, description="set when the scan moved evaluation examples that resembled training ones into "
                          "training: moved, train_examples, eval_examples")
    finished_at: str | None = None

    @classmethod
    def of(cls, dataset: Dataset) -> CleaningOut:
        found = dataset.cleaning or {}
        keep = {k: found.get(k) for k in ("message", "train_examples", "eval_examples", "near_duplicates",
                                          "personal_data", "personal_total", "resplit", "finished_at")}
        return cls(dataset_id=dataset.id, status=found.get("status") or "not_run", **keep)


class DerivedOut(BaseModel):
    dataset: DatasetOut = Field(description="the new version; it is checked in the background (poll it)")
    dropped_duplicates: int = Field(0, description="accepted examples left out as repeats of others")


class AugmentationIn(BaseModel):
    endpoint_url: str = Field(max_length=500, description="an OpenAI-compatible base URL, e.g. "
                                                          "http://studio:8000/v1 (the studio's own)")
    api_key: str = Field("", max_length=2000, description="stored encrypted, never shown back")
    model: str = Field(max_length=200, description="the model to ask, as the endpoint names it")
    kinds: list[Literal["paraphrase", "new_question", "house_style"]] = Field(
        min_length=1, max_length=3, description="what to generate from each source example")
    house_style: str = Field("", max_length=2000, description="required with house_style")
    sources: int = Field(10, description="training examples to start from (1-500)")
    max_calls: int | None = Field(None, description="budget of calls (default: sources x kinds; at most 2,000)")
    max_tokens: int = Field(50_000, description="budget of tokens (100-5,000,000)")
    max_answer_tokens: int = Field(512, description="max_tokens of each call: the longest answer (16-4,096)")


class AugmentationOut(BaseModel):
    id: int
    dataset_id: int
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    endpoint_url: str
    model: str
    has_api_key: bool
    settings: dict[str, Any]
    calls_used: int
    tokens_used: int
    total_steps: int
    done_steps: int
    cancel_requested: bool
    message: str | None
    result_dataset_id: int | None
    counts: dict[str, int] = Field(description="generated examples by review state: pending, accepted, "
                                               "rejected, duplicate (dropped, never offered)")
    created_at: datetime

    @classmethod
    def of(cls, job: Any, counts: dict[str, int]) -> AugmentationOut:
        return cls(id=job.id, dataset_id=job.dataset_id, status=job.status.value, endpoint_url=job.endpoint_url,
                   model=job.model, has_api_key=bool(job.api_key_encrypted), settings=job.settings or {},
                   calls_used=job.calls_used or 0, tokens_used=job.tokens_used or 0,
                   total_steps=job.total_steps or 0, done_steps=job.done_steps or 0,
                   cancel_requested=bool(job.cancel_requested), message=job.message,
                   result_dataset_id=job.result_dataset_id, counts=counts, created_at=job.created_at)


class GeneratedExampleOut(BaseModel):
    id: int
    job_id: int
    source_example: int = Field(description="1-based training example it was made from")
    kind: str
    messages: list[dict[str, Any]]
    status: Literal["pending", "accepted", "rejected", "duplicate"]
    edited: bool
    tokens: int


class GeneratedPage(BaseModel):
    data: list[GeneratedExampleOut]
    total: int
    offset: int
    limit: int


class ReviewIn(BaseModel):
    action: Literal["accept", "reject"]
    ids: list[int] | None = Field(None, max_length=10_000, description="the examples to review")
    all_pending: bool = Field(False, description="review every pending example instead of ids")


class ReviewOut(BaseModel):
    changed: int
    counts: dict[str, int]


class EditIn(BaseModel):
    contents: list[str] = Field(min_length=1, max_length=100,
                                description="the new text of each message, in order (same roles); "
                                            "the example is then accepted")
