"""Alembic environment: the database URL comes from the settings (or the caller's connection)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from campaigns import models  # noqa: F401  (registers the tables)
from campaigns.db import Base, normalize_url
from campaigns.settings import get_settings

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    if not url:
        raise SystemExit("CAMPAIGNS_DATABASE_URL is not set")
    engine = create_engine(normalize_url(url), hide_parameters=True)  # no row values in a failed migration's error
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
run_migrations()
