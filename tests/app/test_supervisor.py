"""The supervisor behind `studio up` (app/supervisor.py), run for real in its own process with tiny
children (`python -c ...`) that serve, crash, get killed, crash at start or ignore SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.supervisor import describe, read_status
from tests.processes import wait_for

SERVE = "import time; print('serving', flush=True); time.sleep(120)"
RUNNER = """
import json, sys
from pathlib import Path
from app.supervisor import Policy, Spec, Supervisor
specs, policy, status = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
sys.exit(Supervisor([Spec(**s) for s in specs], status_path=status, policy=Policy(**policy)).run())
"""


def child(name: str, code: str) -> dict:
    return {"name": name, "label": f"the {name} process", "argv": [sys.executable, "-c", code]}


class Supervised:
    def __init__(self, tmp_path: Path, specs: list[dict], **policy) -> None:
        self.status_path, self.log_path = tmp_path / "supervisor.json", tmp_path / "console.log"
        self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(specs), json.dumps(policy),
                                      str(self.status_path)], stdout=open(self.log_path, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def console(self) -> str:
        return self.log_path.read_text()

    def process(self, name: str) -> dict:
        status = read_status(self.status_path) or {"processes": []}
        return next((p for p in status["processes"] if p["name"] == name), {})

    def wait(self, predicate, what: str, timeout: float = 20):  # noqa: ANN001, ANN201
        return wait_for(predicate, timeout, what, interval=0.05, log=self.log_path)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for p in (read_status(self.status_path) or {}).get("processes", []):
            if p.get("pid") and not gone(p["pid"]):
                os.killpg(p["pid"], signal.SIGKILL)


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is gone
    except FileNotFoundError:
        return True


@pytest.fixture
def supervised(tmp_path):
    made = []

    def start(specs: list[dict], **policy) -> Supervised:
        made.append(Supervised(tmp_path, specs, **policy))
        return made[-1]

    yield start
    for s in made:
        s.close()


def test_a_child_that_exits_is_restarted_and_the_others_keep_serving(supervised):
    sup = supervised([child("steady", SERVE), child("flaky", "import time; time.sleep(0.3); raise SystemExit(3)")],
                     backoff_s=0.1, start_window_s=0.2)
    steady = sup.wait(lambda: sup.process("steady").get("pid"), "the steady child to start")
    sup.wait(lambda: sup.process("flaky").get("restarts", 0) >= 3, "the flaky child to be restarted 3 times")
    assert sup.process("steady")["pid"] == steady  # never touched
    assert sup.process("steady")["state"] == "running" and sup.process("steady")["restarts"] == 0
    assert sup.process("flaky")["last_exit"] == "exit code 3"
    # it ran longer than the start window each time: a fresh crash, so the backoff stays short
    assert sup.console().count("studio: the flaky process exited (exit code 3); restarting it in 0.1 s") >= 3
    assert sup.proc.poll() is None and "steady   | serving" in sup.console()


def test_a_child_killed_by_sigkill_is_started_again(supervised):
    sup = supervised([child("train", SERVE), child("web", SERVE)], backoff_s=0.1)
    first = sup.wait(lambda: sup.process("train").get("pid"), "the train child to start")
    web = sup.process("web")["pid"]
    os.kill(first, signal.SIGKILL)
    second = sup.wait(lambda: (sup.process("train").get("pid") or first) != first and sup.process("train")["pid"],
                      "the train child to be started again")
    assert sup.process("train")["restarts"] == 1 and sup.process("train")["last_exit"] == "killed by SIGKILL"
    assert "studio: the train process exited (killed by SIGKILL); restarting it in 0.1 s" in sup.console()
    assert sup.process("web")["pid"] == web and not gone(second)


def test_a_child_that_crashes_at_start_is_left_stopped_with_its_last_lines(supervised):
    crash = "import sys; print('loading the model', flush=True); sys.exit('boom: no such file: model.bin')"
    sup = supervised([child("steady", SERVE), child("inference", crash)], backoff_s=0.05, max_start_failures=4)
    sup.wait(lambda: sup.process("inference").get("state") == "failed", "the crashing child to be left stopped")
    out = sup.console()
    for delay in ("0.05", "0.1", "0.2"):  # the backoff doubles while it keeps crashing at start
        assert f"the inference process exited (exit code 1); restarting it in {delay} s" in out
    assert ("studio: the inference process failed 4 times in a row at start (last: exit code 1); left stopped, "
            "the others keep running") in out
    assert "Its last lines:\n    loading the model\n    boom: no such file: model.bin" in out
    time.sleep(0.5)
    assert sup.process("inference")["restarts"] == 3 and sup.process("inference")["state"] == "failed"
    assert sup.process("steady")["state"] == "running" and sup.proc.poll() is None
    rows = {name.strip(): (ok, detail) for name, ok, detail in describe(read_status(sup.status_path))}
    assert rows["steady"][0] and rows["steady"][1].startswith("running (pid ")
    assert rows["inference"] == (False, "left stopped: failed 4 times in a row at start (last: exit code 1). "
                                        "Its last lines are on the studio up console")


def test_a_command_that_cannot_start_is_reported_and_left_stopped(supervised):
    missing = {"name": "web", "label": "the web server", "argv": ["/nonexistent/studio"]}
    sup = supervised([child("steady", SERVE), missing], backoff_s=0.05, max_start_failures=2)
    sup.wait(lambda: sup.process("web").get("state") == "failed", "the missing command to be left stopped")
    assert "could not start: [Errno 2] No such file or directory" in sup.process("web")["reason"]
    assert "(it printed nothing)" in sup.console() and sup.process("steady")["state"] == "running"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP])  # SIGHUP: the terminal closed
def test_a_stop_signal_stops_every_child_then_kills_what_ignores_it(supervised, tmp_path, stop_signal):
    polite = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (print('bye', flush=True), sys.exit(0))); print('up', flush=True); time.sleep(120)"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"
    # a worker with a pool: its own child must not outlive it
    parent = f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); open({str(tmp_path / 'grandchild')!r}, 'w').write(str(p.pid)); time.sleep(120)"
    sup = supervised([child("polite", polite), child("stubborn", stubborn), child("pool", parent)], grace_s=1.0)
    sup.wait(lambda: sup.console().count("| up") == 2 and (tmp_path / "grandchild").exists(), "the children to start")
    pids = {p["name"]: p["pid"] for p in read_status(sup.status_path)["processes"]}
    grandchild = int((tmp_path / "grandchild").read_text())
    asked = time.monotonic()
    sup.proc.send_signal(stop_signal)
    assert sup.proc.wait(timeout=10) == 0
    took = time.monotonic() - asked
    assert 1.0 <= took < 5, took  # the grace period, then SIGKILL
    out = sup.console()
    assert "polite   | bye" in out and "studio: the stubborn process did not stop within 1 s; killing it" in out
    assert all(gone(pid) for pid in [*pids.values(), grandchild])
    status = read_status(sup.status_path)
    assert status["state"] == "stopped" and {p["state"] for p in status["processes"]} == {"stopped"}
    assert describe(status)[0][:2] == ("studio up", True) and "not running" in describe(status)[0][2]


def test_a_second_ctrl_c_kills_at_once(supervised):
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"
    sup = supervised([child("stubborn", stubborn)], grace_s=60.0)
    sup.wait(lambda: "| up" in sup.console(), "the child to start")
    pid = sup.process("stubborn")["pid"]
    sup.proc.send_signal(signal.SIGINT)
    sup.wait(lambda: "studio: stopping: the stubborn process" in sup.console(), "the supervisor to start stopping")
    asked = time.monotonic()
    sup.proc.send_signal(signal.SIGINT)
    assert sup.proc.wait(timeout=10) == 0
    assert time.monotonic() - asked < 5 and gone(pid)
    assert "studio: forced: killing every process now" in sup.console()


def test_doctor_says_when_studio_up_died_without_stopping(tmp_path):
    assert describe(None) == [("studio up", True, "not running here (the processes may be started another way)")]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rows = describe({"pid": dead.pid, "state": "running", "processes": []})
    assert rows[0][1] is False and "ended without stopping cleanly" in rows[0][2]
    running = describe({"pid": os.getpid(), "state": "running", "started_at": "t0", "processes": [
        {"name": "train", "state": "running", "pid": 7, "restarts": 2, "last_exit": "killed by SIGKILL",
         "last_exit_at": "t1"}]})
    assert running[1] == ("  train", True, "running (pid 7), restarted 2 times; last exit: killed by SIGKILL at t1")


def test_a_process_gets_its_own_environment_over_the_supervisors(supervised):
    """`studio up` gives the train worker its share of the cores through Spec.env."""
    code = ("import os, time; print('share', os.environ.get('STUDIO_TEST_SHARE'), 'PATH' in os.environ, flush=True); "
            "time.sleep(120)")
    sup = supervised([{**child("train", code), "env": {"STUDIO_TEST_SHARE": "1"}}, child("web", code)])
    sup.wait(lambda: "share 1 True" in sup.console() and "share None True" in sup.console(),
             "the train process with its own variable, the web without it, both with the rest")
