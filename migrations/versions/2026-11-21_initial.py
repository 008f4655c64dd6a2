"""Initial schema: scheduled events, call attempts, webhook receipts, idempotency keys.

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 02:31:37.821368
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idempotency_keys',
    sa.Column('scope', sa.String(length=255), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=False),
    sa.Column('response_body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('scheduled_events',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('assistant_id', sa.String(length=255), nullable=False),
    sa.Column('telnyx_conversation_channel', sa.String(length=16), nullable=False),
    sa.Column('telnyx_end_user_target', sa.String(length=255), nullable=False),
    sa.Column('telnyx_agent_target', sa.String(length=255), nullable=False),
    sa.Column('scheduled_at_fixed_datetime', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('call_status', sa.String(length=32), nullable=True),
    sa.Column('call_duration', sa.Integer(), nullable=True),
    sa.Column('conversation_id', sa.String(length=255), nullable=True),
    sa.Column('conversation_metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('dynamic_variables', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('call_settings', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('errors', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('max_retries_client_errors', sa.Integer(), nullable=False),
    sa.Column('retry_interval_secs', sa.Integer(), nullable=True),
    sa.Column('retry_count', sa.Integer(), nullable=False),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('campaign_id', sa.UUID(), nullable=True),
    sa.Column('ruleset', sa.String(length=64), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('timezone_candidates', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('connection_id', sa.String(length=255), nullable=True),
    sa.Column('deferred_reason', sa.Text(), nullable=True),
    sa.Column('deferred_until', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'in_progress', 'completed', 'failed', 'canceled')", name=op.f('ck_scheduled_events_status')),
    sa.CheckConstraint("telnyx_conversation_channel IN ('phone_call', 'sms_chat')", name=op.f('ck_scheduled_events_channel')),
    sa.CheckConstraint('retry_count >= 0 AND retry_count <= max_retries_client_errors', name=op.f('ck_scheduled_events_retry_budget')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_events'))
    )
    op.create_index('ix_scheduled_events_assistant_scheduled', 'scheduled_events', ['assistant_id', 'scheduled_at_fixed_datetime'], unique=False)
    op.create_index('ix_scheduled_events_campaign_id', 'scheduled_events', ['campaign_id'], unique=False)
    op.create_index('ix_scheduled_events_due_pending', 'scheduled_events', ['scheduled_at_fixed_datetime'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_index('ix_scheduled_events_end_user_target', 'scheduled_events', ['telnyx_end_user_target'], unique=False)
    op.create_index('ix_scheduled_events_lease_in_progress', 'scheduled_events', ['lease_expires_at'], unique=False, postgresql_where=sa.text("status = 'in_progress'"))
    op.create_table('webhook_receipts',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('provider_key', sa.String(length=512), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempt_id', sa.UUID(), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('result', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_receipts')),
    sa.UniqueConstraint('provider_key', name=op.f('uq_webhook_receipts_provider_key'))
    )
    op.create_table('call_attempts',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('attempt_number', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('provider_id', sa.String(length=255), nullable=True),
    sa.Column('last_status', sa.String(length=32), nullable=True),
    sa.Column('last_sequence', sa.Integer(), nullable=True),
    sa.Column('answered', sa.Boolean(), nullable=False),
    sa.Column('call_status', sa.String(length=32), nullable=True),
    sa.Column('call_duration', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("state IN ('claimed', 'sending', 'sent', 'unknown', 'finished')", name=op.f('ck_call_attempts_state')),
    sa.ForeignKeyConstraint(['event_id'], ['scheduled_events.id'], name=op.f('fk_call_attempts_event_id_scheduled_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_attempts')),
    sa.UniqueConstraint('event_id', 'attempt_number', name=op.f('uq_call_attempts_event_id_attempt_number'))
    )
    op.create_index('ix_call_attempts_provider_id', 'call_attempts', ['provider_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_call_attempts_provider_id', table_name='call_attempts')
    op.drop_table('call_attempts')
    op.drop_table('webhook_receipts')
    op.drop_index('ix_scheduled_events_lease_in_progress', table_name='scheduled_events', postgresql_where=sa.text("status = 'in_progress'"))
    op.drop_index('ix_scheduled_events_end_user_target', table_name='scheduled_events')
    op.drop_index('ix_scheduled_events_due_pending', table_name='scheduled_events', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('ix_scheduled_events_campaign_id', table_name='scheduled_events')
    op.drop_index('ix_scheduled_events_assistant_scheduled', table_name='scheduled_events')
    op.drop_table('scheduled_events')
    op.drop_table('idempotency_keys')
