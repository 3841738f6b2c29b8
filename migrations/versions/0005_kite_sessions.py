"""Kite sessions: each account's session state, login time, expected and observed expiry

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 02:00:00

Columns only: an account with a token counts as logged in until the broker says otherwise.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('session_login_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('session_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('session_expired_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('session_error', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('session_error')
        batch_op.drop_column('session_expired_at')
        batch_op.drop_column('session_expires_at')
        batch_op.drop_column('session_login_at')
        batch_op.drop_column('session_status')
