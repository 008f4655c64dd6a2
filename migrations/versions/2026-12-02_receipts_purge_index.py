"""The retention purge finds the receipts whose bodies are due for erasure through an index (``received_at``,
only rows whose body is still stored), not a scan of every receipt ever stored for each batch of 5,000.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_webhook_receipts_unpurged',
        'webhook_receipts',
        ['received_at'],
        postgresql_where=sa.text('length(body) > 0'),
    )


def downgrade() -> None:
    op.drop_index('ix_webhook_receipts_unpurged', table_name='webhook_receipts')
