"""The engine's reporter, implemented against the database for one claimed run.

- metrics are buffered and written in batches (one transaction every couple of seconds, never
  one commit per step);
- a thread renews the run's lease (its heartbeat) every few seconds; if the lease was taken
  away (the reconciler gave the run to another worker), the run stops at its next step so that
  two runs of one run never overlap;
- should_stop() reads the cancel flag at most once a second;
- every log line goes to the run's log file (an artifact whose tail the run page shows).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.db import session_scope
from app.runs import repository as repo
from app.runs import service
from app.models import Checkpoint, utcnow

FLUSH_EVERY_S = 2.0
MAX_BUFFER = 500
POLL_EVERY_S = 1.0
HEARTBEAT_EVERY_S = 5.0


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
        self._progress: tuple[int, int, float | None] | None = None
        self._last_flush = self._last_poll = time.monotonic()
        self._stop_requested = False
        self.lease_lost = False
        self.cancelled = False
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"lease-{run_id}")
        self._beat.start()

    # -- the Reporter protocol -----------------------------------------------------------------
    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        with self._lock:
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and value == value:  # skip NaN
                    self._buffer.append({"run_id": self.run_id, "attempt": self.attempt, "step": step,
                                         "name": name, "value": float(value)})
        if len(self._buffer) >= MAX_BUFFER or time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def on_progress(self, step: int, total: int, eta_s: float | None) -> None:
        self._progress = (step, total, eta_s)

    def on_checkpoint(self, step: int, path: str, metadata: dict[str, Any]) -> None:
        self.flush()
        key = Path(path).resolve().relative_to(self.store_root).as_posix()
        size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
        with session_scope() as s:
            if repo.checkpoint(s, self.run_id, step) is None:
                s.add(Checkpoint(run_id=self.run_id, step=step, path=key, size_bytes=size, metrics=metadata))
                service.add_event(s, repo.by_id(s, self.run_id), "checkpoint", f"Checkpoint saved at step {step}.",
                                  data={"step": step})
        self.on_log(f"checkpoint at step {step}")

    def on_checkpoints_deleted(self, steps: list[int]) -> None:
        """The run page and the APIs list the checkpoints that are on disk: deleted ones go."""
        with session_scope() as s:
            repo.delete_checkpoints(s, self.run_id, steps)
        self.on_log(f"Deleted older checkpoints (steps {', '.join(map(str, steps))}); the newest are kept.")

    def should_stop(self) -> bool:
        if self._stop_requested or self.lease_lost:
            return True
        if time.monotonic() - self._last_poll >= POLL_EVERY_S:
            self._last_poll = time.monotonic()
            with session_scope() as s:
                row = repo.stop_signals(s, self.run_id)
            if row.lease_token != self.lease:
                self.lease_lost = True
            elif row.cancel_requested:
                self.cancelled = True
            self._stop_requested = self.lease_lost or self.cancelled
        return self._stop_requested

    def on_log(self, line: str) -> None:
        self._log.write(f"{utcnow():%H:%M:%S} {line}\n")

    # -- batching, lease, closing ----------------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            rows, self._buffer = self._buffer, []
            progress = self._progress
        self._last_flush = time.monotonic()
        if not rows and progress is None:
            return
        with session_scope() as s:
            if rows:
                repo.add_metrics(s, rows)
            if progress is not None:
                run = repo.by_id(s, self.run_id)
                run.current_step, run.total_steps, run.eta_s = progress

    def _heartbeat(self) -> None:
        # Several beats fit in the timeout, so that one slow write never looks like a lost worker.
        every = min(HEARTBEAT_EVERY_S, get_settings().heartbeat_timeout_s / 4)
        while not self._closing.wait(every):
            try:
                with session_scope() as s:
                    if not repo.renew_lease(s, run_id=self.run_id, lease_token=self.lease, now=utcnow()):
                        self.lease_lost = True
                        return
            except Exception:  # a database hiccup: the next beat retries; the lease is generous
                continue

    def close(self) -> None:
        self._closing.set()
        self._beat.join(timeout=HEARTBEAT_EVERY_S + 1)
        try:
            self.flush()
        finally:
            self._log.close()
