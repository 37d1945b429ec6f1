"""costs: a team's prices per device type and its return-on-investment inputs

`team_cost_settings`: one row per team (prices per device-hour by device type, the currency, what
the team pays today per request, its monthly volume, tokens per answer and the serving device).

Revision ID: 0008_costs
Revises: 0007_notifications
Create Date: 2026-12-06 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

revision = '0008_costs'
down_revision = '0007_notifications'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('team_cost_settings',
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('prices', JSON, nullable=False),
    sa.Column('api_price_per_request', sa.Float(), nullable=True),
    sa.Column('monthly_requests', sa.Integer(), nullable=True),
    sa.Column('tokens_per_answer', sa.Integer(), nullable=True),
    sa.Column('serving_device', sa.String(length=32), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_cost_settings_team_id_teams'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_team_cost_settings_updated_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('team_id', name=op.f('pk_team_cost_settings'))
    )


def downgrade() -> None:
    op.drop_table('team_cost_settings')
