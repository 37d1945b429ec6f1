"""dataclean: near duplicates, personal data and augmentation with review

`datasets.cleaning` (the scan after validation), `datasets.origin` (how a derived version was
made), `augmentation_jobs` and `generated_examples` (generated examples waiting for review).

Revision ID: 0005_dataclean
Revises: 0004
Create Date: 2026-12-06 18:27:34.276204
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

revision = '0005_dataclean'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('augmentation_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('queued', 'running', 'succeeded', 'failed', 'cancelled', name='augmentationstatus', native_enum=False, length=16), nullable=False),
    sa.Column('endpoint_url', sa.String(length=500), nullable=False),
    sa.Column('api_key_encrypted', sa.Text(), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('settings', JSON, nullable=False),
    sa.Column('calls_used', sa.Integer(), nullable=False),
    sa.Column('tokens_used', sa.Integer(), nullable=False),
    sa.Column('total_steps', sa.Integer(), nullable=False),
    sa.Column('done_steps', sa.Integer(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('result_dataset_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_augmentation_jobs_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_augmentation_jobs_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['result_dataset_id'], ['datasets.id'], name=op.f('fk_augmentation_jobs_result_dataset_id_datasets'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_augmentation_jobs_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_augmentation_jobs'))
    )
    with op.batch_alter_table('augmentation_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_augmentation_jobs_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_augmentation_jobs_team_id'), ['team_id'], unique=False)

    op.create_table('generated_examples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('source_example', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('messages', JSON, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('edited', sa.Boolean(), nullable=False),
    sa.Column('tokens', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['augmentation_jobs.id'], name=op.f('fk_generated_examples_job_id_augmentation_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_generated_examples_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_generated_examples')),
    sa.UniqueConstraint('job_id', 'source_example', 'kind', name=op.f('uq_generated_examples_job_id'))
    )
    with op.batch_alter_table('generated_examples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_generated_examples_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_generated_examples_team_id'), ['team_id'], unique=False)

    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cleaning', JSON, nullable=True))
        batch_op.add_column(sa.Column('origin', JSON, nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('origin')
        batch_op.drop_column('cleaning')

    with op.batch_alter_table('generated_examples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_generated_examples_team_id'))
        batch_op.drop_index(batch_op.f('ix_generated_examples_job_id'))

    op.drop_table('generated_examples')
    with op.batch_alter_table('augmentation_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_augmentation_jobs_team_id'))
        batch_op.drop_index(batch_op.f('ix_augmentation_jobs_dataset_id'))

    op.drop_table('augmentation_jobs')
