"""administrators and API tokens

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keydir.models

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('admin_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('totp_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('address')
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('created_by', sa.String(length=320), nullable=False),
    sa.Column('created_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', keydir.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )


def downgrade() -> None:
    op.drop_table('api_tokens')
    op.drop_table('admin_accounts')
