"""The README's run command: `studio up` migrates, adds the built-in model and starts web and a
local worker under its supervisor; /readyz answers 200 and shows the worker alive, and Ctrl-C
stops everything cleanly. (A killed worker started again: tests/worker/test_studio_up_recovers.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from app.supervisor import STATUS_FILE, read_status
from tests.processes import free_port


@pytest.mark.slow
def test_studio_up_serves_and_sees_its_worker(tmp_path):
    port = free_port()
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    for key in ("STUDIO_DATABASE_URL", "STUDIO_BROKER_URL", "STUDIO_SECRET_KEY"):
        env.pop(key, None)
    log = open(tmp_path / "up.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    body = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                body = r.json()
                if r.status_code == 200 and {w["name"].split("@")[0] for w in body["workers"]} >= {"train", "default"}:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"studio up did not become ready: {body}\n{(tmp_path / 'up.log').read_text()[-3000:]}")
        assert r.status_code == 200 and body["status"] == "ready"
        signup = httpx.get(f"http://127.0.0.1:{port}/signup", timeout=5)
        assert signup.status_code == 200 and "Create your studio account" in signup.text
        assert (tmp_path / "data" / "studio.db").is_file()
        assert (tmp_path / "data" / "models" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()
        status = read_status(tmp_path / "data" / STATUS_FILE)  # what `studio doctor` shows
        assert status["state"] == "running" and status["pid"] == proc.pid
        assert {p["name"]: p["state"] for p in status["processes"]} == {
            "web": "running", "train": "running", "default": "running", "inference": "running"}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the supervisor stops its children
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            for p in (read_status(tmp_path / "data" / STATUS_FILE) or {}).get("processes", []):
                if p.get("pid"):  # each child runs in its own process group
                    os.killpg(p["pid"], signal.SIGKILL)
        log.close()
    assert proc.returncode == 0 and read_status(tmp_path / "data" / STATUS_FILE)["state"] == "stopped"
