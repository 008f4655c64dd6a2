"""Migrations and models agree (``alembic check``), and the schema round-trips."""

from __future__ import annotations

from alembic import command

from worker.migrate import alembic_config


def test_models_match_migrations(database_url: str) -> None:
    command.check(alembic_config(database_url))  # raises when autogenerate would produce operations
