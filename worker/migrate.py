"""Running the Alembic migrations from code, from the installed package.

The migrations ship inside the package as ``campaigns.migrations`` (the repository's top-level ``migrations/``
folder, mapped into the package by setup.py), so ``campaigns migrate`` works from a wheel and from any directory.
The configuration is built here rather than read from an ini file: upgrading needs only the script location, and
a wheel has no ``alembic.ini`` next to it. ``alembic.ini`` at the repository root is the developers' one, for the
``alembic`` command (``alembic check``, ``alembic revision``), and points at the same folder.
"""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config

MIGRATIONS_PACKAGE = "campaigns.migrations"


def script_location() -> str:
    """The folder of ``env.py`` and ``versions/`` in the installed package (the source folder when editable)."""
    return str(resources.files(MIGRATIONS_PACKAGE))


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location())
    # How to split a list of version folders: by os.pathsep, as in alembic.ini (the default is deprecated).
    config.set_main_option("path_separator", "os")
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str | None = None) -> None:
    """``alembic upgrade head``."""
    command.upgrade(alembic_config(database_url), "head")
