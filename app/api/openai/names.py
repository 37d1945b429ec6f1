"""OpenAI-style ids (file-12, ftjob-7, ftevent-31, ftckpt-3) and model names, both ways.

A base model's name is its slug; a fine-tuned model's is
`ft:<base slug>:team-<team id>:<suffix>:<job id>`, and, once registered (app/registry), also
`<name>:v<n>` (a version: support-bot:v3) and `<name>:<alias>` (support-bot:prod, the version the
alias points at now). Names are resolved to rows of the caller's team only; a name of another
team, or a made-up one, is simply not found.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.runs import repository as runs_repo
from app.models import BaseModel, Run
from app.models_registry import repository as models_repo


def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def encode(prefix: str, value: int) -> str:
    return f"{prefix}-{value}"


def decode(prefix: str, raw: str | None, *, what: str, param: str | None = None) -> int:
    """The number in `<prefix>-<n>`; anything else is a 404 that names what was looked for."""
    head, _, number = (raw or "").partition("-")
    if head != prefix or not (number.isascii() and number.isdigit()) or len(number) > 18:
        raise NotFound(f"No such {what}: '{raw}'. Ids look like '{prefix}-12'.", param=param)
    return int(number)


def decode_cursor(prefix: str, raw: str | None) -> int | None:
    return None if raw is None else decode(prefix, raw, what="cursor", param="after")


def base_name(model: BaseModel) -> str:
    return model.slug


def fine_tuned_name(run: Run, base_slug: str) -> str:
    return f"ft:{base_slug}:team-{run.team_id}:{run.suffix or ''}:{run.id}"


CHECKPOINT = ":ckpt-step-"


def checkpoint_name(run: Run, base_slug: str, step: int) -> str:
    return f"{fine_tuned_name(run, base_slug)}{CHECKPOINT}{step}"


def is_checkpoint(name: str) -> bool:
    return name.startswith("ft:") and CHECKPOINT in name


def checkpoint_run(session: Session, *, team_id: int, name: str, param: str = "model") -> tuple[Run, int]:
    """The team's run and the step behind `ft:...:<job id>:ckpt-step-<n>`."""
    head, _, step = name.rpartition(CHECKPOINT)
    if not (step.isascii() and step.isdigit()) or len(step) > 9:
        raise NotFound("This model does not exist or you do not have access to it.", param=param)
    return fine_tuned_run(session, team_id=team_id, name=head, param=param), int(step)


def base_model(session: Session, *, team_id: int, name: str, param: str = "model") -> BaseModel:
    """A base model by slug (the team's own first, then a shared one) or by numeric id."""
    row = models_repo.by_slug(session, name, team_id) or models_repo.by_slug(session, name, None)
    if row is None and name.isascii() and name.isdigit() and len(name) < 18:
        row = models_repo.get_visible(session, team_id=team_id, model_id=int(name))
    if row is None or not row.is_enabled:
        raise NotFound("This model does not exist or you do not have access to it.", param=param)
    return row


def fine_tuned_run(session: Session, *, team_id: int, name: str, param: str = "model") -> Run:
    """The team's run behind an `ft:` name; the whole name must match, not only its job id."""
    missing = NotFound("This model does not exist or you do not have access to it.", param=param)
    last = name.rsplit(":", 1)[-1]
    if not name.startswith("ft:") or not (last.isascii() and last.isdigit()) or len(last) > 18:
        raise missing
    run = runs_repo.get(session, team_id=team_id, run_id=int(last))
    if run is None:
        raise missing
    base = models_repo.get_visible(session, team_id=team_id, model_id=run.base_model_id)
    if base is None or fine_tuned_name(run, base.slug) != name:
        raise missing
    return run
