"""The run's database reporter across a PostgreSQL outage (a private server, stopped and started):
training is never held up or failed by it, what it reports meanwhile is saved once, and the lease
is renewed again as soon as the database answers.

    PYTHONPATH=$PWD pytest -q tests/runs/test_reporter_outage.py
"""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.models import Checkpoint, Metric, Run, utcnow
from app.runs import repository as repo
from tests.processes import wait_for
from tests.runs.factories import make_dataset, make_run
from tests.services import migrated_database, private_postgres  # noqa: F401  (fixture)
from worker.tasks import runs as run_tasks


@pytest.fixture
def db_url(private_postgres):
    return migrated_database(private_postgres)


@pytest.fixture
def claimed(db, store, model, team, sent, settings, tmp_path, monkeypatch):
    """A claimed run and its reporter (beating every 0.5 s), closed at the end."""
    from app import config
    from worker.runtime.reporter import DatabaseReporter

    monkeypatch.setenv("STUDIO_HEARTBEAT_TIMEOUT_S", "2")
    config.get_settings.cache_clear()
    run = make_run(db, team[0].team_id, make_dataset(db, store, team[0].team_id), model)
    run_id, lease, _devices = run_tasks.claim_next("train@host")
    assert run_id == run.id
    reporter = DatabaseReporter(run_id=run_id, attempt=1, lease_token=lease, log_path=tmp_path / "training.log",
                                store_root=tmp_path)
    yield run_id, reporter
    if not reporter._log.closed:
        reporter.close()


def _report(reporter, steps) -> None:  # noqa: ANN001
    for step in steps:
        reporter.on_metrics(step, {"loss": 1.0 / step, "learning_rate": 1e-4})
        reporter.on_progress(step, 10, None)


def test_progress_reported_while_the_database_is_down_is_saved_once(claimed, private_postgres, db, tmp_path):
    run_id, reporter = claimed
    _report(reporter, range(1, 4))
    assert reporter.flush()
    private_postgres.stop()
    started = time.monotonic()
    _report(reporter, range(4, 7))
    assert not reporter.flush() and reporter.db_down  # kept, not raised into the training loop
    assert not reporter.should_stop()
    checkpoint = tmp_path / "checkpoints" / "checkpoint-6"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"x" * 10)
    reporter.on_checkpoint(6, str(checkpoint), {"loss": 0.2})
    assert not reporter.flush()  # while down, a flush returns at once: training is not held up
    assert time.monotonic() - started < 5
    private_postgres.start()
    wait_for(lambda: not reporter.db_down, 10, "the lease thread to reach the database again")
    _report(reporter, range(7, 11))
    reporter.close()

    db.rollback()
    db.expire_all()
    counts = db.execute(select(Metric.name, Metric.step, func.count()).where(Metric.run_id == run_id)
                        .group_by(Metric.name, Metric.step)).all()
    assert sorted((name, step) for name, step, _ in counts if name == "loss") == [("loss", s) for s in range(1, 11)]
    assert all(n == 1 for _, _, n in counts) and len(counts) == 20
    assert db.scalars(select(Checkpoint.step).where(Checkpoint.run_id == run_id)).all() == [6]
    run = db.get(Run, run_id)
    assert run.current_step == 10 and (utcnow() - run.heartbeat_at).total_seconds() < 5
    log = (tmp_path / "training.log").read_text()
    assert "The database does not answer: training goes on" in log
    assert re.search(r"The database answers again: what was kept meanwhile is saved \(\d+ metric values, "
                     r"1 checkpoint changes\)", log), log


def test_a_batch_whose_commit_landed_unheard_is_not_doubled(claimed, db):
    """A connection cut right after COMMIT: the rows are in, the reporter did not hear it and
    writes the batch again."""
    run_id, reporter = claimed
    batch = [{"run_id": run_id, "attempt": 1, "step": step, "name": "loss", "value": 0.5} for step in (1, 2)]
    with session_scope() as s:
        repo.add_metrics(s, batch)
    reporter._retry = list(batch)
    _report(reporter, [3])
    assert reporter.flush()
    db.rollback()
    db.expire_all()
    steps = db.scalars(select(Metric.step).where(Metric.run_id == run_id, Metric.name == "loss")
                       .order_by(Metric.step)).all()
    assert steps == [1, 2, 3]
