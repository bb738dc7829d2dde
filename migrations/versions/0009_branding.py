"""branding: one white-label profile per tenant or reseller

The portal policy's brand_name and brand_color move into brand_profiles (copied over,
then dropped), so a brand is kept in one place only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import keydir.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

NEUTRAL_COLOR = '#1f4e79'


def upgrade() -> None:
    profiles = op.create_table('brand_profiles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('reseller_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('color', sa.String(length=7), nullable=False),
    sa.Column('text_color', sa.String(length=7), nullable=False),
    sa.Column('logo', sa.LargeBinary(), nullable=True),
    sa.Column('logo_type', sa.String(length=20), nullable=False),
    sa.Column('logo_version', sa.Integer(), nullable=False),
    sa.Column('portal_host', sa.String(length=253), nullable=True),
    sa.Column('notice_intros', sa.JSON(), nullable=False),
    sa.Column('updated_at', keydir.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('(tenant_id IS NULL) <> (reseller_id IS NULL)',
                       name='ck_brand_profiles_one_owner'),
    sa.ForeignKeyConstraint(['reseller_id'], ['resellers.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('portal_host'),
    sa.UniqueConstraint('reseller_id'),
    sa.UniqueConstraint('tenant_id')
    )
    connection = op.get_bind()
    policies = sa.table('portal_policies', sa.column('tenant_id', sa.Integer()),
                        sa.column('brand_name', sa.String()),
                        sa.column('brand_color', sa.String()))
    now = datetime.now(UTC)
    rows = []
    for tenant_id, name, color in connection.execute(
            sa.select(policies.c.tenant_id, policies.c.brand_name, policies.c.brand_color)):
        # The old default colour was "no colour of its own": it stays inheritable.
        color = (color or '').strip().lower()
        color = color if len(color) == 7 and color != NEUTRAL_COLOR else ''
        if name or color:
            rows.append({'tenant_id': tenant_id, 'reseller_id': None, 'name': name or '',
                         'color': color, 'text_color': '', 'logo': None, 'logo_type': '',
                         'logo_version': 0, 'portal_host': None, 'notice_intros': {},
                         'updated_at': now})
    if rows:
        op.bulk_insert(profiles, rows)
    with op.batch_alter_table('portal_policies', schema=None) as batch_op:
        batch_op.drop_column('brand_color')
        batch_op.drop_column('brand_name')


def downgrade() -> None:
    with op.batch_alter_table('portal_policies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('brand_name', sa.String(length=200), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('brand_color', sa.String(length=20), nullable=False,
                                      server_default=NEUTRAL_COLOR))
    connection = op.get_bind()
    profiles = sa.table('brand_profiles', sa.column('tenant_id', sa.Integer()),
                        sa.column('name', sa.String()), sa.column('color', sa.String()))
    policies = sa.table('portal_policies', sa.column('tenant_id', sa.Integer()),
                        sa.column('brand_name', sa.String()),
                        sa.column('brand_color', sa.String()))
    for tenant_id, name, color in connection.execute(
            sa.select(profiles.c.tenant_id, profiles.c.name, profiles.c.color)
            .where(profiles.c.tenant_id.is_not(None))):
        connection.execute(policies.update().where(policies.c.tenant_id == tenant_id)
                           .values(brand_name=name or '', brand_color=color or NEUTRAL_COLOR))
    op.drop_table('brand_profiles')
