"""`studio.ping`: a round trip through the broker, used by `studio doctor --deep` and the broker tests."""

from __future__ import annotations

from app.db import session_scope
from app.workers import repository as workers_repo
from worker.celery_app import celery_app


@celery_app.task(name="studio.ping", bind=True)
def ping(self, nonce: str) -> None:  # noqa: ANN001
    """Round trip through the broker: the worker writes the nonce on its own row.
    Used by `studio doctor --deep` and the broker tests."""
    with session_scope() as s:
        row = workers_repo.by_name(s, self.request.hostname)
        if row is not None:
            row.info = {**(row.info or {}), "last_ping": nonce}
