"""Liveness, readiness and the web process staying light."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from app.main import create_app


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert {k: v["ok"] for k, v in body["checks"].items()} == {"database": True, "broker": True, "storage": True}


def test_readyz_is_503_when_the_broker_is_down(settings):
    from fastapi.testclient import TestClient

    settings.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["broker"]["ok"] is False
    assert r.json()["checks"]["database"]["ok"] is True


def _best_launch(code: str, env: dict, times: int) -> tuple[float, dict]:
    """Launch `code` in a fresh interpreter `times` times; the fastest launch-to-first-line and its line."""
    launches = []
    for _ in range(times):
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        line = proc.stdout.readline()
        ready = time.perf_counter() - start
        assert proc.wait(timeout=60) == 0 and line, f"the launch did not finish: {code}"
        launches.append((ready, json.loads(line)))
    return min(launches, key=lambda launch: launch[0])


def test_web_starts_fast_without_torch(tmp_path):
    """The web process never imports torch/transformers/peft, and is ready within 2 s of its launch.

    Measured from launching the interpreter to the moment the app is built and says so (the
    process's exit, which only frees memory, is not part of starting); best of five launches.

    The 2 s hold for the development machine at its usual speed, where the frameworks the web is
    built on (FastAPI, SQLAlchemy's ORM, Jinja2, pydantic-settings) take about 1 s to import by
    themselves. That machine is shared and at times runs a third slower, so the same run also
    times those imports alone, and when they take longer than 1 s the 2 s stretch in proportion:
    the studio must start in under twice the time of the frameworks alone."""
    studio = (
        "import sys, time, json; t = time.perf_counter();"
        "from app.main import create_app; create_app();"
        "print(json.dumps({'s': time.perf_counter() - t,"
        " 'heavy': sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'bitsandbytes', 'httpx')"
        " if m in sys.modules)}), flush=True)"
    )
    frameworks = (
        "import time, json; t = time.perf_counter();"
        "import fastapi, sqlalchemy.orm, jinja2, pydantic_settings;"
        "print(json.dumps({'s': time.perf_counter() - t}), flush=True)"
    )
    env = {"STUDIO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    ready, report = _best_launch(studio, env, times=5)
    baseline, _ = _best_launch(frameworks, env, times=3)
    usual_frameworks_s = 1.0  # their import time on the development machine at its usual speed
    bound = 2.0 * max(1.0, baseline / usual_frameworks_s)
    print(f"\nlaunch to ready: {ready:.2f} s (create_app and its imports: {report['s']:.2f} s); "
          f"the frameworks alone: {baseline:.2f} s; ratio {ready / baseline:.2f}; bound {bound:.2f} s")
    assert report["heavy"] == []
    assert ready < bound
