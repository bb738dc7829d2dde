"""signed-in sessions of the portal and the console, revocable

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keydir.models

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('created_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id_hash')
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_web_sessions_account', ['kind', 'account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_web_sessions_account')
    op.drop_table('web_sessions')
