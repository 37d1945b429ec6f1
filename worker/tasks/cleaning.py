"""`studio.scan_dataset(dataset_id)`: the near-duplicate and personal-data scan of a valid dataset.

Queued by validation when a dataset turns valid (and by the dataset page's "Check again"). It
reads the stored normalised records, runs ``datacheck.cleaning.scan`` and saves the result on
``datasets.cleaning``; it changes no example. The task is acknowledged late, so a worker lost
mid-scan gets it delivered again, and running it twice gives the same result.

When the studio drew the evaluation set itself (``derive.split_by_studio``) and near duplicates
cross it (the scan's ``crossing``: evaluation examples chained to a training one), it re-splits:
those evaluation examples move into training (``datacheck.split.move_crossing``), the files are
stored under new keys (the previous ones stay: a run that started on them before a "Check
again" still reads them), the report's counts follow, and the scan runs again on the new files so
that its findings count positions in them. Runs of the dataset wait in ``validating_files`` until
this ends (``derive.split_pending``) and move on in the same transaction.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

from app.config import get_settings
from app.datasets import repository as repo
from app.datasets.derive import SCAN_TASK, split_by_studio
from app.db import session_scope
from app.models import Artifact, DatasetStatus, utcnow
from app.runs import service as runs_service
from app.storage import Store, open_store
from datacheck.cleaning import scan
from datacheck.split import move_crossing
from worker.celery_app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name=SCAN_TASK, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def scan_dataset(dataset_id: int) -> str:
    with session_scope() as s:
        dataset = repo.by_id(s, dataset_id)
        if dataset is None or dataset.status != DatasetStatus.valid:
            return "skipped"
        earlier = (dataset.cleaning or {}).get("resplit")  # a "Check again" keeps saying what moved
        dataset.cleaning = {"status": "running", "started_at": utcnow().isoformat(),
                            **({"resplit": earlier} if earlier else {})}
        train_key, eval_key = dataset.normalized_path, dataset.normalized_eval_path
        resplit = split_by_studio(dataset)
    store = open_store(get_settings())
    written: list = []
    try:
        result = _scan(store, train_key, eval_key)
        moved = result["near_duplicates"]["crossing"] if resplit else []
        if moved:
            written = _move(store, train_key, eval_key, moved)
            result = {**_scan(store, written[0][0], written[1][0]),
                      "resplit": {"moved": len(moved), "train_examples": written[0][2],
                                  "eval_examples": written[1][2]}}
        elif earlier:
            result["resplit"] = earlier
        result = {"status": "done", **result, "finished_at": utcnow().isoformat()}
    except Exception as exc:  # say so on the page; the dataset itself is untouched
        log.exception("scanning dataset %s failed", dataset_id)
        for key, _, _ in written:
            store.delete(key)
        written = []
        result = {"status": "failed", "message": f"The check stopped: {type(exc).__name__}: {str(exc)[:300]}"}
    with session_scope() as s:
        dataset = repo.by_id(s, dataset_id)
        if dataset is None or dataset.normalized_path != train_key:  # deleted or checked again meanwhile
            for key, _, _ in written:
                store.delete(key)
            return "gone"
        if written:
            _use_split(s, dataset, written)
        dataset.cleaning = result
        s.flush()
        runs_service.files_checked(s, dataset_id=dataset.id)  # runs waiting for this scan move on
    return result["status"]


def _scan(store: Store, train_key: str, eval_key: str | None) -> dict:
    with ExitStack() as stack:
        train = stack.enter_context(store.open(train_key))
        evals = stack.enter_context(store.open(eval_key)) if eval_key else None
        return scan(train, evals)


def _move(store: Store, train_key: str, eval_key: str, moved: list[int]) -> list[tuple]:
    """The re-split files, stored: [(key, Written, examples)] for train and eval."""
    scratch = get_settings().data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    prefix, tag = train_key.rsplit("/", 1)[0], uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(dir=scratch, prefix="resplit-") as tmp:
        train_path, eval_path = Path(tmp) / "train.jsonl", Path(tmp) / "eval.jsonl"
        with ExitStack() as stack:
            counts = move_crossing(stack.enter_context(store.open(train_key)),
                                   stack.enter_context(store.open(eval_key)),
                                   stack.enter_context(open(train_path, "wb")),
                                   stack.enter_context(open(eval_path, "wb")), moved=moved)
        out = []
        for name, path, n in (("train", train_path, counts.train), ("eval", eval_path, counts.eval)):
            key = f"{prefix}/{name}-resplit-{tag}.jsonl"
            out.append((key, store.write_file(key, path), n))
        return out


def _use_split(session, dataset, written: list[tuple]) -> None:  # noqa: ANN001
    (train_key, train_w, n_train), (eval_key, eval_w, n_eval) = written
    dataset.normalized_path, dataset.normalized_eval_path = train_key, eval_key
    for artifact in repo.artifacts(session, team_id=dataset.team_id, dataset_id=dataset.id):
        if artifact.kind in ("dataset_train", "dataset_eval"):
            session.delete(artifact)
    for w, kind in ((train_w, "dataset_train"), (eval_w, "dataset_eval")):
        session.add(Artifact(team_id=dataset.team_id, dataset_id=dataset.id, kind=kind, path=w.key,
                             sha256=w.sha256, size_bytes=w.size, content_type="application/jsonl"))
    report = dict(dataset.report or {})
    moved = (report.get("counts") or {}).get("eval_examples", 0) - n_eval
    report["counts"] = {**(report.get("counts") or {}), "train_examples": n_train, "eval_examples": n_eval}
    report["explanation"] = (f"{report.get('explanation') or ''} Then the near-duplicate check moved {moved:,} "
                             f"evaluation example{'s' if moved != 1 else ''} that resembled training ones into "
                             f"training: {n_train:,} are used for training and {n_eval:,} for evaluation.").strip()
    dataset.report = report
