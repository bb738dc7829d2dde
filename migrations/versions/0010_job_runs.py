"""periodic job runs, once per interval across all nodes

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keydir.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('started_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('node', sa.String(length=100), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('job_runs')
