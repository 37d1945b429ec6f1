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
    """The web process never imports torch/transformers/peft, and create_app() is quick."""
    code = (
        "import sys, time, json; t = time.perf_counter();"
        "from app.main import create_app; create_app();"
        "print(json.dumps({'s': time.perf_counter() - t,"
        " 'heavy': sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'bitsandbytes') if m in sys.modules)}))"
    )
    env = {"STUDIO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\ncreate_app: {result['s']:.2f} s, whole interpreter: {wall:.2f} s")
    assert result["heavy"] == []
    assert wall < 2.0
