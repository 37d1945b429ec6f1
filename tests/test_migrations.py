"""Migrations go up, down and up again on SQLite and Postgres, and match the models."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.db import alembic_config
from app.models import Base


def _cfg(url: str):
    cfg = alembic_config()
    cfg.attributes["url"] = url
    return cfg


def test_up_down_up_and_no_drift(db_url):
    cfg = _cfg(db_url)
    engine = create_engine(db_url)
    tables = set(Base.metadata.tables)
    assert tables <= set(inspect(engine).get_table_names())  # the fixture migrated to head

    command.downgrade(cfg, "base")
    engine.dispose()
    assert set(inspect(engine).get_table_names()) & tables == set()

    command.upgrade(cfg, "head")
    engine.dispose()
    assert tables <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"
