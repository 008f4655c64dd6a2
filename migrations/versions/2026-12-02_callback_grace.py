"""Calls the provider reports over keep waiting for their terminal status (issue #21: the callback grace):
``call_attempts.provider_ended_at`` records when a status query first said so. ``NULL``: never asked, or the
terminal status arrived first (every attempt stored before this revision).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('call_attempts', sa.Column('provider_ended_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('call_attempts', 'provider_ended_at')
