"""Training runs on the "train" queue: claim fairly, run the engine, record the outcome.

A broker message is only a ticket ("a run is ready"): the worker claims the best queued run in
fair order with a compare-and-set, so re-delivered or duplicated messages never run a run twice,
and one team's fifty runs do not starve another team's one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from pathlib import Path
from typing import NamedTuple


from app.config import get_settings
from app.datasets import repository as datasets_repo
from app.db import session_scope
from app.runs import queue_position
from app.runs import repository as repo
from app.runs import retention, service
from app.models import Artifact, Run, RunStatus, utcnow
from app.storage import Store, open_store
from app.sweeps import repository as sweeps_repo
from app.sweeps import service as sweeps
from planner import oom
from worker.tasks import evaluation
from worker.training.memory import is_out_of_memory, release
from worker.celery_app import TRAIN_QUEUE, celery_app
from worker.runtime import reconciler, sync
from worker.runtime.reporter import DatabaseReporter

log = logging.getLogger(__name__)


def fits_device(run: Run, memory_gb: float | None) -> bool:
    """Routing by device class: a worker takes only runs whose estimated peak memory fits its
    own device, so a 24 GB worker leaves a 70 GB run to an 80 GB one."""
    needed = ((run.estimate or {}).get("memory") or {}).get("total_gb")
    return memory_gb is None or needed is None or needed <= memory_gb * 0.95


class Claim(NamedTuple):
    run_id: int
    lease: str
    device_ids: list[int]  # the worker's devices the run holds (the lowest free ones)


_claiming = threading.Lock()  # the threads of one multi-device worker pick devices one at a time


def claim_next(worker: str, queue: str = TRAIN_QUEUE, memory_gb: float | None = None,
               device_count: int = 1) -> Claim | None:
    """Claims the fairest queued run of the queue that fits this worker: its estimated peak
    memory fits one device (`fits_device`, per device) and it asks for no more devices than the
    worker has free (its `device_count` minus those its running runs hold). The whole queue is
    read in fair order, a page at a time, so runs that do not fit here never hide one that does.

    The first run that fits this worker but not its free devices holds the worker for itself: a
    run behind it starts on the free devices only if its estimate says it ends before the held
    devices free up (app/runs/queue_position.py, `backfills`), so small runs never starve a large one."""
    with _claiming, session_scope() as s:
        now = utcnow()
        mine = [row for row in repo.devices_held(s) if row.worker_id == worker]
        free = queue_position.free_devices(device_count, [(row.device_ids, row.config) for row in mine])
        if not free:
            return None
        held_in: float | None = None
        holding = False
        for run in repo.iter_fair_order(s, queue):
            needed = queue_position.devices_of(run.config)
            if needed > device_count or not fits_device(run, memory_gb):
                continue  # never on this worker
            if needed > len(free):
                if not holding:  # the first such run: the devices free up for it
                    holding = True
                    held_in = queue_position.devices_free_in(needed, device_count, [
                        (len(row.device_ids or ()) or queue_position.devices_of(row.config),
                         service.remaining_s(row, now)) for row in mine])
                continue
            if holding and not queue_position.backfills(queue_position.duration_of(run.estimate), held_in):
                continue
            token, ids = uuid.uuid4().hex, free[:needed]
            if repo.claim(s, run_id=run.id, worker=worker, lease_token=token, now=now, device_ids=ids):
                s.expire(run)
                on = f"device {ids[0]}" if len(ids) == 1 else f"devices {', '.join(map(str, ids))}"
                service.add_event(s, run, "status", f"Running on {worker}, {on} (attempt {run.attempt} of "
                                  f"{run.max_attempts}).", data={"status": "running", "worker": worker,
                                                                 "device_ids": ids})
                return Claim(run.id, token, ids)
    return None


def _records(store: Store, key: str | None) -> list[dict]:
    if not key:
        return []
    with store.open(key) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def classify_failure(exc: BaseException, step: int) -> tuple[str, str]:
    """A failure in plain words, with what to change."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, GaveUp):
        return oom.KIND, str(exc)
    if is_out_of_memory(exc):
        return oom.KIND, f"The run ran out of memory {oom.where(step)}. {oom.GENERIC_ADVICE}"
    if type(exc).__name__ == "DataError":
        return "dataset", f"The dataset cannot be trained on: {exc}"
    return "error", f"The run failed at step {step}: {text[:500]}. The log shows what happened before."


def _dir_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with open(file, "rb") as fh:
            file_digest = hashlib.file_digest(fh, "sha256")  # streamed: outputs can be many GB
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file_digest.digest())
        size += file.stat().st_size
    return digest.hexdigest(), size


def _record_outputs(s, run: Run, workspace: sync.Workspace, result) -> None:  # noqa: ANN001
    for kind, directory in (("adapter", result.adapter_dir), ("merged", result.merged_dir),
                            ("model", result.model_dir)):
        if directory:
            path = Path(directory)
            digest, size = _dir_digest(path)
            s.add(Artifact(team_id=run.team_id, run_id=run.id, kind=kind, sha256=digest, size_bytes=size,
                           path=workspace.key_of(path),
                           content_type="application/zip"))
            card = path / "README.md"
            if kind != "merged" and card.is_file():
                s.add(Artifact(team_id=run.team_id, run_id=run.id, kind="model_card", size_bytes=card.stat().st_size,
                               path=workspace.key_of(card),
                               sha256=hashlib.sha256(card.read_bytes()).hexdigest(), content_type="text/markdown"))


def _finish(run_id: int, lease: str, workspace: sync.Workspace, result=None, failure=None, reporter=None) -> None:  # noqa: ANN001
    with session_scope() as s:
        run = repo.by_id(s, run_id, for_update=True)
        if run is None or run.lease_token != lease or run.status != RunStatus.running:
            return  # the reconciler gave the run away; that run owns the outcome now
        run.finished_at = utcnow()
        run.lease_token = None
        if failure is not None:
            run.status, (run.error_kind, run.error_message) = RunStatus.failed, failure
            service.add_event(s, run, "status", run.error_message, level="error",
                              data={"status": "failed", "kind": run.error_kind})
        elif result.status == "stopped":
            run.status = RunStatus.cancelled
            run.result = result.as_dict()
            kept = f"; its last checkpoint (step {result.last_checkpoint.rsplit('-', 1)[-1]}) is kept" \
                if result.last_checkpoint else ""
            service.add_event(s, run, "status", f"Cancelled at step {result.global_step}{kept}.",
                              data={"status": "cancelled"})
        else:
            run.status = RunStatus.succeeded
            run.result = result.as_dict()
            run.current_step = result.global_step
            _record_outputs(s, run, workspace, result)
            loss = result.metrics.get("eval_loss", result.metrics.get("train_loss"))
            service.add_event(s, run, "status", f"Succeeded after {result.global_step} steps"
                              + (f" (loss {loss:.3f})." if loss is not None else "."), data={"status": "succeeded"})
            for warning in result.warnings:
                service.add_event(s, run, "warning", warning, level="warning")
    _advance_sweep(run_id)  # its sweep queues the next waiting run or picks the best


def _advance_sweep(run_id: int) -> None:
    """The hook once a run's outcome is committed: advances its sweep, if it has one, in a
    transaction of its own. A failure is logged; the reconciler's next pass repairs it."""
    try:
        with session_scope() as s:
            sweep_id = sweeps_repo.sweep_of_run(s, run_id)
            if sweep_id is not None:
                sweeps.advance(s, sweep_id)
    except Exception:  # noqa: BLE001  (the run's outcome is already recorded)
        log.exception("could not advance the sweep of run %s; the reconciler will", run_id)


def _setup(run_id: int, workspace: sync.Workspace):  # noqa: ANN202
    with session_scope() as s:
        run = repo.by_id(s, run_id)
        dataset = datasets_repo.get(s, team_id=run.team_id, dataset_id=run.dataset_id, purpose=None)
        # The store's layout keeps its first name ("jobs"): runs started before the rename resume.
        run_key = f"teams/{run.team_id}/jobs/{run.id}/run"
        log_key = f"{run_key}/training.log"
        if not any(a.kind == "log" for a in repo.artifacts(s, team_id=run.team_id, run_id=run.id)):
            s.add(Artifact(team_id=run.team_id, run_id=run.id, kind="log", path=log_key, content_type="text/plain"))
        resume = bool(repo.checkpoints(s, run.id))
        eval_key = dataset.normalized_eval_path
        if run.eval_dataset_id and run.eval_dataset_id != dataset.eval_dataset_id:  # OpenAI validation_file
            eval_key = datasets_repo.get(s, team_id=run.team_id, dataset_id=run.eval_dataset_id,
                                         purpose=None).normalized_path
        return (dict(run.config), run.attempt, dataset.normalized_path, eval_key,
                workspace.path(run_key), workspace.path(log_key), resume)


class GaveUp(Exception):
    """Out of memory with nothing left to halve or no retry left; the message carries the advice."""


def _oom_advice(config, attempt_step: int | None, retries: int) -> str:  # noqa: ANN001
    from planner.presets import read_model_info
    from worker.runtime.heartbeat import device_info

    try:
        model = read_model_info(config.base_model)
    except (OSError, ValueError, KeyError):
        model = None
    device = device_info()
    advice = oom.advice(config, model, device=device["device"],
                        memory_gb=device["device_memory_bytes"] / 1e9 if device["device_memory_bytes"] else None)
    return oom.failure_message(config, step=attempt_step, retries_done=retries, advice_text=advice)


def _after_oom(run_id: int, lease: str, config, step: int, output_dir: Path, reporter):  # noqa: ANN001, ANN202
    """The configuration to retry with (stored on the row, with its event), or GaveUp."""
    from worker.training.checkpoints import latest_complete, step_of
    from worker.training.run import CHECKPOINTS

    latest = latest_complete(output_dir / CHECKPOINTS)
    resume_step = step_of(Path(latest)) if latest else None
    with session_scope() as s:
        run = repo.by_id(s, run_id, for_update=True)
        if run is None or run.lease_token != lease or run.status != RunStatus.running:
            raise GaveUp("The run's lease was given away while it was out of memory.")
        retry = service.retry_after_oom(s, run, step=step, resume_step=resume_step)
        if retry is None:
            raise GaveUp(_oom_advice(config, step, service.oom_retries(s, run_id)))
        reporter.on_log(f"Retry {retry.number} of {oom.MAX_RETRIES} after running "
                        f"out of memory: per_device_batch_size {retry.config.per_device_batch_size}, "
                        f"grad_accum {retry.config.grad_accum}.")
        return retry.config


_run_threads: set[int] = set()  # the threads training a run in this process now


class _OwnThread(logging.Filter):
    """A run's log keeps its own thread's records and those of threads that train no run (the
    engine's helpers): on a worker that trains several runs at once, each log stays its run's."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        _run_threads.add(self.thread)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread or record.thread not in _run_threads


def run_training(run_id: int, lease: str, device_ids: list[int] | None = None) -> None:
    """Trains a claimed run: in this process on one device, under torchrun on config.devices
    (worker/training/launcher.py; `device_ids`: the devices the claim gave it)."""
    settings = get_settings()
    store = open_store(settings)
    workspace = sync.Workspace(store, settings)  # the store's directory, or a scratch copy of a bucket's files
    config, attempt, train_key, eval_key, output_dir, log_path, resume = _setup(run_id, workspace)
    # The lease heartbeat starts first: nothing slow may run between the claim and it.
    reporter = sync.wrap(DatabaseReporter(run_id=run_id, attempt=attempt, lease_token=lease, log_path=log_path,
                                          store_root=workspace.root), workspace, log_path)
    from planner.config import TrainingConfig
    from worker.training import launcher
    from worker.training.run import run as run_engine
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_OwnThread())
    logging.getLogger().addHandler(handler)
    try:
        train_records, eval_records = _records(store, train_key), _records(store, eval_key)
        config = TrainingConfig.model_validate(config)
        if resume and not workspace.shared:  # only a checkpoint whose manifest vouches for it
            from worker.training.run import CHECKPOINTS
            sync.restore_checkpoint(store, workspace.key_of(output_dir / CHECKPOINTS), output_dir / CHECKPOINTS,
                                    reporter.on_log)
        while True:  # one pass, plus one per out-of-memory retry (planner/oom.py bounds them)
            try:
                if config.devices > 1:
                    result = launcher.launch(config, train_records, eval_records, output_dir, reporter,
                                             resume=resume, device_ids=device_ids, timeout_s=settings.dist_timeout_s,
                                             export_merged=False, liger_kernels=settings.liger_kernels)
                else:
                    result = run_engine(config, train_records, eval_records, output_dir, reporter,
                                        resume_from=True if resume else None, export_merged=False,
                                        liger_kernels=settings.liger_kernels)
                break
            except Exception as exc:  # noqa: BLE001
                if not is_out_of_memory(exc):
                    raise
                step = reporter.step + 1
                log.warning("run %s ran out of memory at step %s: %s", run_id, step, exc)
                reporter.on_log(f"Out of memory at step {step}: {type(exc).__name__}: {str(exc)[:300]}")
            release()  # here, once the failed attempt's traceback (and its trainer) is gone
            config, resume = _after_oom(run_id, lease, config, step, output_dir, reporter), True
    except launcher.JobLost as exc:  # a rank was killed: the run is lost like a killed worker's
        reporter.on_log(f"LOST: {exc}")
        reporter.close()
        reconciler.give_back_lost(run_id, lease, f"The job on {config.devices} devices lost one of its processes: {exc}")
        return
    except Exception as exc:
        if not isinstance(exc, GaveUp):
            log.exception("run %s failed", run_id)
        reporter.on_log(f"FAILED: {exc}" if isinstance(exc, GaveUp) else f"FAILED: {type(exc).__name__}: {exc}")
        reporter.close()
        sync.upload_log(workspace, log_path)  # the failure's story; a bucket that does not answer loses only it
        _finish(run_id, lease, workspace, failure=classify_failure(exc, reporter.step + 1))
        retention.after_run(store, run_id)
        workspace.discard(output_dir)
        return
    finally:
        logging.getLogger().removeHandler(handler)
        _run_threads.discard(threading.get_ident())
        handler.close()
    reporter.close()
    if result.status == "stopped" and reporter.lease_lost:
        return
    sync.upload_outputs(workspace, output_dir, result)  # before the outcome: its rows name these files
    _finish(run_id, lease, workspace, result=result)
    retention.after_run(store, run_id)
    if result.status == "completed":  # the run shows as succeeded while its evaluation runs
        if result.model is None:  # trained by several processes: read back from its outputs
            result.model = evaluation.trained_model(config, result)
        evaluation.evaluate_after_run(run_id, result, train_records, eval_records)
    workspace.discard(output_dir)


@celery_app.task(name="studio.train", bind=True, acks_late=True, reject_on_worker_lost=True)
def train(self, run_id: int) -> None:  # noqa: ANN001
    """`run_id` is the ticket's run; the worker runs whichever queued run is fairest next."""
    from worker.runtime.heartbeat import device_info

    info = device_info()
    queue = self.request.delivery_info.get("routing_key") or TRAIN_QUEUE
    # A one-device worker is idle when a ticket arrives; one that drives several may be evaluating
    # another run in a sibling thread: it repairs only what gone or restarted workers left.
    _repair_evaluations(self.request.hostname if info.get("device_count", 1) == 1 else None)
    claimed = claim_next(self.request.hostname or "worker", queue, info["device_memory_bytes"] / 1024**3,
                         device_count=info.get("device_count", 1))
    if claimed is None:
        log.info("ticket for run %s: nothing to claim here (already running, finished or cancelled, or "
                 "waiting for a device this worker does not have free)", run_id)
        return
    try:
        run_training(claimed.run_id, claimed.lease, device_ids=claimed.device_ids)
    finally:
        _ticket_for_the_next(queue)


def _ticket_for_the_next(queue: str) -> None:
    """The run's devices are free again: a ticket for the queue, so that a run whose own ticket
    found no worker with enough free devices (or memory) starts now rather than when the
    reconciler re-sends it. An extra ticket is harmless: the claim is a compare-and-set."""
    try:
        with session_scope() as s:
            first = repo.queued_in_fair_order(s, queue, limit=1)
            if first:
                service.enqueue_ticket(s, first[0])
    except Exception:  # noqa: BLE001  (the reconciler re-sends lost tickets anyway)
        log.exception("could not send a ticket for the next queued run")


def _repair_evaluations(worker: str | None) -> None:
    """This worker is idle: evaluations it (or a lost worker) left unfinished are marked failed."""
    try:
        evaluation.fail_interrupted(worker)
    except Exception:  # a repair must never keep a run from starting
        log.exception("could not repair interrupted evaluations")


@celery_app.task(name="studio.evaluate", bind=True, acks_late=True, reject_on_worker_lost=True)
def evaluate(self, evaluation_id: int) -> None:  # noqa: ANN001
    """A queued (re-run) evaluation of a finished run, on the run's training queue."""
    from worker.runtime.heartbeat import device_info

    _repair_evaluations(self.request.hostname if device_info().get("device_count", 1) == 1 else None)
    evaluation.evaluate_again(evaluation_id)
