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


def test_the_run_rename_keeps_every_row_both_ways(db, settings, tmp_path):
    """0003 renames jobs -> runs (tables, columns, names) and A/B refs {"kind": "job"} -> "run":
    rows written at head survive a downgrade to 0002 under the old names and come back."""
    from sqlalchemy import text

    from app.models import Checkpoint, Comparison, Metric, RunStatus
    from app.storage import ArtifactStore
    from tests.factories import make_account
    from tests.runs.factories import make_dataset, make_run, register_model, write_model_dir

    team = make_account(db).team_id
    model = register_model(db, write_model_dir(tmp_path / "model"), team_id=team)
    dataset = make_dataset(db, ArtifactStore(settings.artifact_dir), team)
    run = make_run(db, team, dataset, model, status=RunStatus.succeeded)
    db.add_all([Metric(run_id=run.id, name="loss", step=1, value=2.5), Checkpoint(run_id=run.id, step=1, path="c/1"),
                Comparison(team_id=team, name="ab", model_a={"kind": "base", "id": model.id},
                           model_b={"kind": "run", "id": run.id})])
    db.commit()
    db.close()
    cfg, engine = _cfg(settings.database_url), create_engine(settings.database_url)

    command.downgrade(cfg, "0002")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, status FROM jobs")).all() == [(run.id, "succeeded")]
        assert conn.execute(text("SELECT job_id, value FROM metrics")).all() == [(run.id, 2.5)]
        assert conn.execute(text("SELECT job_id, step FROM checkpoints")).all() == [(run.id, 1)]
        refs = conn.execute(text("SELECT model_a, model_b FROM comparisons")).one()
    assert [_json(r)["kind"] for r in refs] == ["base", "job"]

    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT run_id, value FROM metrics")).all() == [(run.id, 2.5)]
        assert conn.execute(text("SELECT run_id FROM checkpoints")).all() == [(run.id,)]
        refs = conn.execute(text("SELECT model_b FROM comparisons")).one()
        # The foreign keys follow the renamed table: deleting the run deletes what hangs on it.
        if engine.dialect.name == "sqlite":
            conn.execute(text("PRAGMA foreign_keys=ON"))
        conn.execute(text("DELETE FROM runs"))
        assert conn.execute(text("SELECT count(*) FROM metrics")).scalar() == 0
    engine.dispose()
    assert _json(refs[0]) == {"kind": "run", "id": run.id}


def _json(value):
    import json

    return json.loads(value) if isinstance(value, str) else value


def test_the_fleet_columns_come_with_values_for_the_rows_already_there(db, settings):
    """0004: a worker row written before it drives one device (runs.device_ids stays empty for the
    runs already there: the claim counts a running one as holding the lowest ids)."""
    from sqlalchemy import text

    cfg, engine = _cfg(settings.database_url), create_engine(settings.database_url)
    db.close()
    command.downgrade(cfg, "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO workers (name, queues, device, device_name, device_memory_bytes, "
                          "last_seen_at, created_at) VALUES ('old@host', 'train', 'cuda', 'A100', 1, "
                          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name, device_count FROM workers")).all() == [("old@host", 1)]
    engine.dispose()
