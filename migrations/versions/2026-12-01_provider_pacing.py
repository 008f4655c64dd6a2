"""Provider pacing (issue 17, q2): the provider-wide rate-limit backoff, and the indexes the account-wide caps read.

``provider_backoffs`` keeps, per provider adapter, the instant before which no new request goes to it after the
provider refused one for its rate (HTTP 429, codes 10011 and 90103): one "not before" shared by every scheduler.
``ix_call_attempts_claimed_at`` serves the dials of the last rolling seconds (``CAMPAIGNS_MAX_DIALS_PER_SECOND``)
and ``ix_call_attempts_live`` the calls in progress (``CAMPAIGNS_MAX_CONCURRENT_CALLS``): both are counted on
every claim, and without them each count walked the whole attempts table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'provider_backoffs',
        sa.Column('provider', sa.String(32), nullable=False),
        sa.Column('level', sa.Integer(), nullable=False),
        sa.Column('not_before', TZ, nullable=False),
        sa.Column('updated_at', TZ, nullable=False),
        sa.PrimaryKeyConstraint('provider', name=op.f('pk_provider_backoffs')),
    )
    op.create_index('ix_call_attempts_claimed_at', 'call_attempts', ['claimed_at'])
    op.create_index('ix_call_attempts_live', 'call_attempts', ['provider'],
                    postgresql_where=sa.text("state <> 'finished'"))  # fmt: skip


def downgrade() -> None:
    op.drop_index('ix_call_attempts_live', table_name='call_attempts')
    op.drop_index('ix_call_attempts_claimed_at', table_name='call_attempts')
    op.drop_table('provider_backoffs')
