"""Keeps the processes of `studio up` running: a small supervisor, standard library only.

    from app.supervisor import Spec, Supervisor
    Supervisor([Spec("web", "the web server", [sys.executable, "-m", "app.cli", "serve"])],
               status_path=Path("data/supervisor.json")).run()   # until Ctrl-C or SIGTERM

- A child that exits, whatever the reason (a crash, the kernel's out-of-memory killer), is started
  again after a short backoff (1 s, doubling up to 30 s; back to 1 s once it ran for a while),
  and the console says so. The others go on serving: one exit never stops them.
- A child that exits `max_start_failures` times in a row within `start_window_s` of its start is
  crashing at start: it is left stopped, and the console says why with its last lines.
- Ctrl-C, SIGTERM or SIGHUP stops everything: each child gets SIGTERM, then SIGKILL after
  `grace_s`. A second Ctrl-C (or SIGTERM) kills at once. (A supervisor killed with SIGKILL leaves
  its children running; `studio doctor` says so.)
- Each child runs in its own process group, so that Ctrl-C reaches the supervisor alone and
  what a child leaves behind (a worker's pool processes) is killed with it. Its output goes to
  the console, each line prefixed with its name.

The status file (`status_path`, `supervisor.json` in the data dir for `studio up`) is JSON,
replaced atomically at every change, and read by `studio doctor`:

    {"pid": 4242, "state": "running" | "stopping" | "stopped", "started_at": ISO, "updated_at": ISO,
     "processes": [{"name": "train", "label": "the train worker", "state": "running",
                    "pid": 4250, "started_at": ISO, "restarts": 1, "last_exit": "killed by SIGKILL",
                    "last_exit_at": ISO, "reason": null}]}

A process's state is "running", "restarting" (waiting for its backoff), "failed" (left stopped;
`reason` says why) or "stopped" (the supervisor stopped it).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

STATUS_FILE = "supervisor.json"


@dataclass(frozen=True)
class Spec:
    name: str  # short, prefixes the child's lines: "web", "train"
    label: str  # for messages: "the train worker"
    argv: list[str]
    env: dict[str, str] | None = None  # set over the supervisor's own environment


@dataclass(frozen=True)
class Policy:
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    start_window_s: float = 10.0  # an exit sooner than this after the start is a failure at start
    max_start_failures: int = 5
    grace_s: float = 30.0  # between SIGTERM and SIGKILL when stopping
    tail_lines: int = 20


@dataclass
class _Child:
    spec: Spec
    state: str = "restarting"
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = None
    started_at: float = 0.0  # monotonic
    started_wall: str | None = None
    restarts: int = 0
    start_failures: int = 0
    delay: float = 0.0
    next_start: float = 0.0
    last_exit: str | None = None
    last_exit_at: str | None = None
    reason: str | None = None
    tail: collections.deque = field(default_factory=collections.deque)


def describe_exit(returncode: int) -> str:
    """'exit code 1', 'killed by SIGKILL': what a user can search for."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Supervisor:
    def __init__(self, specs: list[Spec], *, status_path: Path | None = None, policy: Policy = Policy(),
                 out: TextIO | None = None) -> None:
        self.children = [_Child(spec=s, tail=collections.deque(maxlen=policy.tail_lines)) for s in specs]
        self.policy, self.status_path = policy, status_path
        self.out = out or sys.stdout
        self.state, self.started_at = "running", _now()
        self._lock = threading.RLock()  # one writer of the console at a time (signal handlers too)
        self._wake = threading.Event()
        self._stop_requested = self._force = False

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> int:
        """Start every child and keep them running until stop() (Ctrl-C, SIGTERM). Returns 0."""
        # SIGHUP too (the terminal closed): the children, in their own sessions, would not get it
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            for child in self.children:
                self._start(child)
            self._write_status()
            while not self._stop_requested:
                self.tick()
                self._wake.wait(0.2)
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def stop(self, *, force: bool = False) -> None:
        """Ask the loop to stop every child (what Ctrl-C does); force kills at once."""
        self._force = self._force or force or self._stop_requested
        self._stop_requested = True
        self._wake.set()

    def _on_signal(self, signum: int, _frame) -> None:  # noqa: ANN001
        if self._stop_requested:
            self.say("forced: killing every process now")
        self.stop()

    def tick(self) -> None:
        """One look at every child: restart what is due, notice what exited."""
        now = time.monotonic()
        changed = False
        for child in self.children:
            if child.state == "running" and child.proc is not None and _has_exited(child.proc):
                self._exited(child, now)
                changed = True
            elif child.state == "restarting" and now >= child.next_start:
                child.restarts += 1
                self._start(child)
                changed = True
        if changed:
            self._write_status()

    # -- one child -------------------------------------------------------------------------------
    def _start(self, child: _Child) -> None:
        child.started_at, child.started_wall = time.monotonic(), _now()
        try:
            # its own session: Ctrl-C on the terminal reaches the supervisor only, and the group
            # can be killed as a whole
            env = {**os.environ, **child.spec.env} if child.spec.env else None
            child.proc = subprocess.Popen(child.spec.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            child.proc = None
            self._exited(child, child.started_at, how=f"could not start: {exc}")
            return
        child.state, child.reason = "running", None
        child.reader = threading.Thread(target=self._pump, args=(child, child.proc), daemon=True,
                                        name=f"output-{child.spec.name}")
        child.reader.start()

    def _pump(self, child: _Child, proc: subprocess.Popen) -> None:
        prefix = f"{child.spec.name:<9}| "
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            child.tail.append(line)
            self._write(prefix + line + "\n")  # never stops reading: a full pipe would block the child
        proc.stdout.close()

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.out.write(text)
                self.out.flush()
            except (OSError, ValueError):  # the console is gone (terminal closed, pipe reader left)
                pass

    def _exited(self, child: _Child, now: float, how: str = "") -> None:
        if child.proc is not None:
            how = describe_exit(_reap(child.proc))
            if child.reader is not None:
                child.reader.join(timeout=2)
        child.last_exit, child.last_exit_at = how, _now()
        if now - child.started_at < self.policy.start_window_s:
            child.start_failures += 1
        else:  # it ran for a while: a fresh crash, not a crash loop
            child.start_failures, child.delay = 0, 0.0
        if child.start_failures >= self.policy.max_start_failures:
            child.state = "failed"
            child.reason = f"failed {child.start_failures} times in a row at start (last: {how})"
            lines = "\n".join(f"    {line}" for line in child.tail) or "    (it printed nothing)"
            self.say(f"{child.spec.label} {child.reason}; left stopped, the others keep running. Fix the "
                     f"cause, then restart `studio up`. Its last lines:\n{lines}")
            return
        child.delay = self.policy.backoff_s if not child.delay else min(child.delay * 2, self.policy.backoff_max_s)
        child.state, child.next_start = "restarting", now + child.delay
        self.say(f"{child.spec.label} exited ({how}); restarting it in {child.delay:g} s")

    # -- stopping --------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        self.state = "stopping"
        running = [c for c in self.children if c.state == "running"]
        if running:
            self.say("stopping: " + ", ".join(c.spec.label for c in running))
        self._write_status()
        for child in running:
            os.kill(child.proc.pid, signal.SIGTERM)  # not reaped yet: the pid is still this child's
        deadline = time.monotonic() + self.policy.grace_s
        while not self._force and time.monotonic() < deadline and not all(_has_exited(c.proc) for c in running):
            time.sleep(0.1)
        for child in running:
            if not _has_exited(child.proc) and not self._force:
                self.say(f"{child.spec.label} did not stop within {self.policy.grace_s:g} s; killing it")
            _reap(child.proc)
            if child.reader is not None:
                child.reader.join(timeout=2)
        for child in self.children:
            if child.state != "failed":
                child.state = "stopped"
        self.state = "stopped"
        self._write_status()

    # -- reporting -------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self._write(f"studio: {message}\n")

    def status(self) -> dict:
        return {"pid": os.getpid(), "state": self.state, "started_at": self.started_at, "updated_at": _now(),
                "processes": [{
                    "name": c.spec.name, "label": c.spec.label, "state": c.state,
                    "pid": c.proc.pid if c.proc is not None and c.state == "running" else None,
                    "started_at": c.started_wall, "restarts": c.restarts, "last_exit": c.last_exit,
                    "last_exit_at": c.last_exit_at, "reason": c.reason} for c in self.children]}

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        tmp = self.status_path.with_name(f".{self.status_path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.status(), indent=1))
            os.replace(tmp, self.status_path)  # readers see the old file or the new one, never half
        except OSError as exc:  # a full disk must not stop the supervision itself
            self.say(f"could not write {self.status_path} ({exc}); studio doctor will show an old state")


def _has_exited(proc: subprocess.Popen) -> bool:
    """Whether the child exited, without reaping it: until it is reaped its pid, and so its
    process group's id, cannot be given to another process."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return proc.poll() is not None


def _reap(proc: subprocess.Popen) -> int:
    """Kill the child's process group (the child if it still runs, and whatever it left behind:
    a worker's pool processes), then reap the child. Returns its exit status."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.wait()


# -- for `studio doctor` -------------------------------------------------------------------------

def read_status(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(status: dict | None) -> list[tuple[str, bool, str]]:
    """(name, ok, detail) rows for `studio doctor`: the supervised processes and their state."""
    if status is None:
        return [("studio up", True, "not running here (the processes may be started another way)")]
    if status.get("state") == "stopped":
        return [("studio up", True, f"not running (stopped at {status.get('updated_at')})")]
    if not _alive(status.get("pid", 0)):
        return [("studio up", False, f"pid {status.get('pid')} ended without stopping cleanly (killed?); "
                 "its processes may still run. Start it again: studio up")]
    rows = [("studio up", True, f"running since {status.get('started_at')} (pid {status['pid']})")]
    for p in status.get("processes", []):
        restarts = p.get("restarts", 0)
        last = (f"; last exit: {p['last_exit']} at {p['last_exit_at']}" if p.get("last_exit") else "")
        again = f", restarted {restarts} time{'s' if restarts != 1 else ''}" if restarts else ""
        if p["state"] == "running":
            detail, ok = f"running (pid {p['pid']}){again}{last}", True
        elif p["state"] == "restarting":
            detail, ok = f"restarting{again}{last}", True
        elif p["state"] == "failed":
            detail, ok = f"left stopped: {p.get('reason')}. Its last lines are on the studio up console", False
        else:
            detail, ok = p["state"], True
        rows.append((f"  {p['name']}", ok, detail))
    return rows
