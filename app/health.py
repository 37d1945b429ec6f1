"""Liveness and readiness, and the checks `studio doctor` prints."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.config import Settings
from app.db import ping
from app.models import Worker, utcnow
from app.workers import repository as workers_repo

router = APIRouter(tags=["health"])


def check_database(session_factory) -> tuple[bool, str]:  # noqa: ANN001
    try:
        with session_factory() as s:
            ping(s)
        return True, "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


def check_broker(settings: Settings) -> tuple[bool, str]:
    from kombu import Connection

    try:
        options = {} if settings.embedded_broker else {"socket_connect_timeout": 2, "socket_timeout": 2}
        with Connection(settings.broker_url, connect_timeout=2, transport_options=options) as conn:
            # One quick try: a probe must answer in a moment (kombu's default waits 2 s to retry).
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
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


def live_workers(session_factory) -> list[Worker]:  # noqa: ANN001
    """The live workers, read in a session of their own: for the checks, which run outside a
    request's unit of work (and only once the database answered)."""
    with session_factory() as s:
        return workers_repo.alive(s)


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
                     "device_count": w.device_count,
                     "seen_s_ago": round((utcnow() - w.last_seen_at).total_seconds(), 1)} for w in workers],
    }
    return JSONResponse(body, status_code=200 if ok else 503)
