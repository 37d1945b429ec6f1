"""`studio up` keeps serving when its training worker is killed (what the out-of-memory killer
does): the supervisor starts the worker again, the web answers throughout, the reconciler queues
the run again naming the lost worker, and the run finishes with no manual action.

Here rather than beside tests/test_studio_up.py for the tiny-model fixtures of tests/worker/.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from app.models import Checkpoint, RunEvent, RunStatus, Run, Worker
from app.storage import ArtifactStore
from app.supervisor import STATUS_FILE, read_status
from tests.factories import make_account, make_api_key
from tests.processes import free_port, spawn, wait_for
from tests.runs.factories import make_dataset, register_model

HEARTBEAT_TIMEOUT_S, RECONCILE_EVERY_S = 6, 1  # short, to keep the test fast; the defaults are 20 and 5
RUN = {"method": "lora", "max_steps": 200, "per_device_batch_size": 2, "grad_accum": 1, "save_strategy": "steps",
       "save_steps": 8, "save_total_limit": 2, "eval_strategy": "no", "max_length": 96, "warmup": 0.0}



class HealthPoller(threading.Thread):
    """GET /healthz every 0.2 s; every answer that is not a 200 is kept."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.answers, self.failures, self.done = url, 0, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.done.wait(0.2):
                try:
                    r = client.get(self.url)
                    ok, what = r.status_code == 200, f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, what = False, f"{type(exc).__name__}: {exc}"
                self.answers += 1
                if not ok:
                    self.failures.append((time.strftime("%H:%M:%S"), what))


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the embedded studio: SQLite and its broker
def test_a_sigkilled_train_worker_is_restarted_and_the_run_finishes(settings, db, tiny_model_dir, tmp_path):
    account = make_account(db)
    headers = {"Authorization": f"Bearer {make_api_key(db, account)}"}
    model = register_model(db, tiny_model_dir, name="Tiny Llama")
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), account.team_id, n_train=16, n_eval=4)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STUDIO_DATA_DIR": str(settings.data_dir), "STUDIO_DATABASE_URL": settings.database_url,
           "STUDIO_SECRET_KEY": settings.secret_key, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "STUDIO_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
           "STUDIO_RECONCILE_EVERY_S": str(RECONCILE_EVERY_S), "STUDIO_EVAL_SAMPLES": "1",
           "STUDIO_EVAL_MAX_NEW_TOKENS": "8", "STUDIO_INFERENCE_URL": f"http://127.0.0.1:{free_port()}"}
    env.pop("STUDIO_BROKER_URL", None)
    log = tmp_path / "up.log"
    up = spawn(["up", "--no-builtin", "--port", str(port)], env, log)
    status_path = settings.data_dir / STATUS_FILE

    def supervised(name: str) -> dict:
        return next((p for p in (read_status(status_path) or {"processes": []})["processes"] if p["name"] == name), {})

    def worker_pid() -> int | None:
        db.expire_all()
        row = db.scalar(select(Worker).where(Worker.name.like("train@%")))
        return row.info.get("pid") if row is not None else None

    poller = HealthPoller(f"{base}/healthz")
    try:
        first = wait_for(lambda: supervised("train").get("pid") == worker_pid() and worker_pid(), 120,
                         "the train worker's first heartbeat", log=log)
        wait_for(lambda: _get(f"{base}/healthz") == 200, 60, "the web server", log=log)
        poller.start()
        r = httpx.post(f"{base}/api/v1/runs", headers=headers, timeout=30,
                       json={"dataset_id": dataset.id, "base_model_id": model.id, "hyperparameters": RUN})
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        wait_for(lambda: db.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.run_id == run_id)), 120,
                 "a first checkpoint", log=log)
        os.kill(first, signal.SIGKILL)  # the kernel's out-of-memory killer
        killed = time.monotonic()

        second = wait_for(lambda: supervised("train").get("pid") not in (None, first) and supervised("train")["pid"],
                          10, "the supervisor to start the train worker again", log=log)
        restarted_in = time.monotonic() - killed
        wait_for(lambda: worker_pid() == second, 90, "the new train worker's heartbeat", log=log)

        def requeued() -> RunEvent | None:
            db.expire_all()
            return db.scalar(select(RunEvent).where(RunEvent.run_id == run_id,
                                                    RunEvent.message.contains("stopped answering")))

        event = wait_for(requeued, HEARTBEAT_TIMEOUT_S + 60, "the lost run to be queued again", log=log)
        requeued_in = time.monotonic() - killed
        run = wait_for(lambda: _finished(db, run_id), 240, "the run to finish", log=log)
        print(f"\nworker restarted {restarted_in:.1f}s after the kill, run requeued after {requeued_in:.1f}s, "
              f"{poller.answers} /healthz answers")
        assert run.status == RunStatus.succeeded, run.error_message
        assert run.attempt == 2 and run.result["global_step"] == 200
        assert event.message.startswith(f"The worker train@{socket.gethostname()} stopped answering (")
        assert "the run is queued again and resumes from step " in event.message and "(attempt 2 of 3)" in event.message
        assert supervised("train")["restarts"] == 1 and supervised("train")["last_exit"] == "killed by SIGKILL"
        assert all(supervised(name)["restarts"] == 0 for name in ("web", "default", "inference"))
        assert "studio: the train worker exited (killed by SIGKILL); restarting it in 1 s" in log.read_text()
    finally:
        poller.done.set()
        _stop(up, status_path)
    assert poller.answers > 20 and poller.failures == [], poller.failures
    assert read_status(status_path)["state"] == "stopped"


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _finished(db, run_id: int) -> Run | None:  # noqa: ANN001
    db.expire_all()
    run = db.get(Run, run_id)
    return run if run.status in (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled) else None


def _stop(up: subprocess.Popen, status_path) -> None:  # noqa: ANN001
    """Ctrl-C, as a user would; should studio up hang, kill it and what it started."""
    up.send_signal(signal.SIGINT)
    try:
        up.wait(timeout=60)
    except subprocess.TimeoutExpired:
        up.kill()
        for p in (read_status(status_path) or {}).get("processes", []):
            if p.get("pid"):
                try:
                    os.killpg(p["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        pytest.fail("studio up did not stop within 60 s of Ctrl-C")
