"""Enqueue after commit, pass ids.

Services call `enqueue(session, task, run_id)`; the message is kept on the session and sent
only when that session's transaction commits (a rollback drops it). A message lost after the
commit (broker down) is repaired by the reconciler, which re-enqueues from the database.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import Settings, get_settings

log = logging.getLogger(__name__)
_PENDING = "studio_pending_messages"


@lru_cache(maxsize=8)
def _celery(broker_url: str, embedded: bool):  # noqa: ANN202
    from worker.celery_app import make_celery

    settings = get_settings().model_copy(update={"broker_url": broker_url})
    return make_celery(settings)


def producer(settings: Settings | None = None):  # noqa: ANN201
    settings = settings or get_settings()
    return _celery(settings.broker_url, settings.embedded_broker)


def send(task: str, args: list[Any], *, queue: str, settings: Settings | None = None) -> None:
    producer(settings).send_task(task, args=args, queue=queue)


def enqueue(session: Session, task: str, *args: Any, queue: str = "default") -> None:
    session.info.setdefault(_PENDING, []).append((task, list(args), queue))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    for task, args, queue in pending:
        try:
            send(task, args, queue=queue)
        except Exception:  # the row is committed; the reconciler will enqueue it again
            log.exception("could not enqueue %s%s on %s; the reconciler will retry", task, args, queue)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
