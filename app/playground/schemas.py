"""JSON shapes of the playground: a conversation being had (the stream) and a saved transcript."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

MAX_MODELS = 3
MAX_TURNS = 50
MAX_PROMPT_CHARS = 8000
MAX_ANSWER_CHARS = 50_000
MAX_SYSTEM_CHARS = 4000


class Turn(BaseModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="What the person asked.")
    answers: list[str] = Field(max_length=MAX_MODELS, description="Each model's own answer, in the order of "
                                                                  "`models`.")


class Settings(BaseModel):
    models: list[str] = Field(min_length=1, max_length=MAX_MODELS, examples=[["smollm2-135m-instruct"]],
                              description="1 to 3 model names, as /v1/models lists them (base models, "
                                          "fine-tuned models, checkpoints).")
    system: str | None = Field(None, max_length=MAX_SYSTEM_CHARS, description="A system prompt for every model.")
    temperature: float = Field(0.0, ge=0, le=2, description="0 answers greedily.")
    max_tokens: int = Field(256, ge=1, le=2048, description="Longest answer, in tokens.")


class ChatIn(Settings):
    """The next turn: the conversation so far (each model's own answers) and the new prompt."""

    turns: list[Turn] = Field(default_factory=list, max_length=MAX_TURNS - 1)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


class TranscriptIn(Settings):
    title: str = Field("", max_length=200, description="Defaults to the first prompt's beginning.")
    turns: list[Turn] = Field(min_length=1, max_length=MAX_TURNS)


class TitleIn(BaseModel):
    title: str = Field(min_length=1, max_length=200, examples=["Login trouble, French"],
                       description="The transcript's new title.")


class TranscriptOut(Settings):
    id: int
    title: str
    turns: list[Turn]
    created_by: str | None = Field(description="Who saved it (e-mail), when still a member.")
    created_at: datetime
    url: str = Field(description="The transcript's page, for sharing within the team.")


class TranscriptSummary(BaseModel):
    id: int
    title: str
    models: list[str]
    turns: int
    created_by: str | None
    created_at: datetime
    url: str


class TranscriptPage(BaseModel):
    data: list[TranscriptSummary]
    total: int


class ToAbIn(BaseModel):
    model_a: int = Field(0, ge=0, lt=MAX_MODELS, description="Column of model A (0-based).")
    model_b: int = Field(1, ge=0, lt=MAX_MODELS, description="Column of model B (0-based).")
    name: str = Field("", max_length=200)


class ToAbOut(BaseModel):
    comparison_id: int
    url: str


class ToDatasetIn(BaseModel):
    name: str = Field("", max_length=200, description="Defaults to “Playground: <title>”.")
    chosen: list[int | None] = Field(max_length=MAX_TURNS, description="Per turn, the column whose answer "
                                     "becomes the example (0-based), or null to leave the turn out.")


class ToDatasetOut(BaseModel):
    dataset_id: int
    examples: int
    url: str
