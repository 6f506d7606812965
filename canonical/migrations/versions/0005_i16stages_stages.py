"""quotes, contracts and deliveries (+ their lines)

Revision ID: 0005_i16stages_stages
Revises: 0004_i13_locks
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import canonical.tables

revision = "0005_i16stages_stages"
down_revision = "0005_i11eng_refs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('contract',
    sa.Column('id', sa.String(length=400), nullable=False),
    sa.Column('source_system', sa.String(length=255), nullable=False),
    sa.Column('source_object', sa.String(length=255), nullable=False),
    sa.Column('source_id', sa.String(length=255), nullable=False),
    sa.Column('source_updated_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('raw_id', sa.BigInteger(), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('number', sa.String(length=400), nullable=True),
    sa.Column('account_id', sa.String(length=400), nullable=True),
    sa.Column('deal_id', sa.String(length=400), nullable=True),
    sa.Column('deal_ref', sa.String(length=400), nullable=True),
    sa.Column('status', sa.String(length=400), nullable=True),
    sa.Column('source_status', sa.String(length=400), nullable=True),
    sa.Column('start_date', sa.Date(), nullable=True),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('signed_date', sa.Date(), nullable=True),
    sa.Column('currency', sa.String(length=400), nullable=True),
    sa.Column('value', canonical.tables.Amount(), nullable=True),
    sa.Column('owner', sa.String(length=400), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contract')),
    sa.UniqueConstraint('source_system', 'source_object', 'source_id', name=op.f('uq_contract_source_system_source_object_source_id'))
    )
    with op.batch_alter_table('contract', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contract_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contract_deal_id'), ['deal_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contract_deal_ref'), ['deal_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_contract_number'), ['number'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.String(length=400), nullable=False),
    sa.Column('source_system', sa.String(length=255), nullable=False),
    sa.Column('source_object', sa.String(length=255), nullable=False),
    sa.Column('source_id', sa.String(length=255), nullable=False),
    sa.Column('source_updated_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('raw_id', sa.BigInteger(), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('number', sa.String(length=400), nullable=True),
    sa.Column('account_id', sa.String(length=400), nullable=True),
    sa.Column('order_id', sa.String(length=400), nullable=True),
    sa.Column('order_ref', sa.String(length=400), nullable=True),
    sa.Column('state', sa.String(length=400), nullable=True),
    sa.Column('source_state', sa.String(length=400), nullable=True),
    sa.Column('planned_date', sa.Date(), nullable=True),
    sa.Column('shipped_date', sa.Date(), nullable=True),
    sa.Column('delivered_date', sa.Date(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery')),
    sa.UniqueConstraint('source_system', 'source_object', 'source_id', name=op.f('uq_delivery_source_system_source_object_source_id'))
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_number'), ['number'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_order_ref'), ['order_ref'], unique=False)

    op.create_table('delivery_line',
    sa.Column('id', sa.String(length=400), nullable=False),
    sa.Column('source_system', sa.String(length=255), nullable=False),
    sa.Column('source_object', sa.String(length=255), nullable=False),
    sa.Column('source_id', sa.String(length=255), nullable=False),
    sa.Column('source_updated_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('raw_id', sa.BigInteger(), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('delivery_id', sa.String(length=400), nullable=True),
    sa.Column('order_line_id', sa.String(length=400), nullable=True),
    sa.Column('product_code', sa.String(length=400), nullable=True),
    sa.Column('product_name', sa.String(length=400), nullable=True),
    sa.Column('quantity', canonical.tables.Amount(), nullable=True),
    sa.Column('state', sa.String(length=400), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_line')),
    sa.UniqueConstraint('source_system', 'source_object', 'source_id', name=op.f('uq_delivery_line_source_system_source_object_source_id'))
    )
    with op.batch_alter_table('delivery_line', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_line_delivery_id'), ['delivery_id'], unique=False)

    op.create_table('quote',
    sa.Column('id', sa.String(length=400), nullable=False),
    sa.Column('source_system', sa.String(length=255), nullable=False),
    sa.Column('source_object', sa.String(length=255), nullable=False),
    sa.Column('source_id', sa.String(length=255), nullable=False),
    sa.Column('source_updated_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('raw_id', sa.BigInteger(), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('number', sa.String(length=400), nullable=True),
    sa.Column('name', sa.String(length=400), nullable=True),
    sa.Column('account_id', sa.String(length=400), nullable=True),
    sa.Column('deal_id', sa.String(length=400), nullable=True),
    sa.Column('deal_ref', sa.String(length=400), nullable=True),
    sa.Column('status', sa.String(length=400), nullable=True),
    sa.Column('source_status', sa.String(length=400), nullable=True),
    sa.Column('quote_date', sa.Date(), nullable=True),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('currency', sa.String(length=400), nullable=True),
    sa.Column('untaxed', canonical.tables.Amount(), nullable=True),
    sa.Column('tax', canonical.tables.Amount(), nullable=True),
    sa.Column('total', canonical.tables.Amount(), nullable=True),
    sa.Column('owner', sa.String(length=400), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quote')),
    sa.UniqueConstraint('source_system', 'source_object', 'source_id', name=op.f('uq_quote_source_system_source_object_source_id'))
    )
    with op.batch_alter_table('quote', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quote_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_quote_deal_id'), ['deal_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_quote_deal_ref'), ['deal_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_quote_number'), ['number'], unique=False)

    op.create_table('quote_line',
    sa.Column('id', sa.String(length=400), nullable=False),
    sa.Column('source_system', sa.String(length=255), nullable=False),
    sa.Column('source_object', sa.String(length=255), nullable=False),
    sa.Column('source_id', sa.String(length=255), nullable=False),
    sa.Column('source_updated_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', canonical.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('raw_id', sa.BigInteger(), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('quote_id', sa.String(length=400), nullable=True),
    sa.Column('product_code', sa.String(length=400), nullable=True),
    sa.Column('product_name', sa.String(length=400), nullable=True),
    sa.Column('quantity', canonical.tables.Amount(), nullable=True),
    sa.Column('currency', sa.String(length=400), nullable=True),
    sa.Column('unit_price', canonical.tables.Amount(), nullable=True),
    sa.Column('discount', canonical.tables.Amount(), nullable=True),
    sa.Column('amount', canonical.tables.Amount(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quote_line')),
    sa.UniqueConstraint('source_system', 'source_object', 'source_id', name=op.f('uq_quote_line_source_system_source_object_source_id'))
    )
    with op.batch_alter_table('quote_line', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quote_line_quote_id'), ['quote_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('quote_line', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quote_line_quote_id'))

    op.drop_table('quote_line')
    with op.batch_alter_table('quote', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quote_number'))
        batch_op.drop_index(batch_op.f('ix_quote_deal_ref'))
        batch_op.drop_index(batch_op.f('ix_quote_deal_id'))
        batch_op.drop_index(batch_op.f('ix_quote_account_id'))

    op.drop_table('quote')
    with op.batch_alter_table('delivery_line', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_line_delivery_id'))

    op.drop_table('delivery_line')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_order_ref'))
        batch_op.drop_index(batch_op.f('ix_delivery_order_id'))
        batch_op.drop_index(batch_op.f('ix_delivery_number'))
        batch_op.drop_index(batch_op.f('ix_delivery_account_id'))

    op.drop_table('delivery')
    with op.batch_alter_table('contract', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contract_number'))
        batch_op.drop_index(batch_op.f('ix_contract_deal_ref'))
        batch_op.drop_index(batch_op.f('ix_contract_deal_id'))
        batch_op.drop_index(batch_op.f('ix_contract_account_id'))

    op.drop_table('contract')
