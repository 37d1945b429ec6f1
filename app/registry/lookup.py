"""Model names that go through the registry: `support-bot:v3` (a version) and `support-bot:prod`
(an alias) next to the base slugs and `ft:` names that app.api.openai.names reads. Every caller
that takes a model name (chat completions, /v1/models, A/B tests, the playground) resolves it here,
so an alias works wherever a model name does."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.api.openai import names
from app.errors import InvalidInput, NotFound
from app.models import Run
from app.registry import service as registry
from app.runs import repository as runs_repo


def registered_run(session: Session, *, team_id: int, name: str) -> Run | None:
    """The run behind `<name>:v<n>` or `<name>:<alias>`; None when the name has neither form
    (a 404 when it has the form but names nothing of the team's)."""
    if name.startswith("ft:"):
        return None
    found = registry.find(session, team_id=team_id, name=name)
    if found is None:
        return None
    run = runs_repo.get(session, team_id=team_id, run_id=found[0].run_id)
    if run is None:
        raise NotFound("This model does not exist or you do not have access to it.", param="model")
    return run


def model_ref(session: Session, *, team_id: int, name: str, param: str = "model") -> dict:
    """Any model name the chat endpoint takes (base slug, ft: name, name:vN, name:alias) as the
    {"kind": "base" | "run", "id"} reference that A/B tests store."""
    if names.is_checkpoint(name):
        names.checkpoint_run(session, team_id=team_id, name=name, param=param)  # a 404 for a name not the team's
        raise InvalidInput("A checkpoint cannot be compared here: choose the fine-tuned model itself.", param=param)
    run = registered_run(session, team_id=team_id, name=name)
    if run is None and name.startswith("ft:"):
        run = names.fine_tuned_run(session, team_id=team_id, name=name, param=param)
    if run is not None:
        return {"kind": "run", "id": run.id}
    return {"kind": "base", "id": names.base_model(session, team_id=team_id, name=name, param=param).id}
