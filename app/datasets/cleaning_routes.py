"""Pages for cleaning and augmenting a dataset: the scan's new versions (without near
duplicates, personal data redacted) and augmentation with its review page. Every change is a
POST with the CSRF token; nothing changes a dataset itself: each action makes a new version."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.datasets import augment, derive, service, views
from app.deps import CurrentUser, SessionDep
from app.errors import Conflict, InvalidInput, NotFound
from app.web import is_htmx, redirect, render

pages = APIRouter(tags=["datasets"], include_in_schema=False)
REVIEW_PAGE = 50


def _version_made(dataset) -> tuple[str, str]:  # noqa: ANN001
    return ("success", f'Version {dataset.version} of "{dataset.name}" was made. It is being checked now.')


@pages.post("/datasets/{dataset_id}/scan")
def scan_again(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    derive.request_scan(db, service.get(db, team_id=p.team_id, dataset_id=dataset_id))
    return redirect(request, f"/datasets/{dataset_id}", flash=("success", "The check for near duplicates "
                                                              "and personal data was started."))


@pages.post("/datasets/{dataset_id}/without-near-duplicates")
def without_near_duplicates(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    made = derive.without_near_duplicates(db, request.app.state.store, team_id=p.team_id, user_id=p.user_id,
                                          dataset_id=dataset_id)
    return redirect(request, f"/datasets/{made.id}", flash=_version_made(made))


@pages.post("/datasets/{dataset_id}/redact")
def redact(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    made = derive.redacted(db, request.app.state.store, team_id=p.team_id, user_id=p.user_id,
                           dataset_id=dataset_id)
    return redirect(request, f"/datasets/{made.id}", flash=_version_made(made))


# -- augmentation ------------------------------------------------------------------------------


def _augment_ctx(request: Request, db, p, dataset_id: int, **extra) -> dict:  # noqa: ANN001
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    return {"dataset": dataset, "views": views, "kinds": augment.KINDS, "can_write": "write" in p.scopes,
            "jobs": augment.jobs_of(db, team_id=p.team_id, dataset_id=dataset.id), "error": None,
            "form": {"endpoint_url": str(request.base_url).rstrip("/") + "/v1", "sources": "10",
                     "max_tokens": "50000", "kinds": ["paraphrase"]}, **extra}


@pages.get("/datasets/{dataset_id}/augment")
def augment_page(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser) -> Response:
    return render(request, "datasets/augment.html", _augment_ctx(request, db, p, dataset_id))


@pages.post("/datasets/{dataset_id}/augment")
async def augment_start(request: Request, dataset_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    form = await request.form()
    fields = {k: str(form.get(k, "")) for k in ("endpoint_url", "api_key", "model", "house_style", "sources",
                                                "max_calls", "max_tokens")}
    kinds = [str(k) for k in form.getlist("kinds")]
    try:
        values = augment.parse_form(fields, kinds)
        job = augment.start(db, request.app.state.settings, team_id=p.team_id, user_id=p.user_id,
                            dataset_id=dataset_id, values=values)
    except (InvalidInput, Conflict) as exc:
        db.rollback()
        shown = {k: v for k, v in fields.items() if k != "api_key"} | {"kinds": kinds}  # the key is never sent back
        return render(request, "datasets/augment.html",
                      _augment_ctx(request, db, p, dataset_id, error=exc.message, form=shown),
                      status_code=exc.status_code)
    return redirect(request, f"/datasets/{dataset_id}/augment/{job.id}",
                    flash=("success", "The generation was started. Review the examples as they come."))


def _review_ctx(request: Request, db, p, dataset_id: int, job_id: int, show: str, page: int) -> dict:  # noqa: ANN001
    job = augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id)
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    show = show if show in (*augment.REVIEW, "duplicate", "all") else "pending"
    every = augment.examples_of(db, job, None if show == "all" else show)
    page = max(page, 1)
    shown = every[(page - 1) * REVIEW_PAGE: page * REVIEW_PAGE]
    sources = {}
    if shown and dataset.normalized_path:
        wanted = {e.source_example for e in shown}
        for n, record in enumerate(derive.records(request.app.state.store, dataset.normalized_path), 1):
            if n in wanted:
                sources[n] = record["messages"]
            if n >= max(wanted):
                break
    return {"dataset": dataset, "job": job, "examples": shown, "sources": sources, "show": show,
            "page": page, "more": len(every) > page * REVIEW_PAGE, "counts": augment.counts(db, job),
            "kinds": augment.KINDS, "running": job.status.value in ("queued", "running"),
            "can_write": "write" in p.scopes, "has_key": bool(job.api_key_encrypted), "views": views,
            "result": service.get(db, team_id=p.team_id, dataset_id=job.result_dataset_id)
            if job.result_dataset_id else None}


@pages.get("/datasets/{dataset_id}/augment/{job_id}")
def review_page(request: Request, dataset_id: int, job_id: int, db: SessionDep, p: CurrentUser,
                show: str = "pending", page: int = 1) -> Response:
    ctx = _review_ctx(request, db, p, dataset_id, job_id, show, page)
    if not is_htmx(request):
        return render(request, "datasets/review.html", ctx)
    response = render(request, "datasets/_augment_progress.html", ctx)
    if not ctx["running"]:  # the progress region polled while it ran: show the whole list once
        response.headers["HX-Refresh"] = "true"
    return response


@pages.post("/datasets/{dataset_id}/augment/{job_id}/cancel")
def cancel(request: Request, dataset_id: int, job_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    augment.cancel(db, augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id))
    return redirect(request, f"/datasets/{dataset_id}/augment/{job_id}",
                    flash=("success", "Cancelling: the generation stops after the call in progress."))


@pages.post("/datasets/{dataset_id}/augment/{job_id}/review")
async def review(request: Request, dataset_id: int, job_id: int, db: SessionDep, p: CurrentUser) -> Response:
    """One example (accept with its edited texts, or reject) or many (bulk: the ticked ones, or all
    pending)."""
    p.require("write")
    job = augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id)
    form = await request.form()
    action, show = str(form.get("action", "")), str(form.get("show", "pending"))
    back = f"/datasets/{dataset_id}/augment/{job_id}?show={show if show in (*augment.REVIEW, 'all') else 'pending'}"
    try:
        if action in ("accept_one", "reject_one"):
            example_id = _int(form.get("example_id"))
            if action == "accept_one":
                augment.edit(db, job, example_id, [str(c) for c in form.getlist("content")])
                message = "Example accepted."
            else:
                if not augment.review(db, job, [example_id], "reject"):
                    raise NotFound("There is no such generated example to review.")
                message = "Example rejected."
        elif action in ("accept", "reject", "accept_all_pending", "reject_all_pending"):
            if action.endswith("_all_pending"):
                ids = [e.id for e in augment.examples_of(db, job, "pending")]
            else:
                ids = [_int(v) for v in form.getlist("selected")]
            if not ids:
                raise InvalidInput("Tick at least one example first.", param="selected")
            done = augment.review(db, job, ids, "accept" if action.startswith("accept") else "reject")
            message = f"{done:,} example{'s' * (done != 1)} {'accepted' if action.startswith('accept') else 'rejected'}."
        else:
            raise InvalidInput("Unknown action.", param="action")
    except (InvalidInput, Conflict, NotFound) as exc:
        db.rollback()
        return redirect(request, back, flash=("error", exc.message))
    return redirect(request, back, flash=("success", message))


def _int(raw) -> int:  # noqa: ANN001
    try:
        return int(str(raw))
    except ValueError:
        raise InvalidInput("That example is not one of this review.", param="example_id") from None


@pages.post("/datasets/{dataset_id}/augment/{job_id}/version")
def make_version(request: Request, dataset_id: int, job_id: int, db: SessionDep, p: CurrentUser) -> Response:
    p.require("write")
    job = augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id)
    made, dropped = augment.make_version(db, request.app.state.store, job=job, user_id=p.user_id)
    note = f" {dropped:,} accepted example{'s' * (dropped != 1)} repeating others {'were' if dropped != 1 else 'was'} left out." if dropped else ""
    return redirect(request, f"/datasets/{made.id}", flash=("success", _version_made(made)[1] + note))
