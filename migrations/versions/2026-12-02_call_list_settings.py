"""How a campaign reads its call list: ``campaigns.call_list`` (JSONB) holds the ``mapping``, the ``variables``
allow-list, ``drop_columns`` and ``date_order`` of the campaign settings (issue 18).

One JSONB column rather than one per setting: they are read together, only when the file is loaded (a background
import reads them back), and never queried. Existing campaigns keep ``NULL``: their files were read by
normalized headers, every variable sent, which is what ``NULL`` means.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('campaigns', sa.Column('call_list', postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column('campaigns', 'call_list')
