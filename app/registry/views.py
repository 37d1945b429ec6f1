"""What the Models page and the registry API show: each version with its lineage, its scores,
the aliases on it and its serving check; the aliases with their pending release; the log."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from sqlalchemy.orm import Session

from app.api.openai import names
from app.api.openai import repository as openai_repo
from app.costs import service as costs
from app.datasets import repository as datasets_repo
from app.evaluations import repository as eval_repo
from app.models import Dataset, Evaluation, ModelAlias, ModelVersion, Release, Run, User
from app.models_registry import repository as models_repo
from app.registry import gate as gates
from app.registry import repository as repo
from app.registry import serving
from app.registry import service
from app.runs import repository as runs_repo
from app.storage import Store

SCORE_KEYS = ("eval_loss", "rougeL", "exact_match", "accuracy", "general_ability")
CONFIG_LABELS = {"method": "method", "lora_r": "LoRA rank", "learning_rate": "learning rate", "epochs": "epochs",
                 "max_steps": "max steps", "target_modules": "adapted layers", "precision": "precision",
                 "use_dora": "DoRA"}
CONFIG_KEYS = tuple(CONFIG_LABELS)


@dataclass
class VersionView:
    version: ModelVersion
    run: Run
    model_id: str  # the ft: name
    base_name: str
    dataset: Dataset | None
    config: dict[str, Any]
    scores: dict[str, float]
    golden: Evaluation | None
    trained_by: str
    aliases: list[str]
    check: serving.ServingCheck
    roi: Any = None  # app.costs.roi.Roi: training cost and break-even at the team's prices, or None

    @property
    def label(self) -> str:
        return service.label(self.version)


@dataclass
class AliasView:
    alias: ModelAlias
    holder: ModelVersion | None
    pending: Release | None
    can_roll_back: bool
    rollback_to: str | None
    evaluations: dict[str, Evaluation | None] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.alias.name}:{self.alias.alias}"


def _who(session: Session, user_id: int | None) -> str:
    user = session.get(User, user_id) if user_id else None
    return (user.name or user.email) if user else "—"


def version_view(session: Session, store: Store, version: ModelVersion, aliases: list[ModelAlias], *,
                 table: costs.Prices | None = None, workers: dict | None = None) -> VersionView | None:
    run = runs_repo.get(session, team_id=version.team_id, run_id=version.run_id)
    if run is None:
        return None
    base = models_repo.get_visible(session, team_id=run.team_id, model_id=run.base_model_id)
    dataset = datasets_repo.get(session, team_id=run.team_id, dataset_id=run.dataset_id, purpose=None)
    latest = eval_repo.latest_succeeded(session, run_id=run.id, kind="automatic")
    tuned = ((latest.metrics or {}).get("finetuned") or {}) if latest else {}
    scores = {k: tuned[k] for k in SCORE_KEYS if isinstance(tuned.get(k), (int, float))}
    golden = eval_repo.latest(session, team_id=run.team_id, run_id=run.id, kind=gates.GOLDEN)
    output = openai_repo.servable_output(session, team_id=run.team_id, run_id=run.id)
    config = {"method": run.method, **{k: run.config.get(k) for k in CONFIG_KEYS[1:] if k in (run.config or {})}}
    return VersionView(version, run, names.fine_tuned_name(run, base.slug) if base else f"run {run.id}",
                       base.display_name if base else "a removed base model", dataset, config, scores, golden,
                       _who(session, version.registered_by_id or run.created_by_id),
                       [f"{a.name}:{a.alias}" for a in aliases if a.version_id == version.id],
                       serving.check(run, serving.read_adapter_config(store, output)), costs.roi_for_run(session, run, table=table, workers=workers))


def groups(session: Session, store: Store, *, team_id: int) -> dict[str, list[VersionView]]:
    """Every fine-tuned model the team can serve, by name, newest version first."""
    aliases = repo.aliases(session, team_id=team_id)
    servable = {r.id for r in openai_repo.servable_runs(session, team_id=team_id)}
    table, workers = costs.prices(session, team_id), costs.workers_by_name(session)  # once, not per version
    out: dict[str, list[VersionView]] = {}
    for version in service.sync_versions(session, team_id=team_id):
        if version.run_id not in servable:
            continue
        view = version_view(session, store, version, aliases, table=table, workers=workers)
        if view is not None:
            out.setdefault(version.name, []).append(view)
    return out


def alias_views(session: Session, *, team_id: int) -> list[AliasView]:
    out = []
    for alias in repo.aliases(session, team_id=team_id):
        holder = repo.version(session, team_id=team_id, version_id=alias.version_id)
        pending = repo.pending_release(session, team_id=team_id, alias_id=alias.id)
        last = repo.last_moved(session, team_id=team_id, alias_id=alias.id)
        previous = repo.version(session, team_id=team_id, version_id=last.from_version_id) if last else None
        evaluations = {}
        if pending is not None:
            evaluations = {side: session.get(Evaluation, eid) if eid else None for side, eid in
                           (("candidate", pending.candidate_evaluation_id), ("holder", pending.holder_evaluation_id))}
        out.append(AliasView(alias, holder, pending, previous is not None and pending is None,
                             service.label(previous) if previous else None, evaluations))
    return out


def alias_names(session: Session, *, team_id: int) -> dict[int, str]:
    return {a.id: f"{a.name}:{a.alias}" for a in repo.aliases(session, team_id=team_id)}


TECHNICAL = re.compile(r"(--[a-z][a-z0-9-]+|\b[A-Za-z0-9]+_[A-Za-z0-9_.]+\b|\b[a-z0-9_]+\.py\b)")


def technical(text: str) -> Markup:
    """Escaped text with flags, module and file names (lm_head, --max-lora-rank) set as code."""
    return Markup(TECHNICAL.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(text))))
