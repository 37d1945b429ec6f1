"""A/B tests. The API: create, list, get (results only once revealed to the caller), vote,
close. The pages: the list, the new-comparison form, one comparison (status, your progress,
results once revealed), the blind voting page, close and generate again.

/ab/new?run_id=7 opens the form prefilled with run 7's base model as A and the run as B, its
dataset as the prompt source (the address for a "Compare with base" link). The status
region (`ab/_status.html`) asks for itself again every 2 s while answers are being generated.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from app.ab import prompts as prompt_sets
from app.ab import repository as repo
from app.ab import service, stats
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
from app.compare import repository as reads
from app.deps import CurrentPrincipal, CurrentUser, Principal, SessionDep
from app.errors import Conflict, InvalidInput, StudioError
from app.runs import repository as runs_repo
from app.models import Comparison, ComparisonPair
from app.web import is_htmx, redirect, render

api = APIRouter(prefix="/api/v1/ab", tags=["a/b tests"])
pages = APIRouter(tags=["a/b tests"], include_in_schema=False)
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
                                                                                       param="model_a", session=db,
                                                                                       team_id=p.team_id),
        model_b=service.parse_ref(body.model_b.model_dump(), param="model_b", session=db, team_id=p.team_id),
        dataset_id=body.dataset_id,
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


# -- pages ----------------------------------------------------------------------------------

def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


@pages.get("/ab")
def ab_list(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    rows = repo.list_for_team(db, team_id=p.team_id)
    labels = {c.id: (service.model_label(db, team_id=p.team_id, ref=c.model_a),
                     service.model_label(db, team_id=p.team_id, ref=c.model_b)) for c in rows}
    return render(request, "ab/list.html", {
        "comparisons": rows, "labels": labels, "status_labels": service.STATUS_LABELS,
        "counts": repo.pair_counts(db, comparison_ids=[c.id for c in rows]), "can_write": "write" in p.scopes})


# -- a new comparison -----------------------------------------------------------------------

def _prefill(db: Session, p: Principal, query: dict[str, str]) -> dict[str, str]:
    form = {"source": "dataset", "count": "20", "max_new_tokens": str(service.DEFAULT_MAX_NEW_TOKENS)}
    run = runs_repo.get(db, team_id=p.team_id, run_id=_int(query.get("run_id")) or 0)
    if run is not None:
        form.update(model_a=f"base:{run.base_model_id}", model_b=f"run:{run.id}", dataset_id=str(run.dataset_id),
                    name=f"{run.name}: base vs fine-tuned"[:200])
    form.update({k: v for k, v in query.items() if k in ("model_a", "model_b", "dataset_id") and v})
    return form


def _form_page(request: Request, db: Session, p: Principal, form: dict[str, str], *,
               error: StudioError | None = None) -> Response:
    return render(request, "ab/new.html", {
        "form": form, "error": error.message if error else None,
        "errors": {error.param: error.message} if error and error.param else {},
        "models": service.model_choices(db, team_id=p.team_id),
        "datasets": reads.trainable_datasets(db, team_id=p.team_id),
        "max_prompts": prompt_sets.MAX_PROMPTS, "can_write": "write" in p.scopes,
    }, status_code=error.status_code if error else 200)


@pages.get("/ab/new")
def new_comparison(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    return _form_page(request, db, p, _prefill(db, p, dict(request.query_params)))


@pages.post("/ab")
async def create_comparison_page(request: Request, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str) and k != "csrf_token"}
    try:
        from_dataset = form.get("source", "dataset") == "dataset"
        new = service.NewComparison(
            team_id=p.team_id, user_id=p.user_id, name=form.get("name", "")[:200],
            model_a=service.parse_ref(form.get("model_a"), param="model_a", session=db, team_id=p.team_id),
            model_b=service.parse_ref(form.get("model_b"), param="model_b", session=db, team_id=p.team_id),
            dataset_id=(_int(form.get("dataset_id")) or 0) if from_dataset else None,
            count=_int(form.get("count")) or 0, prompts=form.get("prompts", "").splitlines(),
            system=form.get("system"),
            max_new_tokens=_int(form.get("max_new_tokens") or service.DEFAULT_MAX_NEW_TOKENS) or 0)
        comparison = service.create(db, new=new, store=request.app.state.store)
    except StudioError as exc:
        db.rollback()
        return _form_page(request, db, p, form, error=exc)
    return redirect(request, f"/ab/{comparison.id}",
                    flash=("success", "Created: both models now answer every prompt; voting opens when they are done."))


# -- one comparison -------------------------------------------------------------------------

def _context(db: Session, p: Principal, comparison_id: int) -> dict[str, Any]:
    c = service.get(db, team_id=p.team_id, comparison_id=comparison_id)
    st = service.standing(db, p, c)
    done, total = service.progress(c)
    return {
        "c": c, "st": st, "status_labels": service.STATUS_LABELS, "stats": stats,
        "label_a": service.model_label(db, team_id=p.team_id, ref=c.model_a),
        "label_b": service.model_label(db, team_id=p.team_id, ref=c.model_b),
        "done": done, "total": total, "pct": round(100 * done / total) if total else 0,
        "active": c.status in (service.PENDING, service.GENERATING),
        "results": service.results(db, c, st) if st.revealed else None,
        "votes_so_far": len(repo.votes(db, comparison_id=c.id)),
        "can_close": c.status == service.OPEN and service.can_close(db, p, c),
        "can_write": "write" in p.scopes,
        "wait": service.generation_wait(db, c) if c.status == service.PENDING else None,
        "time_left_s": service.time_left_s(c) if c.status == service.GENERATING else None,
    }


@pages.get("/ab/{comparison_id}")
def comparison_page(request: Request, comparison_id: int, db: SessionDep, p: CurrentUser) -> Response:
    return render(request, "ab/detail.html", _context(db, p, comparison_id))


@pages.get("/ab/{comparison_id}/status")
def comparison_status(request: Request, comparison_id: int, db: SessionDep, p: CurrentUser) -> Response:
    ctx = _context(db, p, comparison_id)
    if not is_htmx(request):
        return redirect(request, f"/ab/{ctx['c'].id}")
    return render(request, "ab/_status.html", ctx)


@pages.get("/ab/{comparison_id}/vote")
def vote_page(request: Request, comparison_id: int, db: SessionDep, p: CurrentUser) -> Response:
    """The next pair this person has not voted on, in their own random order."""
    c = service.get(db, team_id=p.team_id, comparison_id=comparison_id)
    st = service.standing(db, p, c)
    if not st.can_vote or st.remaining == 0:
        return redirect(request, f"/ab/{c.id}")
    ordered = service.voter_order(st.pairs, comparison_id=c.id, user_id=p.user_id)
    pair = next(x for x in ordered if x.id not in st.mine)
    left, right = (pair.answer_b, pair.answer_a) if pair.swapped else (pair.answer_a, pair.answer_b)
    return render(request, "ab/vote.html", {"c": c, "pair": pair, "left": left, "right": right,
                                            "number": len(st.mine) + 1, "total": len(st.pairs)})


@pages.post("/ab/{comparison_id}/pairs/{pair_id}/vote")
async def cast_vote(request: Request, comparison_id: int, pair_id: int, db: SessionDep, p: CurrentUser) -> Response:
    c = service.get(db, team_id=p.team_id, comparison_id=comparison_id)
    user_id = service.check_can_vote(db, p)
    side = str((await request.form()).get("choice", ""))
    try:
        service.vote(db, comparison=c, pair_id=pair_id, user_id=user_id, side=side)
    except Conflict as exc:  # a second vote (back button, two tabs) or a closed comparison
        return redirect(request, f"/ab/{c.id}/vote", flash=("error", exc.message))
    st = service.standing(db, p, c)
    if st.remaining == 0:
        return redirect(request, f"/ab/{c.id}", flash=(
            "success", "Thank you: you voted on every pair. Here is which side was which model, and the results."))
    return redirect(request, f"/ab/{c.id}/vote")


@pages.post("/ab/{comparison_id}/close")
def close_comparison_page(request: Request, comparison_id: int, db: SessionDep, p: CurrentUser) -> Response:
    c = service.close(db, p, service.get(db, team_id=p.team_id, comparison_id=comparison_id))
    return redirect(request, f"/ab/{c.id}", flash=("success", "Closed: the results are now visible to everyone."))


@pages.post("/ab/{comparison_id}/retry")
def retry_comparison(request: Request, comparison_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    c = service.retry(db, service.get(db, team_id=p.team_id, comparison_id=comparison_id))
    return redirect(request, f"/ab/{c.id}", flash=("success", "Queued again: the answers will be generated anew."))
