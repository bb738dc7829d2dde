"""DKIM keys per mail domain

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keydir.models

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dkim_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.Column('selector', sa.String(length=63), nullable=False),
    sa.Column('sealed_key', sa.LargeBinary(), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain_id', 'selector', name='uq_dkim_selector')
    )


def downgrade() -> None:
    op.drop_table('dkim_keys')
