"""Blind A/B comparisons: create (then generate on a worker), vote, reveal, close, results.

Rules (docs/ab-testing.md explains them to users):
- Owners and members vote; viewers do not (voting changes the team's data, which their role
  does not allow); they, like everyone, see the results once the comparison is closed.
- One vote per person per pair, and votes are final: a person sees which side was which model
  right after their last vote, so a vote that could still change would no longer be blind.
- A person sees the mapping and the results once they have voted on every pair; everyone sees
  them once the comparison is closed. Its creator or a team owner closes it.
- A vote cast with an API key counts as the vote of the person who created the key.
Services flush; the request edge or the task commits.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app import queue
from app.ab import prompts as prompt_sets
from app.ab import repository as repo
from app.ab import stats
from app.api.openai import repository as openai_repo
from app.datasets import repository as datasets_repo
from app.deps import Principal
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.runs import repository as runs_repo
from app.models import Comparison, ComparisonPair, DatasetStatus, RunStatus, ModelStatus, Role, utcnow
from app.models_registry import repository as models_repo
from app.notifications import service as notifications
from app.registry import repository as registry_repo
from app.storage import Store
from app.teams import repository as teams_repo
from app.registry import lookup

GENERATE_TASK = "studio.ab_generate"
GENERATE_QUEUE = "train"  # loading two models needs a model-capable worker
PENDING, GENERATING, OPEN, CLOSED, FAILED = "pending", "generating", "open", "closed", "failed"
STATUS_LABELS = {PENDING: "Waiting for a worker", GENERATING: "Generating answers", OPEN: "Open for votes",
                 CLOSED: "Closed", FAILED: "Failed"}
SIDES = ("left", "right", "tie")
DEFAULT_MAX_NEW_TOKENS = 256


# -- models A and B -------------------------------------------------------------------------

def parse_ref(value: str | dict | None, *, param: str, session: Session | None = None,
              team_id: int | None = None) -> dict[str, Any]:
    """"base:3" / "run:7" (forms) or {"kind": "run", "id": 7} (API) -> {"kind", "id"}. With a
    session, a model name as /v1/chat/completions takes it is resolved too: {"model": ...} (API) or
    the name itself (forms): a base slug, an ft: name, support-bot:v3 or the alias support-bot:prod
    (the version it points at now is compared)."""
    name = value.get("model") if isinstance(value, dict) else None
    kind, ident = (value.get("kind"), value.get("id")) if isinstance(value, dict) else \
        (str(value or "").partition(":")[0], str(value or "").partition(":")[2])
    try:
        number = int(str(ident))
    except ValueError:
        number = 0
    if not name and isinstance(value, str) and not (kind in ("base", "run") and number > 0):
        name = value.strip()
    if name and session is not None and team_id is not None:
        return lookup.model_ref(session, team_id=team_id, name=str(name)[:300], param=param)
    if kind not in ("base", "run") or number <= 0:
        raise InvalidInput("Choose a base model or a fine-tuned run.", param=param)
    return {"kind": kind, "id": number}


def check_model(session: Session, *, team_id: int, ref: dict[str, Any], param: str) -> str:
    """The model's label, when the team can compare it; a clear error otherwise."""
    if ref["kind"] == "base":
        model = models_repo.get_visible(session, team_id=team_id, model_id=ref["id"])
        if model is None:
            raise NotFound(f"No such base model (#{ref['id']}).", param=param)
        if model.status != ModelStatus.ready or not model.is_enabled:
            raise InvalidInput(f"The base model “{model.display_name}” is not ready to answer.", param=param)
        return model.display_name
    run = runs_repo.get(session, team_id=team_id, run_id=ref["id"])
    if run is None:
        raise NotFound(f"Your team has no run #{ref['id']}.", param=param)
    servable = openai_repo.servable_output(session, team_id=team_id, run_id=run.id)
    if run.status != RunStatus.succeeded or servable is None:
        raise InvalidInput(f"Run #{run.id} has no fine-tuned model to compare: only a run that succeeded "
                           "and saved its adapter or model can answer.", param=param)
    return f"{run.name} (run #{run.id})"


def model_label(session: Session, *, team_id: int, ref: dict[str, Any]) -> str:
    """A name for display; still readable when the model or run was removed since."""
    if ref.get("kind") == "base":
        model = models_repo.get_visible(session, team_id=team_id, model_id=int(ref["id"]))
        return model.display_name if model else f"a removed base model (#{ref['id']})"
    run = runs_repo.get(session, team_id=team_id, run_id=int(ref["id"]))
    return f"{run.name} (run #{run.id})" if run else f"a removed run (#{ref['id']})"


def model_choices(session: Session, *, team_id: int) -> list[tuple[str, str]]:
    """(form value, label) of every model the team can compare: base models, then fine-tuned runs."""
    out = [(f"base:{m.id}", f"{m.display_name} (base model)") for m in models_repo.visible(session, team_id)]
    out += [(f"run:{j.id}", f"{j.name} (run #{j.id}, fine-tuned)")
            for j in openai_repo.servable_runs(session, team_id=team_id)]
    versions = {v.id: v for v in registry_repo.versions(session, team_id=team_id)}
    out += [(f"{a.name}:{a.alias}", f"{a.name}:{a.alias} (alias, now v{versions[a.version_id].version})")
            for a in registry_repo.aliases(session, team_id=team_id) if a.version_id in versions]
    return out


# -- creating -------------------------------------------------------------------------------

@dataclass
class NewComparison:
    team_id: int
    user_id: int | None
    model_a: dict[str, Any]
    model_b: dict[str, Any]
    name: str = ""
    dataset_id: int | None = None  # prompts sampled from this dataset, else the given ones
    count: int = 20
    prompts: list[str] = field(default_factory=list)
    system: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS


def _prompt_set(session: Session, store: Store, new: NewComparison, seed: int) -> prompt_sets.PromptSet:
    system = prompt_sets.clean_system(new.system)
    if new.dataset_id is None:
        return prompt_sets.from_list(new.prompts, system=system)
    dataset = datasets_repo.get(session, team_id=new.team_id, dataset_id=new.dataset_id)
    if dataset is None:
        raise NotFound("No such dataset.", param="dataset_id")
    if dataset.status != DatasetStatus.valid:
        raise InvalidInput(f"The dataset “{dataset.name}” is {dataset.status.value}: only a checked dataset "
                           "can give prompts.", param="dataset_id")
    found = prompt_sets.from_dataset(store, dataset, count=new.count, seed=seed)
    found.system = system or found.system
    return found


def create(session: Session, *, new: NewComparison, store: Store) -> Comparison:
    """Checks the models and the prompts, stores the pairs, and queues their generation."""
    label_a = check_model(session, team_id=new.team_id, ref=new.model_a, param="model_a")
    label_b = check_model(session, team_id=new.team_id, ref=new.model_b, param="model_b")
    if new.model_a == new.model_b:
        raise InvalidInput("Choose two different models: A and B are the same.", param="model_b")
    if not 16 <= new.max_new_tokens <= 2048:
        raise InvalidInput("The answer length must be between 16 and 2,048 tokens.", param="max_new_tokens")
    seed = secrets.randbelow(2**31)
    found = _prompt_set(session, store, new, seed)
    source = {**found.source, "seed": seed, "system": found.system, "max_new_tokens": new.max_new_tokens,
              "progress": {"done": 0, "total": 2 * len(found.prompts)}}
    comparison = Comparison(team_id=new.team_id, created_by_id=new.user_id, model_a=new.model_a,
                            model_b=new.model_b, status=PENDING, prompt_source=source,
                            name=(new.name.strip() or f"{label_a} vs {label_b}")[:200])
    session.add(comparison)
    session.flush()
    session.add_all([ComparisonPair(comparison_id=comparison.id, position=i, prompt=prompt, reference=reference)
                     for i, (prompt, reference) in enumerate(zip(found.prompts, found.references, strict=True))])
    session.flush()
    queue.enqueue(session, GENERATE_TASK, comparison.id, queue=GENERATE_QUEUE)
    return comparison


def assign_sides(pairs: list[ComparisonPair], seed: int) -> None:
    """Half the pairs (rounded at random) show B on the left, in a seeded random arrangement,
    so that a preference for one side cannot favour one model."""
    rng = random.Random(seed)
    flags = [i < len(pairs) // 2 + (len(pairs) % 2 and rng.random() < 0.5) for i in range(len(pairs))]
    rng.shuffle(flags)
    for pair, flag in zip(pairs, flags, strict=True):
        pair.swapped = bool(flag)


def retry(session: Session, comparison: Comparison) -> Comparison:
    if comparison.status != FAILED:
        raise Conflict(f"Only a failed comparison can be generated again (this one is {comparison.status}).")
    comparison.status, comparison.error_message = PENDING, None
    session.flush()
    queue.enqueue(session, GENERATE_TASK, comparison.id, queue=GENERATE_QUEUE)
    return comparison


# -- reading, voting, closing ---------------------------------------------------------------

def generation_wait(session: Session, comparison: Comparison) -> "runs_service.QueueWait":
    """What a pending comparison waits behind in the "train" queue (the broker serves it in
    order), counted from when it was created."""
    from app.runs import service as runs_service

    return runs_service.queue_wait(session, GENERATE_QUEUE, sent=comparison.created_at)


def get(session: Session, *, team_id: int, comparison_id: int) -> Comparison:
    comparison = repo.get(session, team_id=team_id, comparison_id=comparison_id)
    if comparison is None:
        raise NotFound("Your team has no such A/B comparison.")
    return comparison


def voter(session: Session, p: Principal) -> tuple[int | None, Role | None]:
    """(user id, role) of the person behind the caller: the logged-in user, or the key's creator."""
    if p.user is not None:
        return p.user.id, p.role
    user_id = p.api_key.created_by_id if p.api_key is not None else None
    if user_id is None:
        return None, None
    return user_id, teams_repo.role_in_team(session, team_id=p.team_id, user_id=user_id)


def check_can_vote(session: Session, p: Principal) -> int:
    user_id, role = voter(session, p)
    if user_id is None or role is None:
        raise Forbidden("This API key has no team member behind it any more, so it cannot vote.")
    if role == Role.viewer or "write" not in p.scopes:
        raise Forbidden("Only owners and members vote; viewers see the results once the comparison is closed.")
    return user_id


def can_close(session: Session, p: Principal, comparison: Comparison) -> bool:
    user_id, role = voter(session, p)
    if "write" not in p.scopes or role is None:
        return False
    return role == Role.owner or "admin" in p.scopes or (user_id is not None and user_id == comparison.created_by_id)


def voter_order(pairs: list[ComparisonPair], *, comparison_id: int, user_id: int) -> list[ComparisonPair]:
    """The pairs in a random order of this voter's own (stable across visits, different per voter)."""
    def key(pair: ComparisonPair) -> str:
        return hashlib.sha256(f"{comparison_id}:{user_id}:{pair.id}".encode()).hexdigest()

    return sorted(pairs, key=key)


def to_choice(pair: ComparisonPair, side: str) -> str:
    """A side the voter clicked -> the model it showed ("a", "b") or "tie"."""
    if side not in SIDES:
        raise InvalidInput("Vote left, right or tie.", param="choice")
    if side == "tie":
        return "tie"
    return ("b" if pair.swapped else "a") if side == "left" else ("a" if pair.swapped else "b")


def vote(session: Session, *, comparison: Comparison, pair_id: int, user_id: int, side: str) -> str:
    """Stores one vote in model terms and returns it."""
    pair = repo.pair(session, comparison_id=comparison.id, pair_id=pair_id)
    if pair is None:
        raise NotFound("This comparison has no such pair.")
    if comparison.status == CLOSED:
        raise Conflict("This comparison is closed: it takes no more votes.")
    if comparison.status != OPEN:
        raise Conflict("This comparison is not open for votes yet: its answers are still being generated.")
    choice = to_choice(pair, side)
    if repo.add_vote(session, pair_id=pair.id, user_id=user_id, choice=choice) is None:
        raise Conflict("You already voted on this pair. Votes are final: one vote per person per pair.")
    return choice


def close(session: Session, p: Principal, comparison: Comparison) -> Comparison:
    if not can_close(session, p, comparison):
        raise Forbidden("Only the person who created this comparison or a team owner can close it.")
    if comparison.status != OPEN:
        state = STATUS_LABELS[comparison.status].lower()
        raise Conflict(f"Only an open comparison can be closed (this one is {state}).")
    comparison.status, comparison.closed_at = CLOSED, utcnow()
    session.flush()
    choices = [choice for _, _, choice in repo.votes(session, comparison_id=comparison.id)]
    notifications.ab_closed(session, comparison,
                            label_a=model_label(session, team_id=comparison.team_id, ref=comparison.model_a),
                            label_b=model_label(session, team_id=comparison.team_id, ref=comparison.model_b),
                            votes={c: choices.count(c) for c in sorted(set(choices))})
    return comparison


# -- progress and results -------------------------------------------------------------------

@dataclass
class Standing:
    """What one caller may see of a comparison."""

    pairs: list[ComparisonPair]
    mine: dict[int, str]  # pair_id -> this person's vote, in model terms
    can_vote: bool
    revealed: bool

    @property
    def remaining(self) -> int:
        return sum(1 for p in self.pairs if p.id not in self.mine)


def standing(session: Session, p: Principal, comparison: Comparison) -> Standing:
    pairs = repo.pairs(session, comparison_id=comparison.id)
    user_id, role = voter(session, p)
    mine = repo.votes_of(session, comparison_id=comparison.id, user_id=user_id) if user_id else {}
    can_vote = (comparison.status == OPEN and user_id is not None and role not in (None, Role.viewer)
                and "write" in p.scopes)
    everything = bool(pairs) and len(mine) == len(pairs)
    return Standing(pairs=pairs, mine=mine, can_vote=can_vote,
                    revealed=comparison.status == CLOSED or (comparison.status == OPEN and everything))


@dataclass
class PairResult:
    pair: ComparisonPair
    tally: stats.Tally
    mine: str | None
    left: str = field(default="a")  # the model shown on the left: "a" or "b"


@dataclass
class Results:
    overall: stats.Result
    pairs: list[PairResult]
    voters: int
    label_a: str
    label_b: str


def results(session: Session, comparison: Comparison, st: Standing) -> Results:
    """Win rates, interval, test and the per-pair breakdown (call only when st.revealed)."""
    votes = repo.votes(session, comparison_id=comparison.id)
    label_a = model_label(session, team_id=comparison.team_id, ref=comparison.model_a)
    label_b = model_label(session, team_id=comparison.team_id, ref=comparison.model_b)
    by_pair: dict[int, list[str]] = {}
    for pair_id, _, choice in votes:
        by_pair.setdefault(pair_id, []).append(choice)
    rows = [PairResult(pair=pair, tally=stats.tally(by_pair.get(pair.id, [])), mine=st.mine.get(pair.id),
                       left="b" if pair.swapped else "a") for pair in st.pairs]
    return Results(overall=stats.analyse([c for _, _, c in votes]), pairs=rows,
                   voters=len({u for _, u, _ in votes}), label_a=label_a, label_b=label_b)


def time_left_s(comparison: Comparison) -> float | None:
    """Seconds until every answer is generated, at the pace so far (model loading included, so
    it starts pessimistic); None before the first answers are written."""
    p = (comparison.prompt_source or {}).get("progress") or {}
    done, total, started = int(p.get("done", 0)), int(p.get("total", 0)), p.get("started_at")
    if not done or not total or not isinstance(started, int | float):
        return None
    spent = max(0.0, utcnow().timestamp() - started)
    return spent / done * max(0, total - done)


def progress(comparison: Comparison) -> tuple[int, int]:
    """(answers generated, answers to generate)."""
    done = (comparison.prompt_source or {}).get("progress") or {}
    return int(done.get("done", 0)), int(done.get("total", 0))
