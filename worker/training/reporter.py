"""The engine's only window on the outside world.

worker/runtime/reporter.py implements Reporter against the database (metrics rows, checkpoint rows, run
events, the cancel flag); the CLI implements it by printing lines. The engine never imports
either.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Protocol, TextIO, runtime_checkable


@runtime_checkable
class Reporter(Protocol):
    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Training or evaluation metrics at an optimizer step (loss, learning_rate, ...)."""

    def on_checkpoint(self, step: int, path: str, metadata: dict[str, Any]) -> None:
        """A checkpoint that a run can resume from was written to `path`."""

    def on_checkpoints_deleted(self, steps: list[int]) -> None:
        """Older checkpoints at these steps were deleted (only `save_total_limit` are kept)."""

    def on_progress(self, step: int, total: int, eta_s: float | None) -> None:
        """`step` of `total` optimizer steps done; estimated seconds left (None until known)."""

    def should_stop(self) -> bool:
        """Polled once per optimizer step: True stops the run cooperatively."""

    def on_log(self, line: str) -> None:
        """A human-readable line for the run's log."""


class NullReporter:
    """Reports nothing and never stops: for scripts and tests that only want the result."""

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_checkpoint(self, step: int, path: str, metadata: dict[str, Any]) -> None:
        pass

    def on_checkpoints_deleted(self, steps: list[int]) -> None:
        pass

    def on_progress(self, step: int, total: int, eta_s: float | None) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def on_log(self, line: str) -> None:
        pass


class PrintReporter(NullReporter):
    """Prints one line per event (the `studio train` command's output)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
        self._print(f"step {step}: {shown}")

    def on_checkpoint(self, step: int, path: str, metadata: dict[str, Any]) -> None:
        self._print(f"checkpoint at step {step}: {path}")

    def on_checkpoints_deleted(self, steps: list[int]) -> None:
        self._print(f"deleted older checkpoints: steps {', '.join(map(str, steps))}")

    def on_progress(self, step: int, total: int, eta_s: float | None) -> None:
        eta = f", about {eta_s:.0f}s left" if eta_s is not None else ""
        self._print(f"progress {step}/{total}{eta}")

    def on_log(self, line: str) -> None:
        self._print(line)


class RecordingReporter(NullReporter):
    """Keeps every event in memory; can ask to stop after a given step (tests, benchmarks)."""

    def __init__(self, stop_after_step: int | None = None):
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: list[tuple[int, str, dict[str, Any]]] = []
        self.deleted_checkpoints: list[int] = []
        self.progress: list[tuple[int, int, float | None]] = []
        self.lines: list[str] = []
        self.stop_after_step = stop_after_step
        self.stop_polls = 0

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics.append((step, dict(metrics)))

    def on_checkpoint(self, step: int, path: str, metadata: dict[str, Any]) -> None:
        self.checkpoints.append((step, path, metadata))

    def on_checkpoints_deleted(self, steps: list[int]) -> None:
        self.deleted_checkpoints += steps

    def on_progress(self, step: int, total: int, eta_s: float | None) -> None:
        self.progress.append((step, total, eta_s))

    def should_stop(self) -> bool:
        self.stop_polls += 1
        done = self.progress[-1][0] if self.progress else 0
        return self.stop_after_step is not None and done >= self.stop_after_step

    def on_log(self, line: str) -> None:
        self.lines.append(line)

    def series(self, name: str) -> list[tuple[int, float]]:
        return [(step, m[name]) for step, m in self.metrics if name in m]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if not isinstance(value, (int, str)) else str(value)
