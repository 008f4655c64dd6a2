"""Soft delete of scheduled events: ``DELETE`` on ``/v2`` sets ``deleted_at`` instead of answering 409.

Telnyx removes a deleted event, so it must leave the Telnyx-compatible API; its row and attempts stay for the
campaign's export and the metrics. Events deleted before this revision were marked ``canceled`` (pending) or
``cancel_requested`` (in progress); an event without a campaign gets either only through ``DELETE``, so those
are marked deleted at their last update. No index: every ``/v2`` query already narrows by assistant or id, and
the filter on ``deleted_at`` only drops rows from that.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('scheduled_events', sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE scheduled_events SET deleted_at = updated_at "
        "WHERE campaign_id IS NULL AND (status = 'canceled' OR cancel_requested)"
    )


def downgrade() -> None:
    op.drop_column('scheduled_events', 'deleted_at')
