"""Real studio processes for tests (workers, web, inference): start one with its log, wait for a
condition, and stop them as a supervisor would (SIGTERM to the main process, SIGKILL to the
group if it does not exit)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25, log: Path | None = None):  # noqa: ANN001, ANN201
    """The predicate's first truthy value; a clear failure (with the log's end) after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = f"\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def spawn(args: list[str], env: dict, log_path: Path, module: str = "app.cli") -> subprocess.Popen:
    """`python -m app.cli ARGS` (or another module) in its own process group, output to log_path."""
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_all(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()  # the main process stops its children, as under a supervisor
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Processes:
    """Several named processes sharing one environment and a log directory."""

    def __init__(self, env: dict, logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        proc = spawn(list(args), self.env, self.logs / f"{name}.log")
        self.procs.append(proc)
        return proc

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in self.logs.glob("*.log"))

    def stop(self) -> None:
        stop_all(self.procs)
