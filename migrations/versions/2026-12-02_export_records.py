"""The export that updates records: the upload's row as written, and when each call was answered.

``scheduled_events.source_values``: the uploaded row, header as written → value as written, every column
(the phone too), so that the results export joins back to the file the operator uploaded. Null for events
created over the Telnyx-compatible API (they have no row) and for events imported before this revision.
``call_attempts.answered_at``: when the provider said the call was answered (TeXML ``in-progress``, Call
Control ``call.answered``); null when it never was, or before this revision.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('scheduled_events', sa.Column('source_values', postgresql.JSONB(), nullable=True))
    op.add_column('call_attempts', sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('call_attempts', 'answered_at')
    op.drop_column('scheduled_events', 'source_values')
