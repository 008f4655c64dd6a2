"""Calling windows: the do-not-contact list, per-recipient attempt history for frequency caps, campaign caps
and custom weekly windows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 03:01:32.246812
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('suppressions',
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("reason IN ('manual', 'file', 'sms_opt_out', 'provider_block')", name=op.f('ck_suppressions_reason')),
    sa.PrimaryKeyConstraint('phone', name=op.f('pk_suppressions'))
    )
    op.add_column('call_attempts', sa.Column('recipient', sa.String(length=255), nullable=True))
    op.execute(
        "UPDATE call_attempts a SET recipient = e.telnyx_end_user_target FROM scheduled_events e WHERE e.id = a.event_id"
    )
    op.create_index('ix_call_attempts_recipient_claimed', 'call_attempts', ['recipient', 'claimed_at'], unique=False)
    op.add_column('campaigns', sa.Column('cap_max_attempts', sa.Integer(), nullable=True))
    op.add_column('campaigns', sa.Column('cap_window_secs', sa.Integer(), nullable=True))
    op.add_column('campaigns', sa.Column('custom_windows', postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column('campaigns', 'custom_windows')
    op.drop_column('campaigns', 'cap_window_secs')
    op.drop_column('campaigns', 'cap_max_attempts')
    op.drop_index('ix_call_attempts_recipient_claimed', table_name='call_attempts')
    op.drop_column('call_attempts', 'recipient')
    op.drop_table('suppressions')
