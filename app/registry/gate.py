"""The quality gate: a promotion is evaluated on the team's golden set before the alias moves.

The team picks a golden dataset, a metric and a margin. Promoting version C to an alias held by
H compares C's score with H's on the golden set and refuses when C is worse by more than the
margin (both scores are kept in the log). Scores come from evaluations of kind "golden" (the
automatic evaluation of worker/tasks/evaluation.py run on the golden set instead of the run's own
eval split), made on demand: until they end the release is pending, and `settle` (called by the
worker when an evaluation or its judging ends) completes or refuses it. judge_score adds an LLM
judging of the golden answers (kind "golden_judge"); ab_win_rate reads the votes of closed A/B
tests between the two versions instead. An owner may override with a written reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import queue
from app.config import Settings
from app.datasets import repository as datasets_repo
from app.errors import InvalidInput
from app.evaluations import judge
from app.evaluations.service import EVALUATE_TASK
from app.models import Comparison, ComparisonPair, Dataset, Evaluation, ModelAlias, ModelVersion, QualityGate, Release, Vote
from app.registry import repository as repo
from app.registry import service
from app.runs import repository as runs_repo

GOLDEN, GOLDEN_JUDGE = "golden", "golden_judge"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    short: str


METRICS = {m.key: m for m in (
    Metric("eval_loss", "Eval loss on the golden set (lower is better)", False, "eval loss"),
    Metric("rougeL", "ROUGE-L on the golden set (higher is better)", True, "ROUGE-L"),
    Metric("exact_match", "Exact match on the golden set (higher is better)", True, "exact match"),
    Metric("judge_score", "LLM judge score on the golden set, 1-10 (higher is better)", True, "judge score"),
    Metric("ab_win_rate", "A/B win rate against the current version, 0-1 (higher is better)", True, "A/B win rate"),
)}


def set_gate(session: Session, *, team_id: int, user_id: int | None, dataset_id: int | None, metric: str,
             margin: float) -> QualityGate:
    if metric not in METRICS:
        raise InvalidInput(f"Choose a metric: {', '.join(METRICS)}.", param="metric")
    if not 0 <= margin <= 100:
        raise InvalidInput("The margin is a number from 0 to 100, in the metric's own units.", param="margin")
    if dataset_id is not None:
        dataset = datasets_repo.get(session, team_id=team_id, dataset_id=dataset_id)
        if dataset is None:
            raise InvalidInput(f"Your team has no dataset #{dataset_id}.", param="dataset_id")
        if not dataset.normalized_path:
            raise InvalidInput(f"The dataset “{dataset.name}” has not passed its check: it cannot be a golden set.",
                               param="dataset_id")
    elif metric != "ab_win_rate":
        raise InvalidInput("Choose the golden dataset the versions are evaluated on.", param="dataset_id")
    row = repo.gate(session, team_id=team_id) or QualityGate(team_id=team_id)
    row.dataset_id, row.metric, row.margin, row.updated_by_id = dataset_id, metric, margin, user_id
    session.add(row)
    session.flush()
    return row


def clear_gate(session: Session, *, team_id: int) -> None:
    row = repo.gate(session, team_id=team_id)
    if row is not None:
        session.delete(row)
        session.flush()


def is_worse(metric: str, candidate: float, holder: float, margin: float) -> bool:
    """Worse than the holder by more than the margin, in the metric's direction."""
    if METRICS[metric].higher_is_better:
        return candidate < holder - margin - 1e-12
    return candidate > holder + margin + 1e-12


def snapshot(gate: QualityGate, dataset: Dataset | None) -> dict:
    return {"metric": gate.metric, "margin": gate.margin, "dataset_id": gate.dataset_id,
            "dataset_name": dataset.name if dataset else None, "dataset_version": dataset.version if dataset else None}


def promote(session: Session, *, team_id: int, name: str, alias_name: str, version: ModelVersion,
            actor: service.Actor, override_reason: str | None, settings: Settings) -> Release:
    """Asks to point `name:alias_name` at `version`: moved now, refused now, or pending."""
    alias_name = service.check_alias(alias_name)
    if version.name != name:
        raise InvalidInput(f"{service.label(version)} is a version of '{version.name}', not of '{name}'.",
                           param="version_id")
    reason = service.check_override(actor, override_reason)
    alias = service.alias_for(session, team_id=team_id, name=name, alias_name=alias_name)
    if alias.version_id == version.id:
        raise InvalidInput(f"{name}:{alias_name} already points at {service.label(version)}.", param="version_id")
    release = service.open_release(session, alias=alias, actor=actor, kind="promote", to=version,
                                   override_reason=reason)
    gate = repo.gate(session, team_id=team_id)
    holder = repo.version(session, team_id=team_id, version_id=alias.version_id)
    dataset = datasets_repo.get(session, team_id=team_id, dataset_id=gate.dataset_id) if gate and gate.dataset_id else None
    if gate is not None:
        release.gate = snapshot(gate, dataset)
    if reason is not None:
        _last_scores(session, release)
        release.message = "Released past the quality gate by an owner."
        return service.move_alias(session, alias=alias, release=release, to=version)
    if gate is None or holder is None:
        release.message = ("No quality gate is set: released at once." if gate is None else
                           "First version on this alias: there is nothing to compare with, released at once.")
        return service.move_alias(session, alias=alias, release=release, to=version)
    if gate.metric == "ab_win_rate":
        return _decide_ab(session, release, alias, version, holder)
    if dataset is None:
        return service.refuse(release, "The gate's golden dataset was deleted: choose another one (or remove the "
                                       "gate) on the Models page.", status="failed")
    release.candidate_evaluation_id = _golden(session, version, dataset).id
    release.holder_evaluation_id = _golden(session, holder, dataset).id
    session.flush()
    return settle_release(session, release, settings)


def _golden(session: Session, version: ModelVersion, dataset: Dataset) -> Evaluation:
    """The version's golden-set evaluation on this dataset version: reused, or queued now."""
    found = repo.golden_evaluation(session, team_id=version.team_id, run_id=version.run_id, kind=GOLDEN,
                                   dataset_id=dataset.id, dataset_version=dataset.version)
    if found is not None:
        return found
    run = runs_repo.get(session, team_id=version.team_id, run_id=version.run_id)
    row = Evaluation(team_id=version.team_id, run_id=version.run_id, kind=GOLDEN, status="pending",
                     details={"source": "release_gate", "golden_dataset_id": dataset.id,
                              "golden_dataset_version": dataset.version, "golden_dataset_name": dataset.name})
    session.add(row)
    session.flush()
    queue.enqueue(session, EVALUATE_TASK, row.id, queue=run.queue if run is not None else "train")
    return row


def _score(session: Session, release: Release, evaluation: Evaluation | None, settings: Settings) -> float | str | None:
    """A float; None while under way; a string: why there will be none."""
    if evaluation is None:
        return "its evaluation was deleted"
    if evaluation.status == "failed":
        return f"its golden-set evaluation failed ({evaluation.error_message or 'no reason given'})"
    if evaluation.status != "succeeded":
        return None
    metric = (release.gate or {}).get("metric")
    if metric == "judge_score":
        return _judge_score(session, evaluation, settings)
    value = ((evaluation.metrics or {}).get("finetuned") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else f"its evaluation has no {metric}"


def _judge_score(session: Session, evaluation: Evaluation, settings: Settings) -> float | str | None:
    judged = repo.judge_of(session, team_id=evaluation.team_id, source_id=evaluation.id, kind=GOLDEN_JUDGE)
    if judged is None:
        if not settings.judge_base_url or not settings.judge_model:
            return "no LLM judge is configured (STUDIO_JUDGE_BASE_URL, STUDIO_JUDGE_MODEL)"
        row = Evaluation(team_id=evaluation.team_id, run_id=evaluation.run_id, kind=GOLDEN_JUDGE, status="pending",
                         details={"endpoint": settings.judge_base_url, "model": settings.judge_model,
                                  "source_evaluation_id": evaluation.id})
        session.add(row)
        session.flush()
        queue.enqueue(session, judge.JUDGE_TASK, row.id, queue="default")
        return None
    if judged.status == "failed":
        return f"its judging failed ({judged.error_message or 'no reason given'})"
    if judged.status != "succeeded":
        return None
    value = ((judged.metrics or {}).get("finetuned") or {}).get("mean_score")
    return float(value) if isinstance(value, (int, float)) else "the judge could not score its answers"


def settle_release(session: Session, release: Release, settings: Settings) -> Release:
    """Completes or refuses a pending release whose scores are all in; leaves it pending otherwise."""
    if release.status != repo.PENDING:
        return release
    alias = repo.alias(session, team_id=release.team_id, alias_id=release.alias_id)
    to = repo.version(session, team_id=release.team_id, version_id=release.to_version_id)
    if alias is None or to is None:
        return service.refuse(release, "The version to release was deleted.", status="failed")
    scores = {}
    for side, evaluation_id in (("candidate", release.candidate_evaluation_id), ("holder", release.holder_evaluation_id)):
        scores[side] = _score(session, release, session.get(Evaluation, evaluation_id) if evaluation_id else None,
                              settings)
    for side, value in scores.items():
        if isinstance(value, str):
            who = release.to_label if side == "candidate" else release.from_label
            return service.refuse(release, f"The gate could not compare: {who}: {value}.", status="failed")
    if any(v is None for v in scores.values()):
        session.flush()
        return release
    return _decide(session, release, alias, to, scores["candidate"], scores["holder"])


def _decide(session: Session, release: Release, alias: ModelAlias, to: ModelVersion, candidate: float,
            holder: float) -> Release:
    metric, margin = release.gate["metric"], float(release.gate["margin"])
    release.candidate_score, release.holder_score = candidate, holder
    scores = (f"{release.to_label}: {candidate:.4g}, {release.from_label}: {holder:.4g} "
              f"({METRICS[metric].short}, margin {margin:g})")
    if is_worse(metric, candidate, holder, margin):
        return service.refuse(release, f"Refused by the quality gate: {release.to_label} does worse than "
                                       f"{release.from_label} by more than the margin. {scores}.")
    release.message = f"Passed the quality gate. {scores}."
    return service.move_alias(session, alias=alias, release=release, to=to)


def win_rate(session: Session, *, team_id: int, candidate_run: int, holder_run: int) -> tuple[float, int] | None:
    """The candidate's share of the votes (ties count half) in the team's closed A/B tests between
    the two runs; None when there is no such vote."""
    wins, total = 0.0, 0
    stmt = select(Comparison).where(Comparison.team_id == team_id, Comparison.closed_at.is_not(None))
    for comparison in session.scalars(stmt):
        refs = ((comparison.model_a or {}).get("kind"), (comparison.model_a or {}).get("id"),
                (comparison.model_b or {}).get("kind"), (comparison.model_b or {}).get("id"))
        if refs == ("run", candidate_run, "run", holder_run):
            mine = "a"
        elif refs == ("run", holder_run, "run", candidate_run):
            mine = "b"
        else:
            continue
        votes = session.scalars(select(Vote.choice).join(ComparisonPair, ComparisonPair.id == Vote.pair_id)
                                .where(ComparisonPair.comparison_id == comparison.id))
        for choice in votes:
            total += 1
            wins += 1.0 if choice == mine else 0.5 if choice == "tie" else 0.0
    return (wins / total, total) if total else None


def _decide_ab(session: Session, release: Release, alias: ModelAlias, to: ModelVersion,
               holder: ModelVersion) -> Release:
    found = win_rate(session, team_id=release.team_id, candidate_run=to.run_id, holder_run=holder.run_id)
    if found is None:
        return service.refuse(release, f"The gate needs a closed A/B test between {release.to_label} and "
                                       f"{release.from_label} with votes: start one on the A/B tests page.",
                              status="failed")
    rate, _ = found
    release.gate = {**(release.gate or {}), "baseline": 0.5}
    return _decide(session, release, alias, to, rate, 1.0 - rate)


def _last_scores(session: Session, release: Release) -> None:
    """An override keeps the scores of the refusal it overrides, when there was one."""
    stmt = (select(Release).where(Release.team_id == release.team_id, Release.alias_id == release.alias_id,
                                  Release.to_version_id == release.to_version_id, Release.status == "refused")
            .order_by(Release.id.desc()).limit(1))
    refused = session.scalar(stmt)
    if refused is not None:
        release.candidate_score, release.holder_score = refused.candidate_score, refused.holder_score


def settle(session: Session, evaluation_id: int, settings: Settings) -> int:
    """Worker side: an evaluation (or a judging of one) ended; settles the releases waiting on it."""
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None or evaluation.kind not in (GOLDEN, GOLDEN_JUDGE):
        return 0
    source = (evaluation.details or {}).get("source_evaluation_id") if evaluation.kind == GOLDEN_JUDGE else evaluation.id
    waiting = repo.pending_waiting_on(session, source) if source else []
    for release in waiting:
        settle_release(session, release, settings)
    session.flush()
    return len(waiting)
