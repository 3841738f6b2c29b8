"""webhooks: legacy_secret_header (send the raw secret in X-Webhook-Secret, as before)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

Existing webhooks get false: deliveries are signed only from now on. A receiver that still
compares X-Webhook-Secret (the old ticker service's guide) needs its webhook registered again
with the flag.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('legacy_secret_header', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_column('legacy_secret_header')
