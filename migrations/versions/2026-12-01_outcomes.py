"""Outcomes true to a real phone network (issue 17): each attempt's ``outcome``, ``answered_by``, conversation
and insights; the outcome settings of events and campaigns (answering-machine detection, voicemail action,
per-outcome retry policy) with each event's per-outcome retries and its attempts that spent no budget; and
``provider_holds``, the breaker that holds dispatch while the provider refuses the account.

``retry_budget`` keeps only ``retry_count >= 0``: under a per-outcome policy the retries spent over all outcomes
may pass ``max_retries_client_errors``. Existing attempts get the outcome their call status implies; existing
events and campaigns get Telnyx's behaviour (detection off), which is what they were created with.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column('call_attempts', sa.Column('outcome', sa.String(32), nullable=True))
    op.add_column('call_attempts', sa.Column('answered_by', sa.String(16), nullable=True))
    op.add_column('call_attempts', sa.Column('conversation_id', sa.String(255), nullable=True))
    op.add_column('call_attempts', sa.Column('insights', postgresql.JSONB(), nullable=True))
    op.execute(
        "UPDATE call_attempts SET outcome = CASE call_status WHEN 'completed' THEN 'answered' ELSE call_status END "
        "WHERE call_status IS NOT NULL"
    )

    op.add_column('scheduled_events', sa.Column('answering_machine_detection', sa.String(16),
                                                nullable=False, server_default='disabled'))  # fmt: skip
    op.add_column('scheduled_events', sa.Column('voicemail_action', sa.String(16), nullable=False,
                                                server_default='retry'))  # fmt: skip
    op.add_column('scheduled_events', sa.Column('retry_policy', postgresql.JSONB(), nullable=True))
    op.add_column('scheduled_events', sa.Column('outcome_retries', postgresql.JSONB(), nullable=False,
                                                server_default=sa.text("'{}'::jsonb")))  # fmt: skip
    op.add_column('scheduled_events', sa.Column('free_attempts', sa.Integer(), nullable=False,
                                                server_default=sa.text('0')))  # fmt: skip
    op.drop_constraint(op.f('ck_scheduled_events_retry_budget'), 'scheduled_events', type_='check')
    op.create_check_constraint(op.f('ck_scheduled_events_retry_budget'), 'scheduled_events', 'retry_count >= 0')

    op.add_column('campaigns', sa.Column('answering_machine_detection', sa.String(16), nullable=False,
                                         server_default='disabled'))  # fmt: skip
    op.alter_column('campaigns', 'answering_machine_detection', server_default='detect')
    op.add_column('campaigns', sa.Column('voicemail_action', sa.String(16), nullable=False, server_default='retry'))
    op.add_column('campaigns', sa.Column('retry_policy', postgresql.JSONB(), nullable=True))

    op.create_table(
        'provider_holds',
        sa.Column('provider', sa.String(32), nullable=False),
        sa.Column('reason', sa.String(32), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('opened_at', TZ, nullable=False),
        sa.Column('next_probe_at', TZ, nullable=False),
        sa.Column('updated_at', TZ, nullable=False),
        sa.PrimaryKeyConstraint('provider', name=op.f('pk_provider_holds')),
    )


def downgrade() -> None:
    op.drop_table('provider_holds')
    for column in ('retry_policy', 'voicemail_action', 'answering_machine_detection'):
        op.drop_column('campaigns', column)
    op.drop_constraint(op.f('ck_scheduled_events_retry_budget'), 'scheduled_events', type_='check')
    op.create_check_constraint(
        op.f('ck_scheduled_events_retry_budget'), 'scheduled_events',
        'retry_count >= 0 AND retry_count <= max_retries_client_errors',
    )  # fmt: skip
    for column in ('free_attempts', 'outcome_retries', 'retry_policy', 'voicemail_action',
                   'answering_machine_detection'):  # fmt: skip
        op.drop_column('scheduled_events', column)
    for column in ('insights', 'conversation_id', 'answered_by', 'outcome'):
        op.drop_column('call_attempts', column)
