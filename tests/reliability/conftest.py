"""Fixtures of the reliability suite: a private Redis and a scratch database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import harness
from tests.reliability.stack import Stack


@pytest.fixture
def stack(_servers: tuple[str, str], tmp_path: Path) -> Iterator[Stack]:
    """Processes against a scratch database on the test server and a private redis-server."""
    with harness.scratch_database(_servers[0], prefix="chaos") as url, harness.redis_server() as redis:
        running = Stack(database_url=url, redis=redis, logs=tmp_path / "logs")
        try:
            yield running
        finally:
            running.stop()
