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


def test_web_starts_fast_without_torch(tmp_path):
    """The web process never imports torch/transformers/peft, and is ready within 2 s of its launch.

    Measured from launching the interpreter to the moment the app is built and says so (the
    process's exit, which only frees memory, is not part of starting). Best of three launches, so
    that a passing load on the machine does not decide it."""
    code = (
        "import sys, time, json; t = time.perf_counter();"
        "from app.main import create_app; create_app();"
        "print(json.dumps({'s': time.perf_counter() - t,"
        " 'heavy': sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'bitsandbytes', 'httpx')"
        " if m in sys.modules)}), flush=True)"
    )
    env = {"STUDIO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    launches = []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        line = proc.stdout.readline()
        ready = time.perf_counter() - start
        assert proc.wait(timeout=60) == 0 and line, "the app did not start"
        launches.append((ready, json.loads(line)))
    print("\n" + "\n".join(f"launch to ready: {wall:.2f} s (create_app and its imports: {r['s']:.2f} s)"
                            for wall, r in launches))
    assert all(r["heavy"] == [] for _, r in launches)
    assert min(wall for wall, _ in launches) < 2.0
