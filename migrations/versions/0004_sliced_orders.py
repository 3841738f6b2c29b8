"""sliced orders: a parent order and its slices (orders above the freeze quantity)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:00:00

Columns only, nothing rewritten: existing orders are neither parents nor slices.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('slice_index', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key('orders_parent_id_fkey', 'orders', ['parent_id'], ['id'])
        batch_op.create_index('orders_parent_id_index', ['parent_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('orders_parent_id_index')
        batch_op.drop_constraint('orders_parent_id_fkey', type_='foreignkey')
        batch_op.drop_column('cancel_requested_at')
        batch_op.drop_column('slice_index')
        batch_op.drop_column('parent_id')
