"""Migrations and models agree (``alembic check``), and the schema round-trips."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text
from sqlalchemy.orm import Session

from worker.migrate import alembic_config


def test_models_match_migrations(database_url: str) -> None:
    command.check(alembic_config(database_url))  # raises when autogenerate would produce operations


def test_hot_tables_are_analyzed_after_a_small_share_of_changes(session: Session) -> None:
    # Status-driven statements are planned on statistics; PostgreSQL's default waits for 10% of a table to
    # change before analyzing it (issue 7: a 100k burst planned on pre-burst statistics ran at a third speed).
    options = dict(
        session.execute(
            text("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)"),
            {"names": ["scheduled_events", "call_attempts"]},
        ).all()
    )
    for table in ("scheduled_events", "call_attempts"):
        assert "autovacuum_analyze_scale_factor=0.01" in options[table], table
        assert "autovacuum_vacuum_scale_factor=0.02" in options[table], table
