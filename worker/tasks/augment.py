"""`studio.augment_dataset(job_id)`: generate examples for review through an OpenAI-compatible
endpoint (see app.datasets.augment for the rules).

The plan is fixed by the job: ``sources`` training examples, evenly spaced, times the chosen
kinds. Each step is one chat completion; its example is saved as a row at once, with the calls
and tokens spent and a heartbeat. So the job
- resumes where it stopped when it is delivered again (acks_late; the reconciler re-queues a job
  whose heartbeat went stale): steps with a row are skipped;
- stops between steps when cancelled or when the budget (calls, tokens) is spent;
- drops an example that is a near duplicate of the dataset's examples or of one made before
  (kept as "duplicate", never offered for review).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

from sqlalchemy import or_, select, update

from app.config import get_settings
from app.datasets import augment, derive
from app.datasets import repository as datasets_repo
from app.db import session_scope
from app.models import AugmentationJob, AugmentationStatus, GeneratedExample, utcnow
from app.storage import open_store
from datacheck.near_duplicates import NearDuplicateIndex, example_text
from worker.celery_app import celery_app

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 60.0
STALE_AFTER_S = 3 * CALL_TIMEOUT_S  # a heartbeat older than this: the worker was lost
MAX_ATTEMPTS = 3


class Unusable(ValueError):
    """The endpoint's answer cannot be made into an example."""


def _turns(messages: list[dict]) -> tuple[int, int] | None:
    """Indices of the last assistant message and of the user message before it."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return None
    user = max((i for i, m in enumerate(messages[:last]) if m.get("role") == "user"), default=None)
    return None if user is None else (user, last)


def prompt_for(kind: str, messages: list[dict], style: str) -> str:
    user, last = _turns(messages)
    q, a = messages[user]["content"], messages[last]["content"]
    if kind == "paraphrase":
        return ("Rewrite the following question with different words. Keep its meaning, its language "
                f"and its tone. Reply with the new question only.\n\nQuestion:\n{q}")
    if kind == "new_question":
        return ("Here is a question a user asked and the answer they were given.\n\n"
                f"Question:\n{q}\n\nAnswer:\n{a}\n\nWrite one new, different question that a user of the "
                "same service could ask, in the same language and style, and its answer in the same "
                'style. Reply with JSON only: {"question": "...", "answer": "..."}')
    return (f"Rewrite the answer below in this house style: {style}\nKeep its facts and its language. "
            f"Reply with the rewritten answer only.\n\nQuestion:\n{q}\n\nAnswer:\n{a}")


def example_from(kind: str, messages: list[dict], reply: str) -> list[dict]:
    """The new example's messages, from the source example and the endpoint's reply."""
    reply = reply.strip()
    if not reply:
        raise Unusable("the endpoint answered with an empty text")
    user, last = _turns(messages)
    out = [dict(m) for m in messages[: last + 1]]
    if kind == "paraphrase":
        out[user]["content"] = reply
    elif kind == "house_style":
        out[last]["content"] = reply
    else:
        fenced = re.search(r"\{.*\}", reply, re.DOTALL)
        try:
            data = json.loads(fenced.group() if fenced else reply)
            question, answer = str(data["question"]).strip(), str(data["answer"]).strip()
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Unusable("the endpoint did not answer with the JSON asked for") from None
        if not question or not answer:
            raise Unusable("the endpoint gave an empty question or answer")
        system = [m for m in out[:1] if m.get("role") == "system"]
        out = system + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return out


def _claim(job_id: int) -> AugmentationJob | None:
    """queued -> running (or a running job whose worker was lost), compare-and-set."""
    now = utcnow()
    with session_scope() as s:
        stale = now - timedelta(seconds=STALE_AFTER_S)
        done = s.execute(update(AugmentationJob).where(
            AugmentationJob.id == job_id, AugmentationJob.cancel_requested.is_(False),
            or_(AugmentationJob.status == AugmentationStatus.queued,
                (AugmentationJob.status == AugmentationStatus.running) & (AugmentationJob.heartbeat_at < stale))
        ).values(status=AugmentationStatus.running, heartbeat_at=now,
                 attempt=AugmentationJob.attempt + 1)).rowcount
        if not done:
            return None
        job = s.get(AugmentationJob, job_id)
        s.expunge(job)
        return job


def _finish(job_id: int, status: AugmentationStatus, message: str | None) -> None:
    with session_scope() as s:
        job = s.get(AugmentationJob, job_id)
        if job is not None and job.status == AugmentationStatus.running:
            job.status, job.message, job.heartbeat_at = status, message, utcnow()


def _client(job: AugmentationJob, api_key: str):  # noqa: ANN202
    from openai import OpenAI

    return OpenAI(base_url=job.endpoint_url, api_key=api_key or "not-needed", timeout=CALL_TIMEOUT_S,
                  max_retries=1)


@celery_app.task(name=augment.AUGMENT_TASK, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def augment_dataset(job_id: int) -> str:
    job = _claim(job_id)
    if job is None:
        return "skipped"
    settings = get_settings()
    api_key = ""
    try:
        api_key = augment.unseal(settings, job.api_key_encrypted)
        status, message = _generate(job, api_key)
    except Exception as exc:  # noqa: BLE001  any failure ends the job with its reason
        text = f"{type(exc).__name__}: {str(exc)[:400]}"
        if api_key:
            text = text.replace(api_key, "[key]")
        log.warning("augmentation %s failed: %s", job_id, text)
        status, message = AugmentationStatus.failed, f"The generation stopped: {text}"
    _finish(job_id, status, message)
    return status.value


def _generate(job: AugmentationJob, api_key: str) -> tuple[AugmentationStatus, str | None]:
    store = open_store(get_settings())
    with session_scope() as s:
        dataset = datasets_repo.by_id(s, job.dataset_id)
        if dataset is None or not dataset.normalized_path:
            return AugmentationStatus.failed, "The dataset is gone."
        train_key, eval_key = dataset.normalized_path, dataset.normalized_eval_path
        made = {(g.source_example, g.kind): g for g in s.scalars(
            select(GeneratedExample).where(GeneratedExample.job_id == job.id))}
        s.expunge_all()
    records = list(derive.records(store, train_key))
    index = NearDuplicateIndex()
    for record in records + list(derive.records(store, eval_key)):
        index.add(example_text(record))
    for g in made.values():
        if g.status != "duplicate":
            index.add(example_text({"messages": g.messages}))
    opts = job.settings
    usable = [n for n, r in enumerate(records, 1) if _turns(r.get("messages") or [])]
    count = min(opts["sources"], len(usable))
    sources = [usable[i * len(usable) // count] for i in range(count)] if count else []
    plan = [(n, kind) for n in sources for kind in opts["kinds"]]
    with session_scope() as s:
        s.get(AugmentationJob, job.id).total_steps = len(plan)
    if not plan:
        return AugmentationStatus.failed, "No example has a question and an answer to start from."
    client = _client(job, api_key)
    unusable = 0
    for n, kind in plan:
        if (n, kind) in made:
            continue
        with session_scope() as s:
            row = s.get(AugmentationJob, job.id)
            if row.cancel_requested:
                return AugmentationStatus.cancelled, "Cancelled: the examples made so far can be reviewed."
            if row.calls_used >= opts["max_calls"] or row.tokens_used >= opts["max_tokens"]:
                return AugmentationStatus.succeeded, (
                    f"Stopped at the budget ({row.calls_used:,} calls, {row.tokens_used:,} tokens) after "
                    f"{row.done_steps:,} of {len(plan):,} steps.")
        messages = records[n - 1]["messages"]
        response = client.chat.completions.create(
            model=job.model, messages=[{"role": "user", "content": prompt_for(kind, messages, opts["house_style"])}],
            temperature=0.7, max_tokens=opts.get("max_answer_tokens", augment.ANSWER_TOKENS))
        tokens = response.usage.total_tokens if response.usage else 0
        reply = (response.choices[0].message.content or "") if response.choices else ""
        try:
            new = example_from(kind, messages, reply)
            text = example_text({"messages": new})
            status = "duplicate" if index.match(text) is not None else "pending"
            if status == "pending":
                index.add(text)
        except Unusable as exc:
            unusable += 1
            log.info("augmentation %s: example %s (%s) not usable: %s", job.id, n, kind, exc)
            new, status = None, None
        with session_scope() as s:
            row = s.get(AugmentationJob, job.id)
            row.calls_used += 1
            row.tokens_used += tokens
            row.done_steps += 1
            row.heartbeat_at = utcnow()
            if new is not None:
                s.add(GeneratedExample(team_id=job.team_id, job_id=job.id, source_example=n, kind=kind,
                                       messages=new, status=status, tokens=tokens))
    note = f" {unusable:,} answers could not be used." if unusable else None
    return AugmentationStatus.succeeded, note.strip() if note else None


def requeue_lost(s, settings, now) -> int:  # noqa: ANN001
    """For the reconciler: a queued job whose message was lost, or a running one whose worker
    stopped (heartbeat stale), is queued again; after MAX_ATTEMPTS it fails with the reason."""
    from app import queue

    count = 0
    waiting = s.scalars(select(AugmentationJob).where(
        AugmentationJob.status == AugmentationStatus.queued,
        AugmentationJob.enqueued_at < now - timedelta(seconds=settings.requeue_after_s)))
    lost = s.scalars(select(AugmentationJob).where(
        AugmentationJob.status == AugmentationStatus.running,
        AugmentationJob.heartbeat_at < now - timedelta(seconds=STALE_AFTER_S)))
    for job in list(waiting) + list(lost):
        if job.status == AugmentationStatus.running and job.attempt >= MAX_ATTEMPTS:
            job.status = AugmentationStatus.failed
            job.message = (f"The worker was lost {job.attempt} times; the generation is given up. The "
                           "examples made so far can be reviewed.")
            continue
        job.enqueued_at = now
        queue.enqueue(s, augment.AUGMENT_TASK, job.id)
        count += 1
    return count
