"""orders: expires_at and the admission fields (EXPIRED orders, visible rate deferral)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Orders stored before this revision keep NULLs: the worker and the reconciler read a missing
    # expires_at as accepted_at + ORDER_MAX_QUEUE_S (app.orders.admission.expiry_of).
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expire_after_s', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('send_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_orders_account_id_status', ['account_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_account_id_status')
        batch_op.drop_column('send_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('expire_after_s')
