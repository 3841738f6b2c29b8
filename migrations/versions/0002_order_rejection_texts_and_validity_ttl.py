"""orders: the broker's raw rejection text, and the minutes of a TTL order

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both nullable: existing orders have neither (no raw text was kept, no TTL was accepted).
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_message_raw', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('validity_ttl', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('validity_ttl')
        batch_op.drop_column('status_message_raw')
