"""account_limits: each account's risk limits

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00

A table of its own: an account without a row has no limits, as before.
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_limits',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('max_lots_per_order', sa.JSON(), nullable=True),
    sa.Column('max_order_value', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('max_open_orders', sa.Integer(), nullable=True),
    sa.Column('max_daily_loss', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('on_breach', sa.String(length=8), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_limits_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_account_limits'))
    )


def downgrade() -> None:
    op.drop_table('account_limits')
