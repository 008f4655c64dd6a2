"""Autovacuum and analyze thresholds for the two hot tables, as a share of rows that fits their churn.

PostgreSQL's defaults analyze a table once 10% of it changed and vacuum it at 20%. A campaign flips a large
share of ``scheduled_events`` from pending to in progress to completed within minutes, and every status-driven
statement is planned on statistics taken before that: during the 100,000-event benchmark the table had 235,000
dead rows and had not been analyzed since the events were loaded (issue 7). Smaller thresholds keep the
statistics and the partial indexes (pending due times, in-progress leases) close to the truth. They are storage
parameters, so an operator can still change them with ``ALTER TABLE … SET``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TABLES = ("scheduled_events", "call_attempts")
SETTINGS = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_insert_scale_factor": "0.05",
    "autovacuum_analyze_scale_factor": "0.01",
}


def upgrade() -> None:
    settings = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET ({settings})")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(SETTINGS)})")
