"""a training run is called a run everywhere: jobs -> runs, job_events -> run_events, job_id -> run_id

Renames the two tables, every column that points at a run, and the indexes and constraints whose
names the naming convention derives from them; A/B comparisons that name a fine-tuned model as
{"kind": "job"} now say {"kind": "run"}. Rows and ids are unchanged. The artifact store keeps its
layout (teams/<team>/jobs/<id>/...), so runs started before this revision resume where they were.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

TABLES = [('jobs', 'runs'), ('job_events', 'run_events')]
COLUMNS = [
    ('run_events', 'job_id', 'run_id'),
    ('metrics', 'job_id', 'run_id'),
    ('checkpoints', 'job_id', 'run_id'),
    ('artifacts', 'job_id', 'run_id'),
    ('evaluations', 'job_id', 'run_id'),
    ('sweeps', 'best_job_id', 'best_run_id'),
    ('sweeps', 'promoted_job_id', 'promoted_run_id'),
]
# (table after the rename, old name, new name, columns after the rename)
INDEXES = [
    ('runs', 'ix_jobs_status', 'ix_runs_status', ['status']),
    ('runs', 'ix_jobs_status_priority', 'ix_runs_status_priority', ['status', 'priority', 'created_at']),
    ('runs', 'ix_jobs_team_created', 'ix_runs_team_created', ['team_id', 'created_at']),
    ('runs', 'ix_jobs_team_id', 'ix_runs_team_id', ['team_id']),
    ('run_events', 'ix_job_events_job_id_id', 'ix_run_events_run_id_id', ['run_id', 'id']),
    ('metrics', 'ix_metrics_job_name_step', 'ix_metrics_run_name_step', ['run_id', 'name', 'step']),
    ('checkpoints', 'ix_checkpoints_job_id', 'ix_checkpoints_run_id', ['run_id']),
    ('evaluations', 'ix_evaluations_job_id', 'ix_evaluations_run_id', ['run_id']),
]
# Constraints named after a run table or column (the naming convention's pk/uq/fk names).
# (table after the rename, kind, old name, new name, columns, referred table, referred columns, ondelete)
CONSTRAINTS = [
    ('runs', 'unique', 'uq_jobs_team_id', 'uq_runs_team_id', ['team_id', 'idempotency_key'], None, None, None),
    ('runs', 'foreignkey', 'fk_jobs_base_model_id_base_models', 'fk_runs_base_model_id_base_models',
     ['base_model_id'], 'base_models', ['id'], 'RESTRICT'),
    ('runs', 'foreignkey', 'fk_jobs_created_by_id_users', 'fk_runs_created_by_id_users',
     ['created_by_id'], 'users', ['id'], 'SET NULL'),
    ('runs', 'foreignkey', 'fk_jobs_dataset_id_datasets', 'fk_runs_dataset_id_datasets',
     ['dataset_id'], 'datasets', ['id'], 'RESTRICT'),
    ('runs', 'foreignkey', 'fk_jobs_eval_dataset_id_datasets', 'fk_runs_eval_dataset_id_datasets',
     ['eval_dataset_id'], 'datasets', ['id'], 'RESTRICT'),
    ('runs', 'foreignkey', 'fk_jobs_retry_of_id_jobs', 'fk_runs_retry_of_id_runs',
     ['retry_of_id'], 'runs', ['id'], 'SET NULL'),
    ('runs', 'foreignkey', 'fk_jobs_sweep_id_sweeps', 'fk_runs_sweep_id_sweeps', ['sweep_id'], 'sweeps', ['id'], 'SET NULL'),
    ('runs', 'foreignkey', 'fk_jobs_team_id_teams', 'fk_runs_team_id_teams', ['team_id'], 'teams', ['id'], 'CASCADE'),
    ('run_events', 'foreignkey', 'fk_job_events_job_id_jobs', 'fk_run_events_run_id_runs',
     ['run_id'], 'runs', ['id'], 'CASCADE'),
    ('metrics', 'foreignkey', 'fk_metrics_job_id_jobs', 'fk_metrics_run_id_runs', ['run_id'], 'runs', ['id'], 'CASCADE'),
    ('checkpoints', 'unique', 'uq_checkpoints_job_id', 'uq_checkpoints_run_id', ['run_id', 'step'], None, None, None),
    ('checkpoints', 'foreignkey', 'fk_checkpoints_job_id_jobs', 'fk_checkpoints_run_id_runs',
     ['run_id'], 'runs', ['id'], 'CASCADE'),
    ('artifacts', 'foreignkey', 'fk_artifacts_job_id_jobs', 'fk_artifacts_run_id_runs',
     ['run_id'], 'runs', ['id'], 'CASCADE'),
    ('evaluations', 'foreignkey', 'fk_evaluations_job_id_jobs', 'fk_evaluations_run_id_runs',
     ['run_id'], 'runs', ['id'], 'CASCADE'),
    ('sweeps', 'foreignkey', 'fk_sweeps_best_job', 'fk_sweeps_best_run', ['best_run_id'], 'runs', ['id'], 'SET NULL'),
    ('sweeps', 'foreignkey', 'fk_sweeps_promoted_job', 'fk_sweeps_promoted_run',
     ['promoted_run_id'], 'runs', ['id'], 'SET NULL'),
]
PRIMARY_KEYS = [('runs', 'pk_jobs', 'pk_runs'), ('run_events', 'pk_job_events', 'pk_run_events')]
SEQUENCES = [('jobs_id_seq', 'runs_id_seq'), ('job_events_id_seq', 'run_events_id_seq')]


def _rename_tables_and_columns(back: bool) -> None:
    """The same SQL on PostgreSQL and SQLite (3.26+), which both rewrite the references to them."""
    if not back:
        for old, new in TABLES:
            op.execute(f'ALTER TABLE "{old}" RENAME TO "{new}"')
    for table, old, new in COLUMNS:
        old, new = (new, old) if back else (old, new)
        op.execute(f'ALTER TABLE "{table}" RENAME COLUMN "{old}" TO "{new}"')
    if back:
        for old, new in TABLES:
            op.execute(f'ALTER TABLE "{new}" RENAME TO "{old}"')


def _rename_names(back: bool) -> None:
    """Indexes and named constraints, while the tables and columns carry their new names."""
    sqlite = op.get_bind().dialect.name == 'sqlite'
    for table, old, new, columns in INDEXES:
        old, new = (new, old) if back else (old, new)
        if sqlite:  # no index renaming there: make it again under its new name
            op.drop_index(old, table_name=table)
            op.create_index(new, table, columns)
        else:
            op.execute(f'ALTER INDEX "{old}" RENAME TO "{new}"')
    if not sqlite:
        for table, old, new in PRIMARY_KEYS + [(c[0], c[2], c[3]) for c in CONSTRAINTS]:
            old, new = (new, old) if back else (old, new)
            op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')
        for old, new in SEQUENCES:
            old, new = (new, old) if back else (old, new)
            op.execute(f'ALTER SEQUENCE IF EXISTS "{old}" RENAME TO "{new}"')
        return
    # SQLite keeps constraint names in each table's CREATE statement: recreate those tables.
    for table in dict.fromkeys(c[0] for c in CONSTRAINTS):
        with op.batch_alter_table(table, recreate='always') as batch:
            for t, kind, old, new, columns, referred, referred_columns, ondelete in CONSTRAINTS:
                if t != table:
                    continue
                old, new = (new, old) if back else (old, new)
                batch.drop_constraint(old, type_=kind)
                if kind == 'unique':
                    batch.create_unique_constraint(new, columns)
                else:
                    batch.create_foreign_key(new, referred, columns, referred_columns, ondelete=ondelete)


def _model_refs(old: str, new: str) -> None:
    """A/B comparisons keep their two models as {"kind", "id"} JSON; a fine-tuned one changes kind."""
    bind = op.get_bind()
    comparisons = sa.table('comparisons', sa.column('id', sa.Integer), sa.column('model_a', sa.JSON),
                           sa.column('model_b', sa.JSON))
    for row in bind.execute(sa.select(comparisons)).all():
        values = {side: {**ref, 'kind': new} for side, ref in (('model_a', row.model_a), ('model_b', row.model_b))
                  if isinstance(ref, dict) and ref.get('kind') == old}
        if values:
            bind.execute(comparisons.update().where(comparisons.c.id == row.id).values(**values))


def upgrade() -> None:
    _rename_tables_and_columns(back=False)
    _rename_names(back=False)
    _model_refs('job', 'run')


def downgrade() -> None:
    _model_refs('run', 'job')
    _rename_names(back=True)
    _rename_tables_and_columns(back=True)
