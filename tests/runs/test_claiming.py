"""Fair order across teams, one winner per claim, and the reconciler's repairs."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.runs import repository as repo
from app.models import Run, RunEvent, RunStatus, Worker, utcnow
from tests.factories import make_account
from tests.runs.factories import make_dataset, make_run
from worker.runtime import reconciler
from worker.tasks import runs as run_tasks


def test_one_teams_fifty_runs_do_not_starve_another_teams_one(db, store, model, team, sent):
    a = team[0]
    b = make_account(db)
    ds_a, ds_b = make_dataset(db, store, a.team_id), make_dataset(db, store, b.team_id)
    a_runs = [make_run(db, a.team_id, ds_a, model) for _ in range(50)]
    b_run = make_run(db, b.team_id, ds_b, model)
    order = []
    for _ in range(3):
        run_id, _lease, _devices = run_tasks.claim_next("w1@test")
        order.append(run_id)
        db.expire_all()
        run = db.get(Run, run_id)
        run.status, run.finished_at = RunStatus.succeeded, utcnow()  # it ran; the worker is free again
        db.commit()
    assert order == [a_runs[0].id, b_run.id, a_runs[1].id]


def test_priority_comes_first_within_the_team(db, store, model, team, sent):
    ds = make_dataset(db, store, team[0].team_id)
    low = make_run(db, team[0].team_id, ds, model)
    high = make_run(db, team[0].team_id, ds, model, priority=5)
    assert [j.id for j in repo.queued_in_fair_order(db, "train")] == [high.id, low.id]


def _finish(db, run_id):  # noqa: ANN001, ANN202
    db.expire_all()
    run = db.get(Run, run_id)
    run.status, run.finished_at = RunStatus.succeeded, utcnow()  # it ran; the worker is free again
    db.commit()


def test_priority_orders_only_the_teams_own_runs(db, store, model, team, sent):
    """Team A raises its priority to 100, team B keeps 0: B is not starved, and within A the high
    priority run goes first."""
    a, b = team[0], make_account(db)
    ds_a, ds_b = make_dataset(db, store, a.team_id), make_dataset(db, store, b.team_id)
    a_low = make_run(db, a.team_id, ds_a, model)
    a_high = [make_run(db, a.team_id, ds_a, model, priority=100) for _ in range(3)]
    b_run = make_run(db, b.team_id, ds_b, model, priority=0)
    order = []
    for _ in range(5):
        run_id, _lease, _devices = run_tasks.claim_next("w1@test")
        order.append(run_id)
        _finish(db, run_id)
    assert order == [a_high[0].id, b_run.id, a_high[1].id, a_high[2].id, a_low.id]


def test_a_worker_finds_a_run_that_fits_behind_sixty_that_do_not(db, store, model, team, sent):
    """The queue is read a page at a time until a run fits: sixty runs too big for this worker
    (memory, or more devices than it has) do not hide the one that fits."""
    ds = make_dataset(db, store, team[0].team_id)
    for i in range(60):
        if i % 2:
            make_run(db, team[0].team_id, ds, model, priority=5, estimate={"memory": {"total_gb": 70.0}})
        else:
            make_run(db, team[0].team_id, ds, model, priority=5,
                     config={"base_model": model.path, "max_steps": 4, "devices": 4})
    small = make_run(db, team[0].team_id, ds, model, estimate={"memory": {"total_gb": 10.0}})
    assert len(repo.queued_in_fair_order(db, "train")) == 50  # more than one page ahead of it
    claimed = run_tasks.claim_next("gpu24@test", memory_gb=24, device_count=2)
    assert claimed is not None and claimed.run_id == small.id


def _eta(db, run_id: int, seconds: float) -> None:  # noqa: ANN001
    db.expire_all()
    db.get(Run, run_id).eta_s = seconds
    db.commit()


def test_the_claim_gives_a_run_the_lowest_free_devices_of_its_worker(db, store, model, team, sent):
    ds = make_dataset(db, store, team[0].team_id)

    def run(devices: int, time_s: float | None = None) -> Run:
        return make_run(db, team[0].team_id, ds, model, config={"base_model": model.path, "devices": devices},
                        estimate={"time_s": time_s} if time_s is not None else None)

    two, one, three, another = run(2), run(1), run(3), run(1, time_s=300)
    first = run_tasks.claim_next("gpu@host", device_count=4)
    assert (first.run_id, first.device_ids) == (two.id, [0, 1])
    second = run_tasks.claim_next("gpu@host", device_count=4)
    assert (second.run_id, second.device_ids) == (one.id, [2])
    # One device left and the 3-device run waits for three: it holds the worker. While nobody
    # knows when the running runs end, nothing starts on the free device ahead of it.
    assert run_tasks.claim_next("gpu@host", device_count=4) is None
    # Once they report their ETAs (three devices free in 600 s), a run estimated to end before
    # that starts on the free device (backfilling); it takes device 3.
    _eta(db, two.id, 600)
    _eta(db, one.id, 100)
    third = run_tasks.claim_next("gpu@host", device_count=4)
    assert (third.run_id, third.device_ids) == (another.id, [3])
    assert run_tasks.claim_next("gpu@host", device_count=4) is None  # every device is busy
    db.expire_all()
    assert db.get(Run, two.id).device_ids == [0, 1] and db.get(Run, three.id).status == RunStatus.queued
    assert "devices 0, 1" in db.scalar(select(RunEvent.message).where(RunEvent.run_id == two.id))
    _finish(db, two.id)  # devices 0 and 1 are free again: still not three
    assert run_tasks.claim_next("gpu@host", device_count=4) is None
    _finish(db, one.id)
    fourth = run_tasks.claim_next("gpu@host", device_count=4)
    assert (fourth.run_id, fourth.device_ids) == (three.id, [0, 1, 2])
    # Another worker's devices are its own.
    assert run_tasks.claim_next("other@host", device_count=1) is None  # nothing left in the queue


def test_small_runs_do_not_starve_a_run_that_waits_for_several_devices(db, store, model, team, sent):
    """A stream of 1-device runs behind a 2-device run: only those estimated to end before the
    held devices free up start; a long one (or one with no estimate) waits behind the large run."""
    ds = make_dataset(db, store, team[0].team_id)

    def run(devices: int, time_s: float | None) -> Run:
        return make_run(db, team[0].team_id, ds, model, config={"base_model": model.path, "devices": devices},
                        estimate={"time_s": time_s} if time_s is not None else None)

    busy = run(1, 100)
    assert run_tasks.claim_next("gpu@host", device_count=2).run_id == busy.id
    _eta(db, busy.id, 100)
    large, long, unknown, short = run(2, 1000), run(1, 5000), run(1, None), run(1, 60)
    claimed = run_tasks.claim_next("gpu@host", device_count=2)
    assert claimed.run_id == short.id  # ends in 60 s, before the busy device frees up in 100 s
    assert run_tasks.claim_next("gpu@host", device_count=2) is None
    _finish(db, busy.id)
    _finish(db, short.id)
    assert run_tasks.claim_next("gpu@host", device_count=2).run_id == large.id  # not `long`, older in line
    db.expire_all()
    assert db.get(Run, long.id).status == db.get(Run, unknown.id).status == RunStatus.queued


def test_a_run_is_claimed_once_and_duplicate_tickets_find_nothing(db, store, model, team, sent):
    ds = make_dataset(db, store, team[0].team_id)
    run = make_run(db, team[0].team_id, ds, model)
    assert repo.claim(db, run_id=run.id, worker="w1", lease_token="t1", now=utcnow()) is True
    assert repo.claim(db, run_id=run.id, worker="w2", lease_token="t2", now=utcnow()) is False
    db.commit()
    assert run_tasks.claim_next("w3@test") is None  # a re-delivered ticket runs nothing twice
    db.expire_all()
    row = db.get(Run, run.id)
    assert (row.worker_id, row.lease_token, row.attempt) == ("w1", "t1", 1)


def _running(db, team_id, ds, model, *, silent_s: int, attempt: int = 1, max_attempts: int = 3):  # noqa: ANN001
    return make_run(db, team_id, ds, model, status=RunStatus.running, worker_id="dead@host", lease_token="old",
                    attempt=attempt, max_attempts=max_attempts, heartbeat_at=utcnow() - timedelta(seconds=silent_s))


def test_reconciler_requeues_a_lost_run_then_gives_up(db, store, model, team, sent, settings):
    from app.models import Checkpoint

    ds = make_dataset(db, store, team[0].team_id)
    lost = _running(db, team[0].team_id, ds, model, silent_s=settings.heartbeat_timeout_s + 5)
    db.add(Checkpoint(run_id=lost.id, step=40, path=f"teams/x/runs/{lost.id}/checkpoint-40", size_bytes=1))
    fresh_start = _running(db, team[0].team_id, ds, model, silent_s=settings.heartbeat_timeout_s + 5)
    alive = _running(db, team[0].team_id, ds, model, silent_s=1)
    spent = _running(db, team[0].team_id, ds, model, silent_s=settings.heartbeat_timeout_s + 5, attempt=3)
    db.commit()
    result = reconciler.reconcile(settings)
    assert result["requeued"] == 3
    db.expire_all()
    assert db.get(Run, lost.id).status == RunStatus.queued and db.get(Run, lost.id).lease_token is None
    assert db.get(Run, lost.id).worker_id is None
    assert db.get(Run, alive.id).status == RunStatus.running
    failed = db.get(Run, spent.id)
    assert failed.status == RunStatus.failed and failed.error_kind == "worker_lost"
    assert failed.error_message.startswith("The worker dead@host stopped answering (")
    assert "attempt 3 of 3" in failed.error_message
    assert ("studio.train", [lost.id], "train") in sent and ("studio.train", [spent.id], "train") not in sent
    message = db.scalar(select(RunEvent.message).where(RunEvent.run_id == lost.id))
    assert message.startswith(f"The worker dead@host stopped answering ({settings.heartbeat_timeout_s + 5} s")
    assert "queued again and resumes from step 40 (attempt 2 of 3)." in message
    message = db.scalar(select(RunEvent.message).where(RunEvent.run_id == fresh_start.id))
    assert "dead@host" in message and "starts from the beginning" in message
    event = db.scalar(select(RunEvent).where(RunEvent.run_id == lost.id))
    assert event.data["worker"] == "dead@host" and event.data["resume_step"] == 40
    assert reconciler.reconcile(settings)["requeued"] == 0  # nothing is done twice


def test_a_run_lost_twice_at_the_same_checkpoint_comes_back_with_half_the_micro_batch(db, store, model, team, sent,
                                                                                     settings):
    """What the kernel's out-of-memory killer looks like from the database: the worker vanishes,
    and again after the requeue, before a new checkpoint. The second requeue halves the
    micro-batch and doubles the accumulation, saying why; a single loss changes nothing."""
    from app.models import Checkpoint

    ds = make_dataset(db, store, team[0].team_id)
    run = _running(db, team[0].team_id, ds, model, silent_s=settings.heartbeat_timeout_s + 5)
    run.config = {**run.config, "max_steps": 40, "per_device_batch_size": 8, "grad_accum": 2}
    db.add(Checkpoint(run_id=run.id, step=20, path=f"teams/x/jobs/{run.id}/run/checkpoint-20", size_bytes=1))
    db.commit()
    assert reconciler.reconcile(settings)["requeued"] == 1
    db.expire_all()
    first = db.get(Run, run.id)
    assert (first.config["per_device_batch_size"], first.config["grad_accum"]) == (8, 2)  # once is not a pattern

    first.status, first.lease_token, first.worker_id, first.attempt = RunStatus.running, "new", "dead@host", 2
    first.heartbeat_at = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 5)
    db.commit()
    assert reconciler.reconcile(settings)["requeued"] == 1
    db.expire_all()
    again = db.get(Run, run.id)
    assert again.status == RunStatus.queued
    assert (again.config["per_device_batch_size"], again.config["grad_accum"]) == (4, 4)
    messages = [e.message for e in db.scalars(select(RunEvent).where(RunEvent.run_id == run.id).order_by(RunEvent.id))]
    assert any(m.startswith("The worker was lost twice before the run passed a new checkpoint") and
               "retrying from step 20 with 4 examples at once and twice the accumulation (same effective batch of 16)"
               in m for m in messages), messages


def test_a_killed_workers_run_is_queued_again_within_30_seconds_by_default(db, store, model, team, sent, settings):
    """The defaults: a run silent for longer than the timeout is taken back at the next pass, and
    timeout + pass period stay under 30 s; a run silent for less than the timeout is left alone."""
    from app.config import Settings

    defaults = {name: Settings.model_fields[name].default for name in ("heartbeat_timeout_s", "reconcile_every_s")}
    assert defaults["heartbeat_timeout_s"] + defaults["reconcile_every_s"] < 30
    assert (settings.heartbeat_timeout_s, settings.reconcile_every_s) == tuple(defaults.values())
    ds = make_dataset(db, store, team[0].team_id)
    lost = _running(db, team[0].team_id, ds, model, silent_s=settings.heartbeat_timeout_s + 1)
    quiet = _running(db, team[0].team_id, ds, model, silent_s=settings.heartbeat_timeout_s - 4)
    assert reconciler.reconcile(settings)["requeued"] == 1
    db.expire_all()
    assert db.get(Run, lost.id).status == RunStatus.queued and db.get(Run, quiet.id).status == RunStatus.running


def test_a_long_step_is_not_taken_for_a_lost_worker(db, store, model, team, sent, settings, tmp_path, monkeypatch):
    """The lease is renewed by the reporter's own thread: a main thread busy in one long step (here
    pure Python, holding the GIL as much as it can) keeps its run; once the beats stop, the run is
    taken back and the event names the worker."""
    import time

    from app import config
    from worker.runtime.reporter import DatabaseReporter

    monkeypatch.setenv("STUDIO_HEARTBEAT_TIMEOUT_S", "2")  # the reporter beats every 0.5 s
    config.get_settings.cache_clear()
    settings.heartbeat_timeout_s = 2
    ds = make_dataset(db, store, team[0].team_id)
    run = make_run(db, team[0].team_id, ds, model)
    run_id, lease, _devices = run_tasks.claim_next("train@busy-host")
    assert run_id == run.id
    reporter = DatabaseReporter(run_id=run_id, attempt=1, lease_token=lease, log_path=tmp_path / "training.log",
                                store_root=tmp_path)
    try:
        busy_until = time.monotonic() + 3 * settings.heartbeat_timeout_s  # one step three timeouts long
        n = 0
        while time.monotonic() < busy_until:
            n += 1
        assert reconciler.reconcile(settings)["requeued"] == 0
        db.expire_all()
        row = db.get(Run, run_id)
        assert row.status == RunStatus.running and row.lease_token == lease
        assert (utcnow() - row.heartbeat_at).total_seconds() < settings.heartbeat_timeout_s
        assert not reporter.lease_lost
    finally:
        reporter.close()  # the worker is gone: no more beats
    time.sleep(settings.heartbeat_timeout_s + 0.5)
    assert reconciler.reconcile(settings)["requeued"] == 1
    db.expire_all()
    assert db.get(Run, run_id).status == RunStatus.queued
    messages = db.scalars(select(RunEvent.message).where(RunEvent.run_id == run_id)).all()
    assert any(m.startswith("The worker train@busy-host stopped answering") for m in messages), messages


def test_reconciler_resends_tickets_lost_with_the_broker_only_to_idle_workers(db, store, model, team, sent, settings):
    ds = make_dataset(db, store, team[0].team_id)
    waiting = make_run(db, team[0].team_id, ds, model)
    waiting.enqueued_at = utcnow() - timedelta(seconds=settings.requeue_after_s + 5)
    fresh = make_run(db, team[0].team_id, ds, model)
    db.commit()
    assert reconciler.reconcile(settings)["resent"] == 0  # no training worker: nothing would take it
    db.add(Worker(name="train@host", queues="train", last_seen_at=utcnow()))
    db.commit()
    assert reconciler.reconcile(settings)["resent"] == 1
    assert sent == [("studio.train", [waiting.id], "train")]
    assert fresh.id not in [args[0] for _, args, _ in sent]
    assert reconciler.reconcile(settings)["resent"] == 0  # its clock was reset


def test_a_worker_claims_only_runs_that_fit_its_device(db, store, model, team, sent):
    ds = make_dataset(db, store, team[0].team_id)
    big = make_run(db, team[0].team_id, ds, model, estimate={"memory": {"total_gb": 70.0}})
    small = make_run(db, team[0].team_id, ds, model, estimate={"memory": {"total_gb": 10.0}})
    assert run_tasks.claim_next("gpu24@test", memory_gb=24)[0] == small.id
    assert run_tasks.claim_next("gpu24@test", memory_gb=24) is None  # the 70 GB run waits for a bigger GPU
    assert run_tasks.claim_next("gpu80@test", memory_gb=80)[0] == big.id


def test_failures_are_explained_in_plain_words():
    class OutOfMemoryError(RuntimeError):
        pass

    class DataError(ValueError):
        pass

    kind, message = run_tasks.classify_failure(OutOfMemoryError("CUDA out of memory. Tried to allocate"), 12)
    assert kind == "oom" and "at step 12" in message and "QLoRA" in message and "gradient checkpointing" in message
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried "
                       "to allocate 32571392 bytes. Error code 12 (Cannot allocate memory)")
    assert run_tasks.classify_failure(cpu, 3)[0] == "oom"
    assert run_tasks.classify_failure(MemoryError(), 3)[0] == "oom"
    kind, message = run_tasks.classify_failure(DataError("every answer is masked"), 0)
    assert kind == "dataset" and "every answer is masked" in message
    kind, message = run_tasks.classify_failure(KeyError("x"), 3)
    assert kind == "error" and "KeyError" in message and "log" in message


def test_checkpoints_deleted_by_the_run_leave_the_list(db, store, model, team, sent, tmp_path):
    """The run page and the APIs list the checkpoints on disk: the worker's reporter drops the rows
    of those the rotation deleted, and says so in the run's log."""
    from app.models import Checkpoint
    from worker.runtime.reporter import DatabaseReporter

    ds = make_dataset(db, store, team[0].team_id)
    run = make_run(db, team[0].team_id, ds, model)
    run_id, lease, _devices = run_tasks.claim_next("w1@test")
    assert run_id == run.id
    for step in (2, 4, 6):
        db.add(Checkpoint(run_id=run.id, step=step, path=f"teams/x/checkpoint-{step}", size_bytes=1))
    db.commit()
    log = tmp_path / "training.log"
    reporter = DatabaseReporter(run_id=run.id, attempt=1, lease_token=lease, log_path=log, store_root=tmp_path)
    try:
        reporter.on_checkpoints_deleted([2, 4])
    finally:
        reporter.close()
    db.expire_all()
    assert [c.step for c in repo.checkpoints(db, run.id)] == [6]
    assert "Deleted older checkpoints (steps 2, 4)" in log.read_text()


def test_each_runs_log_keeps_its_own_threads_records():
    """A worker with several devices trains several runs at once, a thread each: a run's log
    file takes its own thread's records and those of threads that train no run."""
    import logging
    import threading

    filters, records = {}, {}
    checked = threading.Event()

    def train(name: str) -> None:
        filters[name] = run_tasks._OwnThread()
        records[name] = logging.LogRecord(name, logging.INFO, __file__, 1, name, None, None)
        checked.wait(10)  # both runs are training until the main thread has checked

    threads = [threading.Thread(target=train, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    try:
        while len(records) < 2:
            threading.Event().wait(0.01)
        helper = logging.LogRecord("engine", logging.INFO, __file__, 1, "helper", None, None)  # this thread
        assert [filters["a"].filter(r) for r in (records["a"], records["b"], helper)] == [True, False, True]
        assert [filters["b"].filter(r) for r in (records["a"], records["b"], helper)] == [False, True, True]
    finally:
        checked.set()
        for t in threads:
            t.join()
        run_tasks._run_threads.difference_update(f.thread for f in filters.values())


def test_a_worker_that_frees_its_devices_sends_a_ticket_for_the_queue(db, store, model, team, sent):
    """A run whose own ticket found no worker with enough free devices starts when devices free
    up, not a reconciler pass later: the task that ends a run sends a ticket for the queue."""
    ds = make_dataset(db, store, team[0].team_id)
    run_tasks._ticket_for_the_next("train")
    assert sent == []  # nothing queued: no ticket
    waiting = make_run(db, team[0].team_id, ds, model, config={"base_model": model.path, "devices": 2})
    run_tasks._ticket_for_the_next("train")
    assert sent == [("studio.train", [waiting.id], "train")]
