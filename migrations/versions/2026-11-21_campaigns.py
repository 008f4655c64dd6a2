"""Campaigns: call lists, import issues, uploaded files; events know their campaign and source row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 02:35:18.142890
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaigns',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('assistant_id', sa.String(length=255), nullable=False),
    sa.Column('telnyx_conversation_channel', sa.String(length=16), nullable=False),
    sa.Column('telnyx_agent_target', sa.String(length=255), nullable=False),
    sa.Column('connection_id', sa.String(length=255), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('max_retries_client_errors', sa.Integer(), nullable=False),
    sa.Column('retry_interval_secs', sa.Integer(), nullable=True),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('default_region', sa.String(length=8), nullable=True),
    sa.Column('ruleset', sa.String(length=64), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('max_concurrent_calls', sa.Integer(), nullable=True),
    sa.Column('max_dispatches_per_second', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('columns', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('import_status', sa.String(length=16), nullable=False),
    sa.Column('import_error', sa.Text(), nullable=True),
    sa.Column('rows_total', sa.Integer(), nullable=False),
    sa.Column('rows_accepted', sa.Integer(), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), nullable=False),
    sa.Column('rows_duplicate', sa.Integer(), nullable=False),
    sa.Column('rows_suppressed', sa.Integer(), nullable=False),
    sa.CheckConstraint("import_status IN ('pending', 'running', 'completed', 'failed')", name=op.f('ck_campaigns_import_status')),
    sa.CheckConstraint("status IN ('active', 'paused', 'canceled', 'completed')", name=op.f('ck_campaigns_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns'))
    )
    op.create_table('import_issues',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.UUID(), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('column', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_import_issues_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_issues'))
    )
    op.create_index('ix_import_issues_campaign_row', 'import_issues', ['campaign_id', 'row_number'], unique=False)
    op.create_table('upload_chunks',
    sa.Column('campaign_id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_upload_chunks_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'seq', name=op.f('pk_upload_chunks'))
    )
    op.add_column('scheduled_events', sa.Column('source_row', sa.Integer(), nullable=True))
    op.add_column('scheduled_events', sa.Column('state', sa.String(length=8), nullable=True))
    op.drop_index(op.f('ix_scheduled_events_campaign_id'), table_name='scheduled_events')
    op.create_index('ix_scheduled_events_campaign_status', 'scheduled_events', ['campaign_id', 'status'], unique=False)
    op.create_index('uq_scheduled_events_campaign_recipient', 'scheduled_events', ['campaign_id', 'telnyx_end_user_target'], unique=True, postgresql_where=sa.text('campaign_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('uq_scheduled_events_campaign_recipient', table_name='scheduled_events', postgresql_where=sa.text('campaign_id IS NOT NULL'))
    op.drop_index('ix_scheduled_events_campaign_status', table_name='scheduled_events')
    op.create_index(op.f('ix_scheduled_events_campaign_id'), 'scheduled_events', ['campaign_id'], unique=False)
    op.drop_column('scheduled_events', 'state')
    op.drop_column('scheduled_events', 'source_row')
    op.drop_table('upload_chunks')
    op.drop_index('ix_import_issues_campaign_row', table_name='import_issues')
    op.drop_table('import_issues')
    op.drop_table('campaigns')
