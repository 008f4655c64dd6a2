"""Fixtures of the CLI tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from worker.runtime import reset_runtime


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch, sessions: sessionmaker[Session]) -> Iterator[None]:
    """The commands see the test database (a fresh runtime before and after)."""
    monkeypatch.setenv("CAMPAIGNS_DATABASE_URL", database_url)
    reset_runtime()
    yield
    reset_runtime()
