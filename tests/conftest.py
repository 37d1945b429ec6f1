"""Shared fixtures: real databases (SQLite and Postgres), the app, a client, factories.

Database-backed tests are parametrised over STUDIO_TEST_DATABASES (default "sqlite,postgres").
Postgres gets one database per test session, migrated once and truncated after each test;
SQLite gets a fresh migrated file per test. Without a reachable Postgres the postgres variants
are skipped locally with the reason; in CI (STUDIO_TEST_REQUIRE_SERVICES=1) they fail instead.

Long end-to-end tests (worker processes, training) do not run on every combination, to keep the
suite inside its time budget (see ``pytest_collection_modifyitems``): a test that takes both a
database and a broker runs on the studio's two real set-ups, SQLite with the SQLite broker (the
embedded default) and Postgres with Redis (a fleet); a test marked ``one_database`` runs on
Postgres when it is tested, else on the one database given. What they exercise of the database
is covered on both by the API and service tests.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PG_ADMIN_URL = os.environ.get("STUDIO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b.strip() for b in os.environ.get("STUDIO_TEST_DATABASES", "sqlite,postgres").split(",") if b.strip()]
REQUIRE_SERVICES = os.environ.get("STUDIO_TEST_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("STUDIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


# The (database, broker) pairs a test that takes both runs on: the embedded default and a fleet.
SETUPS = {("sqlite", "sqlite-broker"), ("postgres", "redis")}
ONE_DATABASE = "postgres" if "postgres" in BACKENDS else (BACKENDS[0] if BACKENDS else "sqlite")


def _runs_here(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    database = params.get("db_url")
    if database is None:
        return True
    if item.get_closest_marker("one_database"):
        return database == ONE_DATABASE
    if "broker" in params and len(BACKENDS) > 1:
        return (database, params["broker"]) in SETUPS
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the combinations the module docstring says are not run (reported as deselected)."""
    kept, dropped = [], []
    for item in items:
        (kept if _runs_here(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def light_password_hashing():
    """Argon2 with its lightest parameters in this process: the studio's own take ~0.3 s a hash on
    2 cores, and the suite signs up and logs in people over a thousand times. The hashes are still
    argon2 (a verify reads the parameters from the hash), so processes the tests start verify them."""
    from argon2 import PasswordHasher

    from app.auth import security

    kept = security._hasher
    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    security._hasher = kept


def migrate(url: str) -> None:
    from alembic import command

    from app.db import alembic_config

    cfg = alembic_config()
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")


def unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message + "; see README 'Running the tests'")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "studio.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database():
    name = f"studio_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        unavailable("PostgreSQL", exc)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    yield url
    from app.db import _engine_for

    _engine_for.cache_clear()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    from app.models import Base

    engine = create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "studio.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    elif request.param == "postgres":
        url = request.getfixturevalue("postgres_database")
        yield url
        _truncate(url)
    else:
        raise ValueError(f"unknown backend {request.param!r} in STUDIO_TEST_DATABASES")


@pytest.fixture
def settings(db_url, tmp_path, monkeypatch):
    from app import config
    from app.config import Settings

    data = tmp_path / "data"
    values = {"STUDIO_DATA_DIR": str(data), "STUDIO_DATABASE_URL": db_url,
              "STUDIO_SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    config.get_settings.cache_clear()
    s = Settings()
    s.ensure_dirs()
    yield s
    config.get_settings.cache_clear()
    from app.db import get_engine

    get_engine(s).dispose()


@pytest.fixture
def db(settings):
    from app.db import session_factory

    session = session_factory(settings)()
    yield session
    session.rollback()
    session.close()


@pytest.fixture
def app(settings):
    from app.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_client(app):
    """Several independent browsers (each with its own cookies)."""
    from fastapi.testclient import TestClient

    clients = []

    def make() -> TestClient:
        c = TestClient(app)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def redis_url():
    import redis

    try:
        r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        r.ping()
    except Exception as exc:  # noqa: BLE001
        unavailable("Redis", exc)
    r.flushdb()
    yield REDIS_URL
    r.flushdb()


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list, str]]:
    """Messages that would go to the broker (app.queue sends them only after a commit)."""
    from app import queue

    messages: list[tuple[str, list, str]] = []
    monkeypatch.setattr(queue, "send", lambda task, args, queue: messages.append((task, args, queue)))
    return messages
