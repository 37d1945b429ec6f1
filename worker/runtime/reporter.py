"""The engine's reporter, implemented against the database for one claimed run.

- metrics are buffered and written in batches (one transaction every couple of seconds, never
  one commit per step); while the database does not answer (restarted, failing over) training
  goes on and what it reports is kept, then written once, neither lost nor doubled;
- a thread renews the run's lease (its heartbeat) every few seconds; if the lease was taken
  away (the reconciler gave the run to another worker), the run stops at its next step so that
  two workers never train one run at once;
- should_stop() reads the cancel flag at most once a second;
- every log line goes to the run's log file (an artifact whose tail the run page shows).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope, unreachable
from app.runs import repository as repo
from app.runs import service
from app.models import Checkpoint, utcnow

FLUSH_EVERY_S = 2.0
MAX_BUFFER = 500
POLL_EVERY_S = 1.0
HEARTBEAT_EVERY_S = 5.0
RETRY_EVERY_S = 1.0  # how often the lease thread knocks while the database does not answer
CLOSE_WAIT_S = 300.0  # how long the end of a run waits for the database to come back

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another worker owns this run now."""


class DatabaseReporter:
    def __init__(self, *, run_id: int, attempt: int, lease_token: str, log_path: Path, store_root: Path):
        self.run_id, self.attempt, self.lease = run_id, attempt, lease_token
        self.store_root = store_root
        self.log_path = log_path
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "a", encoding="utf-8", buffering=1)
        self._buffer: list[dict[str, Any]] = []
        self._retry: list[dict[str, Any]] = []  # a batch whose commit failed: written again, never twice
        self._pending: list[Callable[[Session], None]] = []  # checkpoint rows waiting for the database
        self._events: list[Callable[[Session], None]] = []  # metrics events waiting for the database
        self._progress: tuple[int, int, float | None] | None = None
        self._step_metrics: tuple[int, dict[str, float]] | None = None  # the step whose metrics event is pending
        self._last_flush = self._last_poll = time.monotonic()
        self._stop_requested = False
        self.lease_lost = False
        self.cancelled = False
        self.db_down = False  # set by any failed write, cleared by the lease thread's next good beat
        self._outage_seen = False  # told in the run's log; its end is told at the next good flush
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"lease-{run_id}")
        self._beat.start()

    # -- the Reporter protocol -----------------------------------------------------------------
    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._metrics_event(step, metrics)
        with self._lock:
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and value == value:  # skip NaN
                    self._buffer.append({"run_id": self.run_id, "attempt": self.attempt, "step": step,
                                         "name": name, "value": float(value)})
        if len(self._buffer) >= MAX_BUFFER or time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def on_progress(self, step: int, total: int, eta_s: float | None) -> None:
        self._progress = (step, total, eta_s)

    def _metrics_event(self, step: int | None, metrics: dict[str, float]) -> None:
        """One metrics event per logged step ("Step 10/50: training loss=..., validation loss=..."),
        written once the step's evaluation (logged after its training loss) had its chance to join."""
        if self._step_metrics is not None and self._step_metrics[0] != step:
            done, values = self._step_metrics
            total = self._progress[1] if self._progress else None
            self._events.append(lambda s: service.add_metrics_event(s, repo.by_id(s, self.run_id), done, total, values))
            self._step_metrics = None
        if step is not None and ("loss" in metrics or "eval_loss" in metrics):
            held = self._step_metrics[1] if self._step_metrics else {}
            self._step_metrics = (step, {**held, **metrics})

    @property
    def step(self) -> int:
        """The last step the engine reported (0 before the first)."""
        return self._progress[0] if self._progress else 0

    def on_checkpoint(self, step: int, path: str, metadata: dict[str, Any]) -> None:
        key = Path(path).resolve().relative_to(self.store_root).as_posix()
        size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())

        def record(s: Session) -> None:
            if repo.checkpoint(s, self.run_id, step) is None:
                s.add(Checkpoint(run_id=self.run_id, step=step, path=key, size_bytes=size, metrics=metadata))
                service.add_event(s, repo.by_id(s, self.run_id), "checkpoint", f"Checkpoint saved at step {step}.",
                                  data={"step": step})

        self._pending.append(record)
        self.flush()
        self.on_log(f"checkpoint at step {step}")

    def on_checkpoints_deleted(self, steps: list[int]) -> None:
        """The run page and the APIs list the checkpoints that are on disk: deleted ones go."""
        self._pending.append(lambda s: repo.delete_checkpoints(s, self.run_id, steps))
        self.flush()
        self.on_log(f"Deleted older checkpoints (steps {', '.join(map(str, steps))}); the newest are kept.")

    def should_stop(self) -> bool:
        if self._stop_requested or self.lease_lost:
            return True
        if not self.db_down and time.monotonic() - self._last_poll >= POLL_EVERY_S:
            self._last_poll = time.monotonic()
            try:
                with session_scope() as s:
                    row = repo.stop_signals(s, self.run_id)
            except Exception as exc:
                self._unreachable(exc)  # asked again once the database answers
                return False
            if row.lease_token != self.lease:
                self.lease_lost = True
            elif row.cancel_requested:
                self.cancelled = True
            self._stop_requested = self.lease_lost or self.cancelled
        return self._stop_requested

    def on_log(self, line: str) -> None:
        self._log.write(f"{utcnow():%H:%M:%S} {line}\n")

    # -- batching, lease, closing ----------------------------------------------------------------
    def flush(self) -> bool:
        """Writes what is buffered in one transaction; False when the database did not answer.

        While it does not, training goes on without waiting for it: metrics and checkpoint rows
        are kept (and the lease thread knocks every second), then written at the first flush
        after it answers. A batch whose commit failed is written again with replace_metrics, so
        that a commit that landed although its answer was lost leaves no second row."""
        self._last_flush = time.monotonic()
        if self.db_down:
            return False
        with self._lock:
            rows, self._buffer = self._buffer, []
            progress = self._progress
        batch, retried = self._retry + rows, bool(self._retry)
        pending, events = list(self._pending), list(self._events)
        if not batch and progress is None and not pending and not events:
            return True
        try:
            with session_scope() as s:
                for write in pending + events:
                    write(s)
                if retried:
                    repo.replace_metrics(s, run_id=self.run_id, attempt=self.attempt, rows=batch)
                elif batch:
                    repo.add_metrics(s, batch)
                if progress is not None:
                    run = repo.by_id(s, self.run_id)
                    run.current_step, run.total_steps, run.eta_s = progress
        except Exception as exc:
            self._retry = batch
            self._unreachable(exc)
            return False
        self._retry, self._pending, self._events = [], self._pending[len(pending):], self._events[len(events):]
        if self._outage_seen:
            self._outage_seen = False
            self.on_log(f"The database answers again: what was kept meanwhile is saved ({len(batch)} metric "
                        f"values, {len(pending)} checkpoint changes).")
        return True

    def _unreachable(self, exc: Exception) -> None:
        """An outage is waited out; any other database error is a bug and ends the run."""
        if not unreachable(exc):
            raise exc
        if not self._outage_seen:
            self.db_down = self._outage_seen = True
            log.warning("run %s: the database does not answer (%s); training goes on and its progress is "
                        "saved when it answers again", self.run_id, type(exc).__name__)
            self.on_log("The database does not answer: training goes on; metrics and checkpoints are saved "
                        "when it answers again.")
        self.db_down = True

    def _heartbeat(self) -> None:
        # Several beats fit in the timeout, so that one slow write never looks like a lost worker.
        every = min(HEARTBEAT_EVERY_S, get_settings().heartbeat_timeout_s / 4)
        wait = every
        while not self._closing.wait(wait):
            try:
                with session_scope() as s:
                    if not repo.renew_lease(s, run_id=self.run_id, lease_token=self.lease, now=utcnow()):
                        self.lease_lost = True
                        return
            except Exception as exc:  # a database hiccup: knock again soon; the reconciler waits for us
                if not unreachable(exc):
                    log.exception("run %s: the lease could not be renewed", self.run_id)
                self.db_down, wait = True, min(every, RETRY_EVERY_S)
                continue
            self.db_down, wait = False, every

    def close(self) -> None:
        """Stops the lease thread and writes what is left, waiting up to CLOSE_WAIT_S for a
        database that does not answer (the run's outcome is written right after)."""
        self._closing.set()
        self._beat.join(timeout=HEARTBEAT_EVERY_S + 1)
        self._metrics_event(None, {})  # the last step's event
        deadline = time.monotonic() + CLOSE_WAIT_S
        try:
            while True:
                self.db_down = False
                if self.flush() or time.monotonic() > deadline:
                    break
                time.sleep(RETRY_EVERY_S)
            if self._retry or self._pending or self._events:
                raise RuntimeError(f"the database did not answer for {CLOSE_WAIT_S:.0f} s: the run's last "
                                   f"{len(self._retry)} metric values could not be saved")
        finally:
            self._log.close()
