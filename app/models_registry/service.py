"""Registering base models: the built-in one after conversion, and local directories."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import BaseModel, ModelStatus
from app.models_registry import repository as repo
from app.models_registry.inspect import inspect_model_dir
from planner.weights import unsafe_reason

BUILTIN_SLUG = "smollm2-135m-instruct"
BUILTIN_DISPLAY = "SmolLM2-135M-Instruct (built-in)"


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:100] or "model"


def register(session: Session, *, model_dir: Path, display_name: str, source: str,
             team_id: int | None = None, slug: str | None = None, allow_unsafe: bool = False) -> BaseModel:
    """Describes a model directory and upserts its row (idempotent by slug and team)."""
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise InvalidInput(f"{model_dir} is not a directory.")
    reason = unsafe_reason(model_dir, allow_pickled=allow_unsafe)
    if reason is not None:  # before anything else is read
        raise InvalidInput(reason)
    info = inspect_model_dir(model_dir)
    if info.parameter_count == 0 and not info.has_pickled_weights:
        raise InvalidInput(f"{model_dir} has no weights (*.safetensors).")
    slug = slug or slugify(display_name)
    row = repo.by_slug(session, slug, team_id)
    if row is None:
        row = BaseModel(slug=slug, team_id=team_id)
        session.add(row)
    row.display_name = display_name
    row.source = source
    row.path = str(model_dir)
    row.status = ModelStatus.ready
    row.status_message = ""
    for field in ("architecture", "parameter_count", "context_length", "hidden_size", "num_layers",
                  "vocab_size", "chat_template", "license"):
        setattr(row, field, getattr(info, field))
    session.flush()
    return row
