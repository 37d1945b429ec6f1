"""playground: saved transcripts of side-by-side chats

`playground_transcripts`: a team's saved playground conversations (up to three models, their
own answers per turn), shared within the team and turned into A/B tests or dataset rows.

Revision ID: 0009_playground
Revises: 0008_costs
Create Date: 2026-12-06 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

revision = '0009_playground'
down_revision = '0008_costs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('playground_transcripts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('system', sa.Text(), nullable=True),
    sa.Column('temperature', sa.Float(), nullable=False),
    sa.Column('max_tokens', sa.Integer(), nullable=False),
    sa.Column('models', JSON, nullable=False),
    sa.Column('turns', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_playground_transcripts_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_playground_transcripts_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_playground_transcripts'))
    )
    with op.batch_alter_table('playground_transcripts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_playground_transcripts_team_id'), ['team_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('playground_transcripts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_playground_transcripts_team_id'))
    op.drop_table('playground_transcripts')
