"""The data types every stage of the dataset checks shares (a leaf: it imports no stage).

The formats a file may be in, the goals a dataset trains for, an internal message, the
tokenizer callback, and the JSON-serialisable results: the validation report and its parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

# One message of the internal record (see datacheck.parse.messages for its rules).
Message = dict[str, Any]
# The base model's tokenizer, as the caller supplies it: texts -> one token count each.
CountTokens = Callable[[list[str]], Sequence[int]]


class DatasetFormat(StrEnum):
    CHAT = "chat"
    PROMPT_COMPLETION = "prompt_completion"
    INPUT_OUTPUT = "input_output"
    ALPACA = "alpaca"
    CSV = "csv"
    TSV = "tsv"
    PREFERENCE = "preference"  # {"prompt", "chosen", "rejected"}: a better and a worse answer
    OPENAI_PREFERENCE = "openai_preference"  # {"input", "preferred_output", "non_preferred_output"}


PREFERENCE_FORMATS = frozenset(("preference", "openai_preference"))


FORMAT_LABELS: dict[DatasetFormat, str] = {
    DatasetFormat.CHAT: "Chat format (OpenAI)",
    DatasetFormat.PROMPT_COMPLETION: 'Prompt/completion format ("prompt", "completion")',
    DatasetFormat.INPUT_OUTPUT: 'Input/output format ("input", "output")',
    DatasetFormat.ALPACA: 'Alpaca format ("instruction", "input", "output")',
    DatasetFormat.CSV: "CSV table",
    DatasetFormat.TSV: "TSV table (tab-separated)",
    DatasetFormat.PREFERENCE: 'Preference pairs ("prompt", "chosen", "rejected")',
    DatasetFormat.OPENAI_PREFERENCE: "Preference pairs (OpenAI preference format)",
}


class Goal(StrEnum):
    SUPPORT_ANSWERS = "support_answers"
    BRAND_VOICE = "brand_voice"
    CLASSIFICATION = "classification"
    EXTRACTION = "extraction"
    CODE = "code"
    OTHER = "other"


GOAL_LABELS = {
    Goal.SUPPORT_ANSWERS: "answering customer questions",
    Goal.BRAND_VOICE: "writing in your brand's voice",
    Goal.CLASSIFICATION: "sorting texts into categories",
    Goal.EXTRACTION: "pulling facts out of texts",
    Goal.CODE: "writing code",
    Goal.OTHER: "your task",
}


class ColumnMapping(BaseModel):
    """Which CSV/TSV columns hold the prompt, the answer and (optionally) a system message."""

    prompt: str
    completion: str
    system: str | None = None


class LineError(BaseModel):
    """One problem. ``line`` is 1-based (for CSV, the file line where the row starts);
    None when the problem is about the whole file."""

    line: int | None
    kind: str
    message: str
    file: Literal["train", "eval"] = "train"


class ReportWarning(BaseModel):
    """Something that does not stop training but deserves a look."""

    kind: str
    message: str
    count: int
    lines: list[int] = Field(default_factory=list, description="first affected lines")
    eval_lines: list[int] = Field(default_factory=list, description="same, in the eval file")


class Counts(BaseModel):
    lines: int = 0
    blank_lines: int = 0
    examples: int = 0  # examples read as conversations, train and eval together
    invalid: int = 0  # errors found (one per line, row or item; an example over the
    #                   model's token limit is counted here and in examples)
    train_examples: int = 0
    eval_examples: int = 0
    with_system: int = 0
    multi_turn: int = 0
    with_tools: int = 0  # conversations with tool definitions (tool calling)
    pairs: int = 0  # preference pairs among the examples (train and eval)


class HistogramBin(BaseModel):
    start: int  # inclusive
    end: int  # exclusive
    count: int


class LengthStats(BaseModel):
    """Distribution of one length (of prompts, answers or whole examples)."""

    unit: Literal["tokens", "characters"]
    count: int
    total: int
    mean: float
    min: int
    max: int
    p50: int  # percentiles are bin upper bounds: exact within a few percent
    p90: int
    p99: int
    bins: list[HistogramBin]


class LanguageShare(BaseModel):
    code: str  # ISO 639-1, or "unknown"
    name: str
    share: float  # of the sampled examples


class DatasetStats(BaseModel):
    examples: int
    length_unit: Literal["tokens", "characters"]
    prompt_lengths: LengthStats
    answer_lengths: LengthStats
    example_lengths: LengthStats
    tokens_per_epoch: int  # training examples only
    tokens_are_estimated: bool  # True without a tokenizer: characters / 4
    language: str | None  # main language code, None when unknown
    languages: list[LanguageShare]
    duplicates: int  # examples that repeat an earlier one exactly


class Guidance(BaseModel):
    goal: str
    task_type: Literal["classification", "extraction", "generation", "style"]
    minimum: int
    recommended_low: int
    recommended_high: int
    examples: int
    verdict: Literal["too_few", "enough", "recommended", "plenty"]
    message: str
    tips: list[str]


class ValidationReport(BaseModel):
    status: Literal["valid", "invalid"]
    format: DatasetFormat | None
    format_label: str
    container: Literal["jsonl", "json_array", "table"] | None
    explanation: str
    counts: Counts
    errors: list[LineError]  # the first ones (see errors_truncated); all are in error_counts
    error_counts: dict[str, int]
    errors_truncated: bool
    warnings: list[ReportWarning]
    stats: DatasetStats | None
    guidance: Guidance | None
    columns: list[str] | None = None  # CSV/TSV header, for the mapping step
    mapping: ColumnMapping | None = None
    mapping_proposed: bool = False  # True when the mapping was guessed from header names
    eval_from: Literal["split", "file"] = "split"
