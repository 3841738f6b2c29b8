"""accounts: halted state; kill_switches (one kill-switch operation per row, its steps)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00

Existing accounts are not halted; existing orders belong to no kill switch.
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kill_switches',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('holder', sa.String(length=128), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_kill_switches_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kill_switches')),
    sa.UniqueConstraint('account_id', 'idempotency_key', name='uq_kill_switches_account_id_idempotency_key')
    )
    with op.batch_alter_table('kill_switches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kill_switches_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_kill_switches_status'), ['status'], unique=False)

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('halted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('halted_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('halted_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('halted_kill_switch_id', sa.String(length=32), nullable=True))

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kill_switch_id', sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_orders_kill_switch_id_kill_switches'), 'kill_switches',
                                    ['kill_switch_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_orders_kill_switch_id'), ['kill_switch_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_kill_switch_id'))
        batch_op.drop_constraint(batch_op.f('fk_orders_kill_switch_id_kill_switches'), type_='foreignkey')
        batch_op.drop_column('kill_switch_id')

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('halted_kill_switch_id')
        batch_op.drop_column('halted_by')
        batch_op.drop_column('halted_reason')
        batch_op.drop_column('halted_at')

    with op.batch_alter_table('kill_switches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_kill_switches_status'))
        batch_op.drop_index(batch_op.f('ix_kill_switches_account_id'))

    op.drop_table('kill_switches')
