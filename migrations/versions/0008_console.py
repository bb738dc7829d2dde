"""console: administrator sessions and second factor, long operations, queue by date

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keydir.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite does it in place): a batch rebuild of admin_accounts is not
    # needed for nullable or defaulted columns.
    op.add_column('admin_accounts', sa.Column('session_epoch', sa.Integer(), nullable=False,
                                              server_default='0'))
    op.add_column('admin_accounts', sa.Column('totp_last_step', sa.Integer(), nullable=True))
    op.create_table('bulk_operations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('succeeded', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=320), nullable=False),
    sa.Column('created_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('bulk_operations', schema=None) as batch_op:
        batch_op.create_index('ix_bulk_operations_state', ['state'], unique=False)
    # The message log and the overview search the queue by date.
    op.create_index('ix_queue_created', 'queue', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_queue_created', table_name='queue')
    with op.batch_alter_table('bulk_operations', schema=None) as batch_op:
        batch_op.drop_index('ix_bulk_operations_state')
    op.drop_table('bulk_operations')
    with op.batch_alter_table('admin_accounts', schema=None) as batch_op:
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('session_epoch')
