"""`studio.scan_dataset(dataset_id)`: the near-duplicate and personal-data scan of a valid dataset.

Queued by validation when a dataset turns valid (and by the dataset page's "Check again"). It
reads the stored normalised records, runs ``datacheck.cleaning.scan`` and saves the result on
``datasets.cleaning``; it changes no example. The task is acknowledged late, so a worker lost
mid-scan gets it delivered again, and running it twice gives the same result.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack

from app.config import get_settings
from app.datasets import repository as repo
from app.datasets.derive import SCAN_TASK
from app.db import session_scope
from app.models import DatasetStatus, utcnow
from app.storage import open_store
from datacheck.cleaning import scan
from worker.celery_app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name=SCAN_TASK, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def scan_dataset(dataset_id: int) -> str:
    with session_scope() as s:
        dataset = repo.by_id(s, dataset_id)
        if dataset is None or dataset.status != DatasetStatus.valid:
            return "skipped"
        dataset.cleaning = {"status": "running", "started_at": utcnow().isoformat()}
        train_key, eval_key = dataset.normalized_path, dataset.normalized_eval_path
    store = open_store(get_settings())
    try:
        with ExitStack() as stack:
            train = stack.enter_context(store.open(train_key))
            evals = stack.enter_context(store.open(eval_key)) if eval_key else None
            result = {"status": "done", **scan(train, evals), "finished_at": utcnow().isoformat()}
    except Exception as exc:  # say so on the page; the dataset itself is untouched
        log.exception("scanning dataset %s failed", dataset_id)
        result = {"status": "failed", "message": f"The check stopped: {type(exc).__name__}: {str(exc)[:300]}"}
    with session_scope() as s:
        dataset = repo.by_id(s, dataset_id)
        if dataset is not None:
            dataset.cleaning = result
    return result["status"]
