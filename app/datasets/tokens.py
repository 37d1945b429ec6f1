"""The trained-token preview of a dataset, as the pages show it, and the refusal of a run that
would train nothing. Torch-free: the worker's dataset check draws the preview with the engine's
own data code (``worker.training.data.preview_record``, the functions the trainer runs) and
stores it in the report as ``token_preview``; here it is only cut at a training length, as the
trainer cuts (tokens from position ``max_length`` on are dropped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.models import Dataset


@dataclass
class Piece:
    text: str
    kind: str  # trained | context | cut


@dataclass
class Shown:
    pieces: list[Piece]
    tokens: int
    kept: int
    trained: int
    cut: int


@dataclass
class TokenPreview:
    model_name: str
    max_length: int
    examples: list[Shown] = field(default_factory=list)
    error: str | None = None


def _entry(dataset: Dataset, model_id: int | None) -> dict[str, Any] | None:
    models = ((dataset.report or {}).get("token_preview") or {}).get("models") or {}
    return models.get(str(model_id)) if model_id is not None else None


def _cut(segment: dict[str, Any], max_length: int) -> list[Piece]:
    kind = "trained" if segment["trained"] else "context"
    if segment["end"] <= max_length:
        return [Piece(segment["text"], kind)]
    if segment["start"] >= max_length:
        return [Piece(segment["text"], "cut")]
    at = segment["breaks"][max_length - segment["start"]]
    return [Piece(segment["text"][:at], kind), Piece(segment["text"][at:], "cut")]


def _shown(example: dict[str, Any], max_length: int) -> Shown:
    pieces: list[Piece] = []
    for piece in (p for s in example["segments"] for p in _cut(s, max_length)):
        if pieces and pieces[-1].kind == piece.kind:  # everything past the cut is one piece
            pieces[-1].text += piece.text
        else:
            pieces.append(piece)
    trained = sum(max(0, min(s["end"], max_length) - s["start"]) for s in example["segments"] if s["trained"])
    kept = min(example["tokens"], max_length)
    return Shown(pieces=[p for p in pieces if p.text], tokens=example["tokens"], kept=kept,
                 trained=trained, cut=example["tokens"] - kept)


def preview(dataset: Dataset, model_id: int | None, max_length: int) -> TokenPreview | None:
    """The stored preview for this base model, cut at max_length; None when the check drew
    none for it (a model added after the dataset was checked, or a check without models)."""
    entry = _entry(dataset, model_id)
    if entry is None:
        return None
    out = TokenPreview(model_name=entry.get("model_name", ""), max_length=max_length, error=entry.get("error"))
    out.examples = [_shown(e, max_length) for e in entry.get("examples") or []]
    return out


def nothing_trained(dataset: Dataset, model_id: int | None, max_length: int) -> str | None:
    """Why a run of this dataset on this model with this max_length would learn nothing, or None
    (also None when that is not known: the trainer then checks it again as it starts)."""
    entry = _entry(dataset, model_id)
    scan = (dataset.report or {}).get("token_preview") or {}
    if entry is None or "error" in entry or not scan.get("complete"):
        return None
    first = entry.get("first_trained_min")
    if first is None:
        return ("Nothing would be trained: no example of this dataset has an answer to learn from "
                "(every assistant answer has weight 0). Give at least one answer weight 1.")
    if first >= max_length:
        return (f"Nothing would be trained: with a training length of {max_length:,} tokens every "
                f"example is cut before its answer starts (the earliest answer starts at token "
                f"{first:,}). Raise the training length above {first:,} or shorten the prompts.")
    return None
