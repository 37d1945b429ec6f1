"""Augmentation with review: generate more examples from a dataset through an OpenAI-compatible
endpoint (the studio's own /v1 included), review each one, and make a new version of the
accepted ones with per-example provenance.

- The endpoint URL must be http(s); the API key is stored encrypted with a key derived from the
  studio's secret key, is never logged and never shown back (the page says only whether one is set).
- The job runs in the background (``studio.augment_dataset``, worker.tasks.augment) within a
  budget of calls and tokens, can be cancelled, and resumes after a worker restart: each
  generated example is a row, so a re-delivered job skips what it already made.
- Nothing generated is used until reviewed: examples stay "pending" until accepted (maybe
  edited) or rejected. Generated examples that repeat an existing one (near-duplicate check) are
  kept as "duplicate" and never offered; an accepted example edited into a duplicate is dropped
  when the version is made.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import queue
from app.config import Settings
from app.datasets import derive
from app.datasets import service
from app.errors import Conflict, InvalidInput, NotFound
from app.models import AugmentationJob, AugmentationStatus, Dataset, GeneratedExample, utcnow
from app.storage import Store

AUGMENT_TASK = "studio.augment_dataset"
KINDS = {
    "paraphrase": "Paraphrases of the questions (same answer)",
    "new_question": "New questions in the same style, with answers",
    "house_style": "Answers rewritten in the house style",
}
ENDED = (AugmentationStatus.succeeded, AugmentationStatus.failed, AugmentationStatus.cancelled)
MAX_SOURCES, MAX_CALLS, MAX_TOKENS = 500, 2000, 5_000_000
ANSWER_TOKENS = 512  # max_tokens of each call, unless the job says otherwise
REVIEW = ("pending", "accepted", "rejected")


# -- the API key, at rest ----------------------------------------------------------------------


def _fernet(settings: Settings):  # noqa: ANN202
    from cryptography.fernet import Fernet

    digest = hashlib.sha256(f"studio-augmentation-key:{settings.resolved_secret_key()}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(settings: Settings, api_key: str) -> str | None:
    return _fernet(settings).encrypt(api_key.encode()).decode() if api_key else None


def unseal(settings: Settings, sealed: str | None) -> str:
    return _fernet(settings).decrypt(sealed.encode()).decode() if sealed else ""


# -- starting -----------------------------------------------------------------------------------


def check_endpoint(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("The endpoint must be an http:// or https:// address, such as "
                           "http://localhost:8000/v1.", param="endpoint_url")
    if len(url) > 500 or parts.username or parts.password:
        raise InvalidInput("Give the endpoint address without a user name or password (the API "
                           "key has its own field), in at most 500 characters.", param="endpoint_url")
    return url.rstrip("/")


def _whole(raw: str, param: str, default: int, low: int, high: int, what: str) -> int:
    raw = (raw or "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise InvalidInput(f"{what} must be a whole number, not '{raw[:40]}'.", param=param) from None
    if not low <= value <= high:
        raise InvalidInput(f"{what} must be between {low:,} and {high:,}.", param=param)
    return value


def parse_form(form: dict[str, str], kinds: list[str]) -> dict:
    """The job's settings from the form, with a message per wrong field."""
    chosen = [k for k in kinds if k in KINDS]
    if not chosen:
        raise InvalidInput("Choose at least one kind of example to generate.", param="kinds")
    model = " ".join((form.get("model") or "").split())
    if not model or len(model) > 200:
        raise InvalidInput("Name the model to ask (as the endpoint knows it, e.g. gpt-4o-mini or "
                           "a studio model id), in at most 200 characters.", param="model")
    style = (form.get("house_style") or "").strip()
    if "house_style" in chosen and not style:
        raise InvalidInput("Describe the house style (a few sentences) to rewrite answers in it.",
                           param="house_style")
    if len(style) > 2000:
        raise InvalidInput("The house style may have at most 2,000 characters.", param="house_style")
    sources = _whole(form.get("sources", ""), "sources", 10, 1, MAX_SOURCES, "The number of examples to start from")
    calls = _whole(form.get("max_calls", ""), "max_calls", sources * len(chosen), 1, MAX_CALLS,
                   "The most calls")
    tokens = _whole(form.get("max_tokens", ""), "max_tokens", 50_000, 100, MAX_TOKENS, "The most tokens")
    answer = _whole(form.get("max_answer_tokens", ""), "max_answer_tokens", ANSWER_TOKENS, 16, 4096,
                    "The longest answer (in tokens)")
    return {"endpoint_url": check_endpoint(form.get("endpoint_url") or ""), "model": model,
            "api_key": (form.get("api_key") or "").strip(),
            "settings": {"kinds": chosen, "house_style": style, "sources": sources,
                         "max_calls": calls, "max_tokens": tokens, "max_answer_tokens": answer}}


def start(session: Session, settings: Settings, *, team_id: int, user_id: int | None, dataset_id: int,
          values: dict) -> AugmentationJob:
    dataset = service.get(session, team_id=team_id, dataset_id=dataset_id)
    derive.require_valid(dataset)
    job = AugmentationJob(team_id=team_id, dataset_id=dataset.id, created_by_id=user_id,
                          endpoint_url=values["endpoint_url"], model=values["model"],
                          api_key_encrypted=seal(settings, values["api_key"]), settings=values["settings"],
                          enqueued_at=utcnow())
    session.add(job)
    session.flush()
    queue.enqueue(session, AUGMENT_TASK, job.id)
    return job


# -- reading ------------------------------------------------------------------------------------


def get_job(session: Session, *, team_id: int, dataset_id: int, job_id: int) -> AugmentationJob:
    job = session.scalar(select(AugmentationJob).where(
        AugmentationJob.team_id == team_id, AugmentationJob.id == job_id, AugmentationJob.dataset_id == dataset_id))
    if job is None:
        raise NotFound("There is no such augmentation in your team.")
    return job


def jobs_of(session: Session, *, team_id: int, dataset_id: int) -> list[AugmentationJob]:
    return list(session.scalars(select(AugmentationJob).where(
        AugmentationJob.team_id == team_id, AugmentationJob.dataset_id == dataset_id).order_by(AugmentationJob.id.desc())))


def examples_of(session: Session, job: AugmentationJob, status: str | None = None) -> list[GeneratedExample]:
    stmt = select(GeneratedExample).where(GeneratedExample.team_id == job.team_id, GeneratedExample.job_id == job.id)
    if status is not None:
        stmt = stmt.where(GeneratedExample.status == status)
    return list(session.scalars(stmt.order_by(GeneratedExample.source_example, GeneratedExample.id)))


def counts(session: Session, job: AugmentationJob) -> dict[str, int]:
    rows = session.execute(select(GeneratedExample.status, func.count()).where(
        GeneratedExample.team_id == job.team_id, GeneratedExample.job_id == job.id).group_by(GeneratedExample.status))
    out = {status: 0 for status in (*REVIEW, "duplicate")}
    out.update({status: n for status, n in rows})
    return out


# -- cancelling and reviewing -------------------------------------------------------------------


def cancel(session: Session, job: AugmentationJob) -> None:
    if job.status in ENDED:
        raise Conflict("This augmentation has already ended.")
    if job.status == AugmentationStatus.queued:
        job.status, job.message = AugmentationStatus.cancelled, "Cancelled before it started."
    job.cancel_requested = True
    session.flush()


def review(session: Session, job: AugmentationJob, ids: list[int], action: str) -> int:
    """Accept or reject these pending or reviewed examples of the job; how many changed."""
    if action not in ("accept", "reject"):
        raise InvalidInput("The action must be accept or reject.", param="action")
    if job.result_dataset_id is not None:
        raise Conflict("The new version was already made from this review; start a new augmentation to add more.")
    result = session.execute(update(GeneratedExample).where(
        GeneratedExample.team_id == job.team_id, GeneratedExample.job_id == job.id,
        GeneratedExample.id.in_(ids), GeneratedExample.status.in_(REVIEW)).values(
        status="accepted" if action == "accept" else "rejected"))
    session.expire_all()
    return result.rowcount or 0


def edit(session: Session, job: AugmentationJob, example_id: int, contents: list[str]) -> GeneratedExample:
    """New texts for an example's messages (same roles, same number), then accepted."""
    example = session.scalar(select(GeneratedExample).where(
        GeneratedExample.team_id == job.team_id, GeneratedExample.job_id == job.id, GeneratedExample.id == example_id))
    if example is None or example.status not in REVIEW:
        raise NotFound("There is no such generated example to review.")
    if job.result_dataset_id is not None:
        raise Conflict("The new version was already made from this review.")
    if len(contents) != len(example.messages):
        raise InvalidInput("Each message of the example needs its text.", param="content")
    for i, (message, text) in enumerate(zip(example.messages, contents), 1):
        if not text.strip() and message["role"] != "system":
            raise InvalidInput(f"Message {i} ({message['role']}) is empty: write its text or reject the example.",
                               param="content")
    messages = [{**m, "content": t.strip()} for m, t in zip(example.messages, contents)]
    example.edited = example.edited or messages != example.messages
    example.messages, example.status = messages, "accepted"
    session.flush()
    return example


# -- the new version ----------------------------------------------------------------------------


def make_version(session: Session, store: Store, *, job: AugmentationJob, user_id: int | None) -> tuple[Dataset, int]:
    """The source's examples followed by the accepted ones, each with its provenance; returns the
    new version and how many accepted examples were dropped as duplicates of others."""
    if job.result_dataset_id is not None:
        raise Conflict("The new version was already made from this review.")
    if job.status in (AugmentationStatus.queued, AugmentationStatus.running):
        raise Conflict("Wait for the generation to end (or cancel it) before making the new version.")
    from datacheck.near_duplicates import NearDuplicateIndex, example_text  # numpy: not at web start

    accepted = examples_of(session, job, "accepted")
    if not accepted:
        raise Conflict("Accept at least one generated example first.")
    source = service.get(session, team_id=job.team_id, dataset_id=job.dataset_id)
    derive.require_valid(source)
    train = list(derive.records(store, source.normalized_path))
    evals = list(derive.records(store, source.normalized_eval_path))
    lineage = derive.provenance(session, store, source)
    index = NearDuplicateIndex()
    for record in train + evals:
        index.add(example_text(record))
    dropped = 0
    for example in accepted:
        record = {"messages": example.messages}
        text = example_text(record)
        if index.match(text) is not None:
            dropped += 1
            continue
        index.add(text)
        train.append(record)
        lineage.append({"source": "generated", "model": job.model, "endpoint": urlsplit(job.endpoint_url).netloc,
                        "kind": example.kind, "job_id": job.id, "from_dataset_id": source.id,
                        "from_version": source.version, "from_example": example.source_example,
                        "from": lineage[example.source_example - 1] if example.source_example <= len(lineage) else None,
                        "edited": example.edited})
    if dropped == len(accepted):
        raise Conflict("Every accepted example repeats an existing one: there is nothing new to add.")
    dataset = derive.create_version(session, store, source=source, user_id=user_id, train=train, evals=evals,
                                    lineage=lineage, origin={"kind": "augmented", "job_id": job.id,
                                                             "model": job.model, "added": len(accepted) - dropped,
                                                             "dropped_duplicates": dropped})
    job.result_dataset_id = dataset.id
    session.flush()
    return dataset, dropped
