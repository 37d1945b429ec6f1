"""Repairs what the broker cannot: the database is the truth.

- A run in progress whose lease heartbeat is older than `heartbeat_timeout_s` lost its worker (killed,
  host down): it is queued again and resumes from its latest checkpoint, up to `max_attempts`;
  after that it fails with the reason. The event names the worker that was lost. The lease is
  renewed by a thread of the reporter, not at step boundaries, so a long step is never taken for a
  death; with the defaults (20 s timeout, a pass every 5 s) a killed worker's run is queued again
  within 25 s.
- A queued run that has waited longer than `requeue_after_s` while a training worker had a device free
  lost its message (Redis flushed or restarted, broker down at submit time): it is enqueued again.
  Extra tickets are harmless: a worker claims runs by compare-and-set.
- A dataset still "uploaded" after `requeue_after_s` gets its validation enqueued again.
- A near-duplicate scan that waiting runs depend on (app.datasets.derive.split_pending), still
  queued after `requeue_after_s` or running for longer than SCAN_STALE_S, is enqueued again, so
  those runs never wait for ever (a second scan of the same files is harmless: the one that ends
  second sees the split already changed and leaves it).
- A run still `validating_files` whose files are checked moves on (queued, or failed with the
  file's error): the check ended while the run was being created (SQLite has no row lock for that).
- An A/B comparison still waiting for its answers after `requeue_after_s` while a training worker
  sat idle lost its message: its generation is enqueued again (the task skips a comparison that
  has moved on, so an extra message is harmless).
- An automatic evaluation whose worker is gone (or restarted) is marked failed, so none stays
  "running" for ever; the run page offers to run it again.
- A queued run that asks for more devices than any live worker of its queue has gets an event
  that says so (it waits for a bigger worker), once, and again if the largest worker changes.
- An augmentation (worker.tasks.augment) still queued after `requeue_after_s`, or running with a
  heartbeat older than its stale limit, is enqueued again and resumes after its last example.
- A notification (webhook call or e-mail) still pending `requeue_after_s` after it was due lost its
  message or its process: it is enqueued again (app/notifications/service.py, redeliver_due).
- A running sweep is advanced: a run that ended without the worker's hook (cancelled from the web,
  given up above) frees its slot, and a sweep whose runs have all ended picks its best.

Every worker runs it in a thread (started with the heartbeat); the updates are compare-and-set,
so several reconcilers never double a transition.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from app import queue
from app.config import Settings, get_settings
from app.db import session_factory, session_scope, unreachable
from app.runs import queue_position
from app.runs import repository as repo
from app.runs import service
from app.ab import repository as ab_repo
from app.ab import service as ab
from app.datasets import derive
from app.datasets import repository as datasets_repo
from app.models import Dataset, RunStatus, utcnow
from app.notifications import service as notify
from app.sweeps import repository as sweeps_repo
from app.sweeps import service as sweeps
from app.workers import repository as workers_repo
from worker.tasks import augment, evaluation

log = logging.getLogger(__name__)


def _requeue_stale(s, settings: Settings, now) -> int:  # noqa: ANN001
    count = 0
    for run in repo.stale_running(s, heartbeat_before=now - timedelta(seconds=settings.heartbeat_timeout_s)):
        worker = run.worker_id or "running it"
        silent = int((now - run.heartbeat_at).total_seconds())
        if take_back_lost(s, run, lost=f"The worker {worker} stopped answering ({silent} s without a heartbeat)",
                          data={"worker": worker, "silent_s": silent}, now=now):
            count += 1
    return count


def take_back_lost(s, run, *, lost: str, data: dict, now) -> bool:  # noqa: ANN001
    """A run in progress whose worker (or one process of its job) was lost: queued again to resume
    from its latest checkpoint, or failed once its attempts are used up. False when another
    reconciler (or the run's own end) changed the run first."""
    # Read what the event tells before the take-back: it clears worker_id on the row, and the
    # row is reloaded after it.
    run_id, attempt, max_attempts = run.id, run.attempt, run.max_attempts
    if attempt < max_attempts:
        values = dict(status=RunStatus.queued, worker_id=None, lease_token=None, enqueued_at=now)
    else:
        values = dict(status=RunStatus.failed, lease_token=None, finished_at=now, error_kind="worker_lost",
                      error_message=f"{lost}. That was attempt {attempt} of {max_attempts}: the run is "
                      "given up. Check the workers' logs (out of host memory?) and retry it.")
    if not repo.take_back(s, run_id=run_id, lease_token=run.lease_token, values=values):
        return False
    s.expire(run)
    if values["status"] == RunStatus.queued:
        step = repo.latest_checkpoint_step(s, run_id)
        if _lost_before_at(s, run_id, step):
            # Twice lost at the same checkpoint: most likely the kernel killed the worker for
            # its memory. The run comes back with half the micro-batch (same effective batch).
            service.retry_after_oom(s, run, step=None, resume_step=step, cause=KILLED_FOR_MEMORY)
        resume = (f"resumes from step {step}" if step is not None
                  else "starts from the beginning (it had no checkpoint yet)")
        service.add_event(s, run, "status", f"{lost}; the run is queued again and {resume} "
                          f"(attempt {attempt + 1} of {max_attempts}).", level="warning",
                          data={"status": "queued", "reason": "worker_lost", "resume_step": step, **data})
        queue.enqueue(s, service.TRAIN_TASK, run_id, queue=run.queue)
    else:
        service.add_event(s, run, "status", values["error_message"], level="error",
                          data={"status": "failed", "kind": "worker_lost", **data})
    log.warning("run %s: %s", run_id, lost)
    return True


def give_back_lost(run_id: int, lease: str, lost: str) -> bool:
    """The worker itself saw its run lost (a process of a job on several devices died): the run
    goes back at once, as the reconciler would take it once its heartbeat went stale."""
    with session_scope() as s:
        run = repo.by_id(s, run_id, for_update=True)
        if run is None or run.lease_token != lease or run.status != RunStatus.running:
            return False
        return take_back_lost(s, run, lost=lost, data={"worker": run.worker_id}, now=utcnow())


KILLED_FOR_MEMORY = ("The worker was lost twice before the run passed a new checkpoint, as when the system "
                     "kills a process that runs out of memory;")


def _lost_before_at(s, run_id: int, step: int | None) -> bool:  # noqa: ANN001
    """Whether the run was already lost once while its latest checkpoint was this one."""
    return any(e.data.get("reason") == "worker_lost" and e.data.get("resume_step") == step
               for e in repo.events_of_kinds(s, run_id, ["status"]) if e.data)


def _idle_train_workers(s, now) -> list[str]:  # noqa: ANN001
    """Training workers with a device free (a worker drives `device_count` of them)."""
    held: dict[str, list] = {}
    for row in repo.devices_held(s):
        held.setdefault(row.worker_id, []).append((row.device_ids, row.config))
    return [w.name for w in workers_repo.alive(s) if "train" in w.queues.split(",")
            and queue_position.free_devices(w.device_count or 1, held.get(w.name, []))]


def _explain_waiting(s) -> int:  # noqa: ANN001
    """A queued run that asks for more devices than any live worker of its queue has would wait
    in silence: it gets an event that says why (once, and again if the largest worker changes)."""
    alive = workers_repo.alive(s)
    count = 0
    for run in repo.waiting_since(s, enqueued_before=utcnow()):
        needed = queue_position.devices_of(run.config)
        counts = [w.device_count or 1 for w in alive if run.queue in w.queues.split(",")]
        if needed == 1 or not counts or needed <= max(counts):
            continue
        data = {"reason": "too_few_devices", "devices": needed, "largest": max(counts)}
        said = repo.events_of_kinds(s, run.id, ["waiting"])
        if said and said[-1].data == data:
            continue
        service.add_event(s, run, "waiting", f"Waiting: this run asks for {needed} devices and the largest training "
                          f"worker online has {max(counts)}. It starts when a worker with {needed} devices is online "
                          "(STUDIO_WORKER_DEVICES, docs/operations.md).", level="warning", data=data)
        count += 1
    return count


def _resend_lost(s, settings: Settings, now) -> int:  # noqa: ANN001
    if not _idle_train_workers(s, now):
        return 0
    waiting = repo.waiting_since(s, enqueued_before=now - timedelta(seconds=settings.requeue_after_s))
    for run in waiting:
        run.enqueued_at = now
        queue.enqueue(s, service.TRAIN_TASK, run.id, queue=run.queue)
    return len(waiting)


def _resend_validations(s, settings: Settings, now) -> int:  # noqa: ANN001
    stuck = datasets_repo.uploaded_before(s, now - timedelta(seconds=settings.requeue_after_s))
    for dataset in stuck:
        queue.enqueue(s, "studio.validate_dataset", dataset.id, queue="default")
    return len(stuck)


SCAN_STALE_S = 3 * 3600  # a scan running longer than this lost its worker (1 GB takes minutes)


def _resend_scans(s, settings: Settings, now) -> int:  # noqa: ANN001
    seen: set[int] = set()
    resent = 0
    for run in repo.waiting_for_files(s):
        for dataset_id in (run.dataset_id, run.eval_dataset_id):
            if dataset_id is None or dataset_id in seen:
                continue
            seen.add(dataset_id)
            dataset = s.get(Dataset, dataset_id)
            if dataset is None or not derive.split_pending(dataset):
                continue
            cleaning = dataset.cleaning
            running = cleaning["status"] == "running"
            since = cleaning.get("started_at" if running else "queued_at")
            limit = SCAN_STALE_S if running else settings.requeue_after_s
            if since is None or datetime.fromisoformat(since) < now - timedelta(seconds=limit):
                dataset.cleaning = {**cleaning, "status": "queued", "queued_at": now.isoformat()}
                queue.enqueue(s, derive.SCAN_TASK, dataset.id, queue="default")
                resent += 1
    return resent


def _resend_comparisons(s, settings: Settings, now) -> int:  # noqa: ANN001
    if not _idle_train_workers(s, now):
        return 0
    stuck = ab_repo.pending_since(s, status=ab.PENDING,
                                  created_before=now - timedelta(seconds=settings.requeue_after_s))
    for comparison in stuck:
        queue.enqueue(s, ab.GENERATE_TASK, comparison.id, queue=ab.GENERATE_QUEUE)
    return len(stuck)


def _advance_sweeps(settings: Settings) -> int:
    """Every running sweep advanced, each in its own transaction: one broken sweep must not
    stop the others."""
    factory = session_factory(settings)
    with session_scope(factory=factory) as s:
        ids = sweeps_repo.running_ids(s)
    for sweep_id in ids:
        try:
            with session_scope(factory=factory) as s:
                sweeps.advance(s, sweep_id, settings=settings)
        except Exception:  # noqa: BLE001
            log.exception("could not advance sweep %s", sweep_id)
    return len(ids)


def reconcile(settings: Settings | None = None, *, judge_leases: bool = True) -> dict[str, int]:
    """One pass. `judge_leases=False` leaves the work in progress (runs, evaluations) alone: see _loop."""
    settings = settings or get_settings()
    now = utcnow()
    requeued = 0
    if judge_leases:
        with session_scope(settings) as s:
            requeued = _requeue_stale(s, settings, now)
    with session_scope(settings) as s:
        resent = _resend_lost(s, settings, now)
        validations = _resend_validations(s, settings, now)
        checked = service.files_checked(s, settings=settings)  # a run created as its check ended
        scans = _resend_scans(s, settings, now)
        comparisons = _resend_comparisons(s, settings, now)
        waiting = _explain_waiting(s)
        augmentations = augment.requeue_lost(s, settings, now) if judge_leases else 0
        notifications = notify.redeliver_due(s, grace_s=settings.requeue_after_s)
    interrupted = evaluation.fail_interrupted() if judge_leases else 0  # judged by heartbeats too
    advanced = _advance_sweeps(settings)
    if requeued or resent or validations or comparisons or scans:
        log.warning("reconciler: %d lost runs requeued, %d tickets re-sent, %d validations re-sent, "
                    "%d comparisons re-sent, %d scans re-sent", requeued, resent, validations, comparisons, scans)
    return {"requeued": requeued, "resent": resent, "validations": validations, "checked": checked,
            "comparisons": comparisons, "evaluations": interrupted, "sweeps": advanced, "waiting": waiting,
            "augmentations": augmentations, "scans": scans, "notifications": notifications}


_stop = threading.Event()


def _loop() -> None:
    """A pass every reconcile_every_s. After the database was unreachable (restarted, failing
    over) no lease is judged until it has answered for a whole heartbeat_timeout_s: the lease
    threads could not write their heartbeats meanwhile, and a run must not be given away for the
    outage itself. An outage short enough to fall between two passes needs no such care: it
    silences a lease for less than reconcile_every_s plus a beat, well under the timeout."""
    settings = get_settings()
    down_since: float | None = None
    judge_from = 0.0
    while not _stop.wait(settings.reconcile_every_s):
        started = time.monotonic()
        try:
            reconcile(settings, judge_leases=down_since is None and started >= judge_from)
        except Exception as exc:  # keep reconciling: a database hiccup must not end the loop
            if not unreachable(exc):
                log.exception("reconciler pass failed")
            elif down_since is None:
                down_since = started
                log.warning("reconciler: the database does not answer (%s); retrying every %.0f s",
                            type(exc).__name__, settings.reconcile_every_s)
            continue
        if down_since is not None:
            judge_from = started + settings.heartbeat_timeout_s
            log.warning("reconciler: the database answers again after %.0f s; runs in progress are judged "
                        "again in %.0f s, once their workers could renew their leases",
                        started - down_since, settings.heartbeat_timeout_s)
            down_since = None


def start() -> None:
    _stop.clear()
    threading.Thread(target=_loop, daemon=True, name="reconciler").start()


def stop() -> None:
    _stop.set()
