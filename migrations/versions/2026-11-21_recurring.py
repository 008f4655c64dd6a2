"""Recurring reminder campaigns: definitions, runs (unique per definition and tick), the source files each
definition has read, the reminders it has scheduled (unique per dedupe key), and the campaign → run link.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 03:03:05.529980
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recurring_definitions',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('cron', sa.String(length=255), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('due', sa.String(length=255), nullable=False),
    sa.Column('dedupe_key', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('campaign', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('origin_path', sa.Text(), nullable=True),
    sa.Column('spec_hash', sa.String(length=64), nullable=False),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("origin IN ('file', 'api')", name=op.f('ck_recurring_definitions_origin')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recurring_definitions')),
    sa.UniqueConstraint('name', name=op.f('uq_recurring_definitions_name'))
    )
    op.create_index('ix_recurring_definitions_next_run_at', 'recurring_definitions', ['next_run_at'], unique=False, postgresql_where=sa.text('enabled'))
    op.create_table('recurring_runs',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('definition_id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('tick_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('missed_ticks', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('files', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('rows_total', sa.Integer(), nullable=False),
    sa.Column('rows_created', sa.Integer(), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), nullable=False),
    sa.Column('rows_past', sa.Integer(), nullable=False),
    sa.Column('rows_duplicate', sa.Integer(), nullable=False),
    sa.Column('rows_suppressed', sa.Integer(), nullable=False),
    sa.CheckConstraint("(kind = 'manual') = (tick_at IS NULL)", name=op.f('ck_recurring_runs_tick')),
    sa.CheckConstraint("kind IN ('scheduled', 'catch_up', 'manual')", name=op.f('ck_recurring_runs_kind')),
    sa.CheckConstraint("status IN ('completed', 'no_new_file', 'failed')", name=op.f('ck_recurring_runs_status')),
    sa.ForeignKeyConstraint(['definition_id'], ['recurring_definitions.id'], name=op.f('fk_recurring_runs_definition_id_recurring_definitions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recurring_runs')),
    sa.UniqueConstraint('definition_id', 'tick_at', name=op.f('uq_recurring_runs_definition_id_tick_at'))
    )
    op.create_index('ix_recurring_runs_definition_started', 'recurring_runs', ['definition_id', 'started_at'], unique=False)
    op.create_table('recurring_files',
    sa.Column('definition_id', sa.UUID(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.UUID(), nullable=False),
    sa.Column('campaign_id', sa.UUID(), nullable=True),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['definition_id'], ['recurring_definitions.id'], name=op.f('fk_recurring_files_definition_id_recurring_definitions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['recurring_runs.id'], name=op.f('fk_recurring_files_run_id_recurring_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('definition_id', 'sha256', name=op.f('pk_recurring_files'))
    )
    op.create_index(op.f('ix_recurring_files_run_id'), 'recurring_files', ['run_id'], unique=False)
    op.create_table('recurring_reminders',
    sa.Column('definition_id', sa.UUID(), nullable=False),
    sa.Column('dedupe_key', sa.Text(), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('run_id', sa.UUID(), nullable=False),
    sa.Column('campaign_id', sa.UUID(), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['definition_id'], ['recurring_definitions.id'], name=op.f('fk_recurring_reminders_definition_id_recurring_definitions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['recurring_runs.id'], name=op.f('fk_recurring_reminders_run_id_recurring_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('definition_id', 'dedupe_key', name=op.f('pk_recurring_reminders'))
    )
    op.create_index(op.f('ix_recurring_reminders_run_id'), 'recurring_reminders', ['run_id'], unique=False)
    op.add_column('campaigns', sa.Column('recurring_run_id', sa.UUID(), nullable=True))
    op.create_index(op.f('ix_campaigns_recurring_run_id'), 'campaigns', ['recurring_run_id'], unique=False)
    op.create_foreign_key(op.f('fk_campaigns_recurring_run_id_recurring_runs'), 'campaigns', 'recurring_runs', ['recurring_run_id'], ['id'])


def downgrade() -> None:
    op.drop_constraint(op.f('fk_campaigns_recurring_run_id_recurring_runs'), 'campaigns', type_='foreignkey')
    op.drop_index(op.f('ix_campaigns_recurring_run_id'), table_name='campaigns')
    op.drop_column('campaigns', 'recurring_run_id')
    op.drop_index(op.f('ix_recurring_reminders_run_id'), table_name='recurring_reminders')
    op.drop_table('recurring_reminders')
    op.drop_index(op.f('ix_recurring_files_run_id'), table_name='recurring_files')
    op.drop_table('recurring_files')
    op.drop_index('ix_recurring_runs_definition_started', table_name='recurring_runs')
    op.drop_table('recurring_runs')
    op.drop_index('ix_recurring_definitions_next_run_at', table_name='recurring_definitions', postgresql_where=sa.text('enabled'))
    op.drop_table('recurring_definitions')
