"""Liveness and readiness, and the checks `studio doctor` prints."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select, text

from app.config import Settings
from app.models import Worker, utcnow

router = APIRouter(tags=["health"])
WORKER_ALIVE_S = 30


def check_database(session_factory) -> tuple[bool, str]:  # noqa: ANN001
    try:
        with session_factory() as s:
            s.execute(text("SELECT 1"))
        return True, "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


def check_broker(settings: Settings) -> tuple[bool, str]:
    from kombu import Connection

    try:
        options = {} if settings.embedded_broker else {"socket_connect_timeout": 2, "socket_timeout": 2}
        with Connection(settings.broker_url, connect_timeout=2, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            if settings.embedded_broker:  # the SQLAlchemy transport connects lazily: touch it
                conn.default_channel.queue_declare(queue="default", durable=True, auto_delete=False)
        return True, "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


def check_storage(store) -> tuple[bool, str]:  # noqa: ANN001
    try:
        store.check_writable()
        return True, "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


def alive_workers(session) -> list[Worker]:  # noqa: ANN001
    """Workers whose heartbeat is recent: the one definition of "alive"."""
    cutoff = utcnow() - timedelta(seconds=WORKER_ALIVE_S)
    return list(session.scalars(select(Worker).where(Worker.last_seen_at >= cutoff).order_by(Worker.name)))


def live_workers(session_factory) -> list[Worker]:  # noqa: ANN001
    with session_factory() as s:
        return alive_workers(s)


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks = {
        "database": check_database(state.session_factory),
        "broker": check_broker(state.settings),
        "storage": check_storage(state.store),
    }
    ok = all(passed for passed, _ in checks.values())
    workers = live_workers(state.session_factory) if checks["database"][0] else []
    body = {
        "status": "ready" if ok else "not ready",
        "checks": {name: {"ok": passed, "detail": detail} for name, (passed, detail) in checks.items()},
        "workers": [{"name": w.name, "queues": w.queues, "device": w.device_name,
                     "seen_s_ago": round((utcnow() - w.last_seen_at).total_seconds(), 1)} for w in workers],
    }
    return JSONResponse(body, status_code=200 if ok else 503)
