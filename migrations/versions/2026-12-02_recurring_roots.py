"""Recurring definitions keep their allowed root; recurring files keep the modification time they were read at.

``recurring_definitions.allowed_root``: the directory every file a run reads must lie in (symlinks resolved). An
API definition stored before this revision has none: its runs fall back to the worker's
``CAMPAIGNS_RECURRING_DIR`` and read nothing when that is unset (issue #19: with it unset, a ``source = "*"``
followed a symlink to /etc/passwd). ``recurring_files.mtime_ns``: with the path and size, lets a run skip a
file it has read without reading and hashing it again; files read before this revision are hashed once more.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('recurring_definitions', sa.Column('allowed_root', sa.Text(), nullable=True))
    op.add_column('recurring_files', sa.Column('mtime_ns', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column('recurring_files', 'mtime_ns')
    op.drop_column('recurring_definitions', 'allowed_root')
