"""The Alembic migrations, installed as ``campaigns.migrations``.

Owns the database schema's history: ``env.py`` (the Alembic environment: the URL from the settings or the
caller's connection), ``script.py.mako`` (the template of a new revision) and ``versions/`` (the revisions, named
``YYYY-MM-DD_slug``). Nothing imports this package: ``worker.migrate`` hands its folder to Alembic, which loads the
files itself. The folder is the repository's top-level ``migrations/``, mapped into the package by setup.py, so
the wheel ships it and ``alembic.ini`` at the repository root points the ``alembic`` command at the same files.
"""
