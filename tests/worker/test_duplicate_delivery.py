"""The broker delivers a run's train message twice: while the first copy is training, and again
after it finished. The Celery task runs for real, in this process, on the tiny real model; the
second and third copies claim nothing, and every metric is written once per (step, name).

tests/runs/test_claiming.py covers the compare-and-set itself (two claims, one winner); this is
the task edge around it: a copy that arrives while the run trains, and one after it is done.
It found one metric written twice at the last step: "epoch", logged with the loss and again with
the final evaluation (worker/training/callbacks.py now reports it once per step).
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from app.models import Metric, Run, RunEvent, RunStatus
from app.storage import ArtifactStore
from tests.factories import make_account
from tests.runs.factories import make_dataset, make_run, register_model
from worker.tasks import runs as run_tasks

CONFIG = {"method": "lora", "max_steps": 6, "epochs": None, "per_device_batch_size": 2, "grad_accum": 1,
          "save_strategy": "steps", "save_steps": 3, "eval_strategy": "no", "max_length": 96, "warmup": 0.0,
          "logging_steps": 1, "save_total_limit": None}


@pytest.mark.slow  # about 16 s on the 2-core machine: one real 6-step run
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_train_message_delivered_twice_runs_the_run_once(settings, db, tiny_model_dir):
    store = ArtifactStore(settings.artifact_dir)
    team_id = make_account(db).team_id
    model = register_model(db, tiny_model_dir)
    run = make_run(db, team_id, make_dataset(db, store, team_id), model)
    run.config = {"base_model": model.path, **CONFIG}
    db.commit()
    first = threading.Thread(target=lambda: run_tasks.train.apply(args=(run.id,)), daemon=True)
    first.start()

    def status() -> RunStatus:
        db.expire_all()
        return db.get(Run, run.id).status

    deadline = time.monotonic() + 60
    while status() == RunStatus.queued and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status() == RunStatus.running
    started = time.monotonic()
    run_tasks.train.apply(args=(run.id,))  # the copy delivered while the first trains
    assert time.monotonic() - started < 10 and status() == RunStatus.running
    first.join(240)
    assert not first.is_alive()
    assert status() == RunStatus.succeeded, db.get(Run, run.id).error_message

    run_tasks.train.apply(args=(run.id,))  # and the copy delivered after it finished
    db.expire_all()
    row = db.get(Run, run.id)
    assert (row.status, row.attempt, row.current_step) == (RunStatus.succeeded, 1, 6)
    starts = db.scalar(select(func.count()).select_from(RunEvent).where(
        RunEvent.run_id == run.id, RunEvent.message.like("Running on %")))
    assert starts == 1
    per_point = db.execute(select(Metric.step, Metric.name, func.count()).where(Metric.run_id == run.id)
                           .group_by(Metric.step, Metric.name)).all()
    assert {name for _, name, _ in per_point} >= {"loss"}
    assert sorted(step for step, name, _ in per_point if name == "loss") == [1, 2, 3, 4, 5, 6]
    assert all(count == 1 for _, _, count in per_point), [p for p in per_point if p[2] > 1]
