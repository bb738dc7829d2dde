"""directory import: a tenant's Microsoft Graph source, primary addresses of directory entries

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keydir.models

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('directory_sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('entra_tenant_id', sa.String(length=200), nullable=False),
    sa.Column('client_id', sa.String(length=200), nullable=False),
    sa.Column('client_secret_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('graph_url', sa.String(length=300), nullable=False),
    sa.Column('authority_url', sa.String(length=300), nullable=False),
    sa.Column('created_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_result', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'kind', name='uq_directory_source')
    )
    # Not with batch_alter_table: SQLite adds a column with a default in place, and entries
    # from before this revision were all one address per person.
    op.add_column('directory_entries', sa.Column('is_primary', sa.Boolean(), nullable=False,
                                                 server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('directory_entries', schema=None) as batch_op:
        batch_op.drop_column('is_primary')
    op.drop_table('directory_sources')
