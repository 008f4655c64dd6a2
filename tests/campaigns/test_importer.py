"""The COPY importer on real PostgreSQL, including an import killed part-way and run again."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from campaigns import campaign as campaign_service
from campaigns import importer
from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.models import Campaign, ScheduledEvent
from tests.e2e.test_up import poll

ROOT = Path(__file__).resolve().parent.parent.parent


def new_campaign(sessions: sessionmaker[Session], clock: FrozenClock, **overrides: object) -> uuid.UUID:
    body = {"name": "c", "assistant_id": "a1", "telnyx_agent_target": "+15553456789", "ruleset": "none", **overrides}
    with unit_of_work(sessions) as s:
        return campaign_service.create_campaign(
            s, campaign_service.validate_settings(body, now=clock.now()), now=clock.now()
        ).id


def generated_csv(rows: int) -> bytes:
    lines = ["phone,first_name,city,plan"]
    lines += [f"+1212{2000000 + i:07d},Name{i},City{i % 50},plan-{i % 3}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def count_events(sessions: sessionmaker[Session], campaign_id: uuid.UUID) -> tuple[int, int]:
    with sessions() as s:
        total = s.scalar(
            select(func.count()).select_from(ScheduledEvent).where(ScheduledEvent.campaign_id == campaign_id)
        )
        distinct = s.scalar(
            select(func.count(func.distinct(ScheduledEvent.telnyx_end_user_target))).where(
                ScheduledEvent.campaign_id == campaign_id
            )
        )
    return int(total or 0), int(distinct or 0)


def test_reimporting_the_same_file_adds_nobody(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    campaign_id = new_campaign(sessions, clock)
    data = generated_csv(500)
    for expected_accepted, expected_duplicates in ((500, 0), (0, 500)):
        with unit_of_work(sessions) as s:
            campaign = s.get(Campaign, campaign_id)
            assert campaign is not None
            report = importer.load_call_list(s, campaign, io.BytesIO(data), now=clock.now())
        assert (report.rows_accepted, report.rows_duplicate) == (expected_accepted, expected_duplicates)
    assert count_events(sessions, campaign_id) == (500, 500)


@pytest.fixture
def killed_import(
    database_url: str, sessions: sessionmaker[Session], clock: FrozenClock
) -> Iterator[tuple[uuid.UUID, int]]:
    """A 60,000-row import running in another process, killed with SIGKILL once it has made progress."""
    rows = 60_000
    campaign_id = new_campaign(sessions, clock)
    with unit_of_work(sessions) as s:
        importer.store_upload(s, campaign_id, io.BytesIO(generated_csv(rows)))
    script = textwrap.dedent(
        f"""
        import uuid
        from datetime import UTC, datetime
        from sqlalchemy import create_engine
        from sqlalchemy.orm import sessionmaker
        from campaigns import importer
        importer.CHUNK_ROWS = 2000  # report progress often so the kill lands mid-import
        factory = sessionmaker(bind=create_engine({database_url!r}), expire_on_commit=False)
        importer.run_stored_import(factory, uuid.UUID({str(campaign_id)!r}), now=lambda: datetime.now(UTC))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ))

    def progressed() -> bool:
        with sessions() as s:
            total = s.scalar(select(Campaign.rows_total).where(Campaign.id == campaign_id))
        return bool(total) or process.poll() is not None

    poll(progressed, timeout=60, interval=0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    yield campaign_id, rows


def test_an_import_killed_midway_and_rerun_never_duplicates(
    killed_import: tuple[uuid.UUID, int], sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    campaign_id, rows = killed_import
    with sessions() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        assert campaign.import_status == "running"  # it really was interrupted
        assert 0 < campaign.rows_total < rows
    assert count_events(sessions, campaign_id) == (0, 0)  # its transaction died with it
    assert importer.run_stored_import(sessions, campaign_id, now=clock.now) == "completed"
    assert importer.run_stored_import(sessions, campaign_id, now=clock.now) == "nothing to do"
    assert count_events(sessions, campaign_id) == (rows, rows)
    with sessions() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        assert (campaign.import_status, campaign.rows_accepted, campaign.rows_total) == ("completed", rows, rows)


valid_phone = st.integers(min_value=2_000_000, max_value=9_999_999).map(lambda n: f"+1212{n:07d}")
bad_phone = st.sampled_from(["", "12", "not a number", "+1 555 0100", "+999123"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(valid_phone, bad_phone), min_size=1, max_size=40))
def test_accepted_rows_are_exactly_the_valid_distinct_rows(
    sessions: sessionmaker[Session], clock: FrozenClock, phones: list[str]
) -> None:
    campaign_id = new_campaign(sessions, clock)
    data = ("phone,name\n" + "".join(f'"{p}",x\n' for p in phones)).encode()
    with unit_of_work(sessions) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        report = importer.load_call_list(s, campaign, io.BytesIO(data), now=clock.now())
    valid = [p for p in phones if p.startswith("+1212")]
    assert report.rows_accepted == len(set(valid))
    assert report.rows_duplicate == len(valid) - len(set(valid))
    assert report.rows_rejected == len(phones) - len(valid)
    assert count_events(sessions, campaign_id) == (len(set(valid)), len(set(valid)))
