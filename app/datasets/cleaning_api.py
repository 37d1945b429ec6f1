"""REST for cleaning and augmentation (/api/v1/datasets/{id}/...): the scan's findings, the new
versions without near duplicates or with personal data redacted, and augmentation jobs with their
review. The same services as the pages (app/datasets/derive.py, augment.py); every query is
scoped by the caller's team, so another team's dataset or job is a 404."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.datasets import augment, derive, service
from app.datasets.schemas import (
    AugmentationIn,
    AugmentationOut,
    CleaningOut,
    DatasetOut,
    DerivedOut,
    EditIn,
    GeneratedExampleOut,
    GeneratedPage,
    ReviewIn,
    ReviewOut,
)
from app.deps import CurrentPrincipal, SessionDep
from app.errors import InvalidInput

api = APIRouter(prefix="/api/v1/datasets", tags=["dataset cleaning and augmentation"])


@api.get("/{dataset_id}/cleaning", response_model=CleaningOut)
def cleaning(dataset_id: int, db: SessionDep, p: CurrentPrincipal) -> CleaningOut:
    """The near-duplicate and personal-data scan of a dataset (runs by itself after validation)."""
    p.require("read")
    return CleaningOut.of(service.get(db, team_id=p.team_id, dataset_id=dataset_id))


@api.post("/{dataset_id}/cleaning/scan", response_model=CleaningOut, status_code=202)
def scan_again(dataset_id: int, db: SessionDep, p: CurrentPrincipal) -> CleaningOut:
    """Queue the scan again (a valid dataset only); poll GET .../cleaning."""
    p.require("write")
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    derive.request_scan(db, dataset)
    return CleaningOut.of(dataset)


@api.post("/{dataset_id}/versions/without-near-duplicates", response_model=DerivedOut, status_code=201)
def without_near_duplicates(request: Request, dataset_id: int, db: SessionDep, p: CurrentPrincipal) -> DerivedOut:
    """A new version without the near duplicates the scan found (409 until it finished, or when
    there are none). This dataset stays as it is."""
    p.require("write")
    made = derive.without_near_duplicates(db, request.app.state.store, team_id=p.team_id, user_id=p.user_id,
                                          dataset_id=dataset_id)
    return DerivedOut(dataset=DatasetOut.of(made))


@api.post("/{dataset_id}/versions/redacted", response_model=DerivedOut, status_code=201)
def redacted(request: Request, dataset_id: int, db: SessionDep, p: CurrentPrincipal) -> DerivedOut:
    """A new version with e-mail addresses, phone numbers, IBANs and card numbers replaced by
    [EMAIL], [PHONE], [IBAN], [CARD] (409 when the scan found none)."""
    p.require("write")
    made = derive.redacted(db, request.app.state.store, team_id=p.team_id, user_id=p.user_id,
                           dataset_id=dataset_id)
    return DerivedOut(dataset=DatasetOut.of(made))


# -- augmentation ------------------------------------------------------------------------------


def _out(db, job) -> AugmentationOut:  # noqa: ANN001
    return AugmentationOut.of(job, augment.counts(db, job))


@api.post("/{dataset_id}/augmentations", response_model=AugmentationOut, status_code=201)
def start_augmentation(request: Request, dataset_id: int, body: AugmentationIn, db: SessionDep,
                       p: CurrentPrincipal) -> AugmentationOut:
    """Generate examples from a valid dataset through an OpenAI-compatible endpoint, in the
    background within the budget. Nothing is used until reviewed."""
    p.require("write")
    service.get(db, team_id=p.team_id, dataset_id=dataset_id)  # 404 first for another team's dataset
    fields = {"endpoint_url": body.endpoint_url, "api_key": body.api_key, "model": body.model,
              "house_style": body.house_style, "sources": str(body.sources),
              "max_calls": "" if body.max_calls is None else str(body.max_calls), "max_tokens": str(body.max_tokens),
              "max_answer_tokens": str(body.max_answer_tokens)}
    values = augment.parse_form(fields, list(body.kinds))
    job = augment.start(db, request.app.state.settings, team_id=p.team_id, user_id=p.user_id,
                        dataset_id=dataset_id, values=values)
    return _out(db, job)


@api.get("/{dataset_id}/augmentations", response_model=list[AugmentationOut])
def list_augmentations(dataset_id: int, db: SessionDep, p: CurrentPrincipal) -> list[AugmentationOut]:
    p.require("read")
    dataset = service.get(db, team_id=p.team_id, dataset_id=dataset_id)
    return [_out(db, job) for job in augment.jobs_of(db, team_id=p.team_id, dataset_id=dataset.id)]


@api.get("/{dataset_id}/augmentations/{job_id}", response_model=AugmentationOut)
def get_augmentation(dataset_id: int, job_id: int, db: SessionDep, p: CurrentPrincipal) -> AugmentationOut:
    p.require("read")
    return _out(db, augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id))


@api.post("/{dataset_id}/augmentations/{job_id}/cancel", response_model=AugmentationOut)
def cancel_augmentation(dataset_id: int, job_id: int, db: SessionDep, p: CurrentPrincipal) -> AugmentationOut:
    """A queued job ends at once; a running one stops after the call in progress (409 once ended)."""
    p.require("write")
    job = augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id)
    augment.cancel(db, job)
    return _out(db, job)


def _example(e) -> GeneratedExampleOut:  # noqa: ANN001
    return GeneratedExampleOut(id=e.id, job_id=e.job_id, source_example=e.source_example, kind=e.kind,
                               messages=e.messages, status=e.status, edited=bool(e.edited), tokens=e.tokens or 0)


@api.get("/{dataset_id}/augmentations/{job_id}/examples", response_model=GeneratedPage)
def list_examples(dataset_id: int, job_id: int, db: SessionDep, p: CurrentPrincipal,
                  status: Literal["pending", "accepted", "rejected", "duplicate", "all"] = "all",
                  offset: Annotated[int, Query(ge=0)] = 0,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50) -> GeneratedPage:
    """The generated examples, in source order: pending ones wait for review."""
    p.require("read")
    job = augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id)
    every = augment.examples_of(db, job, None if status == "all" else status)
    return GeneratedPage(data=[_example(e) for e in every[offset:offset + limit]], total=len(every),
                         offset=offset, limit=limit)


@api.post("/{dataset_id}/augmentations/{job_id}/examples/review", response_model=ReviewOut)
def review_examples(dataset_id: int, job_id: int, body: ReviewIn, db: SessionDep, p: CurrentPrincipal) -> ReviewOut:
    """Accept or reject examples: the listed ids, or every pending one (all_pending)."""
    p.require("write")
    job = augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id)
    if body.all_pending == bool(body.ids):
        raise InvalidInput("Give either ids or all_pending: true.", param="ids")
    ids = [e.id for e in augment.examples_of(db, job, "pending")] if body.all_pending else list(body.ids or [])
    changed = augment.review(db, job, ids, body.action) if ids else 0
    return ReviewOut(changed=changed, counts=augment.counts(db, job))


@api.patch("/{dataset_id}/augmentations/{job_id}/examples/{example_id}", response_model=GeneratedExampleOut)
def edit_example(dataset_id: int, job_id: int, example_id: int, body: EditIn, db: SessionDep,
                 p: CurrentPrincipal) -> GeneratedExampleOut:
    """New texts for an example's messages (same roles, same number); it is then accepted."""
    p.require("write")
    job = augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id)
    return _example(augment.edit(db, job, example_id, body.contents))


@api.post("/{dataset_id}/augmentations/{job_id}/version", response_model=DerivedOut, status_code=201)
def make_version(request: Request, dataset_id: int, job_id: int, db: SessionDep, p: CurrentPrincipal) -> DerivedOut:
    """A new version: this dataset's examples followed by the accepted ones, with provenance
    (409 while the job runs, when none is accepted, or when it was made already)."""
    p.require("write")
    job = augment.get_job(db, team_id=p.team_id, dataset_id=dataset_id, job_id=job_id)
    made, dropped = augment.make_version(db, request.app.state.store, job=job, user_id=p.user_id)
    return DerivedOut(dataset=DatasetOut.of(made), dropped_duplicates=dropped)
