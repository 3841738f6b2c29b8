"""accounts: the egress of their broker requests (a local source address or a proxy URL)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both nullable: existing accounts keep the default route.
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('egress_source_address', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('egress_proxy_enc', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('egress_proxy_enc')
        batch_op.drop_column('egress_source_address')
