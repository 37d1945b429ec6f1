"""the fleet: a worker says how many devices it drives, a run which of them it holds

`workers.device_count` (1 for the rows already there: every worker so far drove one device) and
`runs.device_ids` (the worker's device ids a running run holds, chosen by the claim; empty for
runs claimed before this revision, which held one device).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device_count', sa.Integer(), server_default='1', nullable=False))

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                                                           'postgresql'), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('device_ids')

    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('device_count')
