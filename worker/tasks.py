"""Celery task modules. Each domain's tasks live in their own module; importing them here
registers them with the app (celery_app includes this module)."""

from __future__ import annotations

import worker.heartbeat  # noqa: F401  (connects the heartbeat signals in every worker)
import worker.ab_tasks  # noqa: F401  (studio.ab_generate)
import worker.dataset_tasks  # noqa: F401
import worker.job_tasks  # noqa: F401  (studio.train)
import worker.judge_tasks  # noqa: F401  (studio.judge)
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
