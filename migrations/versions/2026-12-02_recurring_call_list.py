"""Recurring definitions keep their call-list settings: ``mapping``, ``variables``, ``drop_columns``,
``date_order`` (issue #18 item 1), applied to every campaign their runs create. ``NULL``: none set (every
definition stored before this revision).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('recurring_definitions', sa.Column('call_list', postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column('recurring_definitions', 'call_list')
