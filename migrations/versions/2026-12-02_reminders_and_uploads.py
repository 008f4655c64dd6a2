"""One event per reminder, late rows, the re-upload guard (issue 18 items 5-7).

- ``scheduled_events.dedupe_key``: the values of the campaign's ``dedupe_key`` columns (``''``: the phone alone,
  every event before this revision and every ``/v2`` event). The unique index becomes (campaign, recipient,
  dedupe key), so that a phone may have several reminders in one campaign when the key differs.
- ``campaigns.rows_late_sent`` / ``rows_late_skipped``: rows whose time had passed at import, by what
  ``late_policy`` did with them.
- ``campaigns.upload_sha256`` / ``upload_keys_sha256``: the file's hash and the hash of its sorted (phone, dedupe
  key) set, looked up (indexed) when another file is uploaded.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column('scheduled_events', sa.Column('dedupe_key', sa.Text(), server_default='', nullable=False))
    op.create_index('uq_scheduled_events_campaign_reminder', 'scheduled_events',
                    ['campaign_id', 'telnyx_end_user_target', 'dedupe_key'], unique=True,
                    postgresql_where=sa.text('campaign_id IS NOT NULL'))
    op.drop_index('uq_scheduled_events_campaign_recipient', table_name='scheduled_events',
                  postgresql_where=sa.text('campaign_id IS NOT NULL'))
    op.add_column('campaigns', sa.Column('rows_late_sent', sa.Integer(), server_default='0', nullable=False))
    op.add_column('campaigns', sa.Column('rows_late_skipped', sa.Integer(), server_default='0', nullable=False))
    op.add_column('campaigns', sa.Column('upload_sha256', sa.String(length=64), nullable=True))
    op.add_column('campaigns', sa.Column('upload_keys_sha256', sa.String(length=64), nullable=True))
    op.create_index(op.f('ix_campaigns_upload_sha256'), 'campaigns', ['upload_sha256'], unique=False)
    op.create_index(op.f('ix_campaigns_upload_keys_sha256'), 'campaigns', ['upload_keys_sha256'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_campaigns_upload_keys_sha256'), table_name='campaigns')
    op.drop_index(op.f('ix_campaigns_upload_sha256'), table_name='campaigns')
    op.drop_column('campaigns', 'upload_keys_sha256')
    op.drop_column('campaigns', 'upload_sha256')
    op.drop_column('campaigns', 'rows_late_skipped')
    op.drop_column('campaigns', 'rows_late_sent')
    # Refused while a campaign has two reminders for one number: the old index cannot hold them.
    op.create_index('uq_scheduled_events_campaign_recipient', 'scheduled_events',
                    ['campaign_id', 'telnyx_end_user_target'], unique=True,
                    postgresql_where=sa.text('campaign_id IS NOT NULL'))
    op.drop_index('uq_scheduled_events_campaign_reminder', table_name='scheduled_events',
                  postgresql_where=sa.text('campaign_id IS NOT NULL'))
    op.drop_column('scheduled_events', 'dedupe_key')
