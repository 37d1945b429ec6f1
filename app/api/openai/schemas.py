"""JSON shapes of the OpenAI-compatible API: the fields the official `openai` SDK parses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    details: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    """The one error shape of both APIs (the OpenAI one)."""

    error: ErrorBody


# -- files ----------------------------------------------------------------------------------

class FileOut(BaseModel):
    id: str = Field(examples=["file-12"])
    object: Literal["file"] = "file"
    bytes: int
    created_at: int = Field(description="Unix seconds.")
    filename: str
    purpose: Literal["fine-tune"] = "fine-tune"
    status: Literal["uploaded", "processed", "error"] = Field(
        description="uploaded: being validated; processed: valid; error: see status_details.")
    status_details: str | None = None
    expires_at: int | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileOut]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class FileDeletedOut(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


# -- fine-tuning ----------------------------------------------------------------------------

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_epochs: Auto | int | None = Field(None, description="'auto' or 1..50", examples=[3])
    batch_size: Auto | int | None = Field(None, description="'auto' or 1..256 (examples per step)")
    learning_rate_multiplier: Auto | float | None = Field(
        None, description="'auto' or a factor (0, 10] applied to the preset's learning rate")
    devices: Auto | int | None = Field(
        None, description="Studio extension: how many GPUs (1..64, on one worker host) the job trains on; "
        "batch_size stays the effective batch over all of them.", examples=[4])


class Supervised(BaseModel):
    hyperparameters: Hyperparameters | None = None


class DpoHyperparameters(Hyperparameters):
    beta: Auto | float | None = Field(
        None, description="'auto' or (0, 10]: how far the model may move from the base model (0.1 is usual; "
        "lower lets it move further)", examples=[0.1])


class Dpo(BaseModel):
    hyperparameters: DpoHyperparameters | None = None


class MethodIn(BaseModel):
    type: Literal["supervised", "dpo"] = Field(
        description="supervised: learn from example answers. dpo: learn from preference pairs (a training file "
        "in OpenAI's preference format, or {prompt, chosen, rejected}).")
    supervised: Supervised | None = None
    dpo: Dpo | None = None


class JobCreateIn(BaseModel):
    model: str = Field(min_length=1, max_length=200,
                       description="A base model id from GET /v1/models (its slug, or its numeric id).",
                       examples=["smollm2-135m-instruct"])
    training_file: str = Field(min_length=1, max_length=64, examples=["file-12"])
    validation_file: str | None = Field(None, max_length=64)
    hyperparameters: Hyperparameters | None = None
    method: MethodIn | None = None
    suffix: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9_-]*$", examples=["support-fr"])
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    devices: int | None = Field(
        None, description="Studio extension (the official SDK sends it with extra_body={\"devices\": 4}): how "
        "many GPUs the job trains on; method.supervised.hyperparameters.devices wins when both are given.",
        examples=[4])


class JobError(BaseModel):
    code: str = Field(description="For a file that did not pass its check: the file's own error kind "
                      "(e.g. invalid_json).")
    message: str
    param: str | None = Field(None, description="training_file or validation_file for a file's error.")
    line: int | None = Field(None, description="Studio extension: the file's line with the error, when known.")


class HyperparametersOut(BaseModel):
    n_epochs: Auto | int | None = None
    batch_size: Auto | int | None = None
    learning_rate_multiplier: Auto | float | None = None
    devices: int | None = Field(None, description="Studio extension: GPUs the job trains on.")


class MethodOut(BaseModel):
    type: Literal["supervised", "dpo"] = "supervised"
    supervised: dict[str, Any] | None = None
    dpo: dict[str, Any] | None = None


class JobOut(BaseModel):
    id: str = Field(examples=["ftjob-7"])
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None = None
    estimated_finish: int | None = None
    error: JobError | None = None
    fine_tuned_model: str | None = Field(None, examples=["ft:smollm2-135m-instruct:team-1:support-fr:7"])
    hyperparameters: HyperparametersOut
    method: MethodOut
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    suffix: str | None = None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobOut]
    has_more: bool


class EventOut(BaseModel):
    id: str = Field(examples=["ftevent-31"])
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventOut]
    has_more: bool


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    valid_loss: float | None = None


class CheckpointOut(BaseModel):
    id: str = Field(examples=["ftckpt-3"])
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CheckpointOut]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


# -- models ---------------------------------------------------------------------------------

class ModelOut(BaseModel):
    id: str = Field(examples=["smollm2-135m-instruct"])
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class ModelDeletedOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool
