"""The A/B comparisons API: create, list, get (results only once revealed to the caller), vote,
close. Pages are in app/ab/pages.py."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from app.ab import repository as repo
from app.ab import service
from app.ab.schemas import (
    ComparisonCreate,
    ComparisonDetail,
    ComparisonOut,
    ComparisonPage,
    ModelOut,
    PairOut,
    ResultsOut,
    VoteIn,
    VoteOut,
)
from app.deps import CurrentPrincipal, Principal, SessionDep
from app.errors import InvalidInput
from app.models import Comparison, ComparisonPair

api = APIRouter(prefix="/api/v1/ab", tags=["a/b tests"])
HIDDEN_SOURCE_KEYS = ("seed", "progress")  # the seed would let anyone recompute the sides


def public_source(comparison: Comparison) -> dict:
    return {k: v for k, v in (comparison.prompt_source or {}).items() if k not in HIDDEN_SOURCE_KEYS}


def side_of(pair: ComparisonPair, choice: str) -> str:
    """A vote in model terms -> the side the voter clicked."""
    if choice == "tie":
        return "tie"
    return "left" if (choice == "b") == pair.swapped else "right"


def _out(db: Session, c: Comparison, pairs_total: int) -> dict:
    done, total = service.progress(c)
    models = {k: ModelOut(kind=ref["kind"], id=ref["id"], label=service.model_label(db, team_id=c.team_id, ref=ref))
              for k, ref in (("model_a", c.model_a), ("model_b", c.model_b))}
    return dict(id=c.id, name=c.name, status=c.status, **models, prompt_source=public_source(c),
                pairs_total=pairs_total, progress={"done": done, "total": total}, error_message=c.error_message,
                created_at=c.created_at, closed_at=c.closed_at)


def _results(r: service.Results) -> ResultsOut:
    o, t = r.overall, r.overall.tally
    return ResultsOut(votes=t.total, voters=r.voters, a_wins=t.a, b_wins=t.b, ties=t.tie, decisive=t.decisive,
                      win_rate_a=o.win_rate_a, win_rate_b=o.win_rate_b, share_b_decisive=o.share_b, ci_low=o.ci_low,
                      ci_high=o.ci_high, p_value=o.p_value, significant=o.significant, preferred=o.preferred,
                      verdict=o.verdict)


def detail(db: Session, p: Principal, c: Comparison) -> ComparisonDetail:
    st = service.standing(db, p, c)
    user_id, _ = service.voter(db, p)
    ready = c.status in (service.OPEN, service.CLOSED)
    ordered = service.voter_order(st.pairs, comparison_id=c.id, user_id=user_id or 0) if ready else []
    results = service.results(db, c, st) if st.revealed else None
    tallies = {row.pair.id: row.tally for row in results.pairs} if results else {}
    pairs = []
    for pair in ordered:
        left, right = (pair.answer_b, pair.answer_a) if pair.swapped else (pair.answer_a, pair.answer_b)
        mine = st.mine.get(pair.id)
        tally = tallies.get(pair.id)
        pairs.append(PairOut(id=pair.id, prompt=pair.prompt, reference=pair.reference, left=left, right=right,
                             your_vote=side_of(pair, mine) if mine else None,
                             left_model=("b" if pair.swapped else "a") if st.revealed else None,
                             votes={"a": tally.a, "b": tally.b, "tie": tally.tie} if tally else None))
    return ComparisonDetail(**_out(db, c, len(st.pairs)), your_votes=len(st.mine), can_vote=st.can_vote,
                            revealed=st.revealed, votes_so_far=len(repo.votes(db, comparison_id=c.id)),
                            pairs=pairs, results=_results(results) if results else None)


@api.post("/comparisons", response_model=ComparisonDetail, status_code=201)
def create_comparison(request: Request, body: ComparisonCreate, db: SessionDep, p: CurrentPrincipal) -> JSONResponse:
    """Queues the generation of both models' answers; the comparison opens for votes when they exist."""
    p.require("write")
    if (body.prompts is None) == (body.dataset_id is None):
        raise InvalidInput("Give either prompts or a dataset_id to sample prompts from.", param="prompts")
    user_id, _ = service.voter(db, p)
    new = service.NewComparison(
        team_id=p.team_id, user_id=user_id, name=body.name, model_a=service.parse_ref(body.model_a.model_dump(),
                                                                                       param="model_a"),
        model_b=service.parse_ref(body.model_b.model_dump(), param="model_b"), dataset_id=body.dataset_id,
        count=body.count, prompts=body.prompts or [],
        system=body.system, max_new_tokens=body.max_new_tokens)
    comparison = service.create(db, new=new, store=request.app.state.store)
    return JSONResponse(detail(db, p, comparison).model_dump(mode="json"), status_code=201)


@api.get("/comparisons", response_model=ComparisonPage)
def list_comparisons(db: SessionDep, p: CurrentPrincipal) -> ComparisonPage:
    p.require("read")
    rows = repo.list_for_team(db, team_id=p.team_id)
    counts = repo.pair_counts(db, comparison_ids=[c.id for c in rows])
    return ComparisonPage(data=[ComparisonOut(**_out(db, c, counts.get(c.id, 0))) for c in rows])


@api.get("/comparisons/{comparison_id}", response_model=ComparisonDetail)
def get_comparison(comparison_id: int, db: SessionDep, p: CurrentPrincipal) -> ComparisonDetail:
    """Pairs in your own order, as left/right; the mapping and the results once revealed to you."""
    p.require("read")
    return detail(db, p, service.get(db, team_id=p.team_id, comparison_id=comparison_id))


@api.post("/comparisons/{comparison_id}/pairs/{pair_id}/vote", response_model=VoteOut, status_code=201)
def vote(comparison_id: int, pair_id: int, body: VoteIn, db: SessionDep, p: CurrentPrincipal) -> VoteOut:
    """One vote per person per pair, final. With an API key, the vote is its creator's."""
    comparison = service.get(db, team_id=p.team_id, comparison_id=comparison_id)
    user_id = service.check_can_vote(db, p)
    service.vote(db, comparison=comparison, pair_id=pair_id, user_id=user_id, side=body.choice)
    st = service.standing(db, p, comparison)
    return VoteOut(pair_id=pair_id, choice=body.choice, remaining=st.remaining, revealed=st.revealed)


@api.post("/comparisons/{comparison_id}/close", response_model=ComparisonDetail)
def close_comparison(comparison_id: int, db: SessionDep, p: CurrentPrincipal) -> ComparisonDetail:
    """Stops the voting and reveals the mapping and the results to everyone (creator or owner)."""
    comparison = service.close(db, p, service.get(db, team_id=p.team_id, comparison_id=comparison_id))
    return detail(db, p, comparison)
