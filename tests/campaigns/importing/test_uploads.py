"""Stored uploads and their background import, including an import killed part-way and run again."""

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
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from campaigns.clock import FrozenClock
from campaigns.db import unit_of_work
from campaigns.importing import run_stored_import, store_upload
from campaigns.models import Campaign
from tests.campaigns.importing.test_loader import count_events, generated_csv, new_campaign
from tests.e2e.test_up import poll

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def killed_import(
    database_url: str, sessions: sessionmaker[Session], clock: FrozenClock
) -> Iterator[tuple[uuid.UUID, int]]:
    """A 60,000-row import running in another process, killed with SIGKILL once it has made progress."""
    rows = 60_000
    campaign_id = new_campaign(sessions, clock)
    with unit_of_work(sessions) as s:
        store_upload(s, campaign_id, io.BytesIO(generated_csv(rows)))
    script = textwrap.dedent(
        f"""
        import uuid
        from datetime import UTC, datetime
        from sqlalchemy import create_engine
        from sqlalchemy.orm import sessionmaker
        from campaigns.importing import loader, run_stored_import
        loader.CHUNK_ROWS = 2000  # report progress often so the kill lands mid-import
        factory = sessionmaker(bind=create_engine({database_url!r}), expire_on_commit=False)
        run_stored_import(factory, uuid.UUID({str(campaign_id)!r}), now=lambda: datetime.now(UTC))
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
    assert run_stored_import(sessions, campaign_id, now=clock.now) == "completed"
    assert run_stored_import(sessions, campaign_id, now=clock.now) == "nothing to do"
    assert count_events(sessions, campaign_id) == (rows, rows)
    with sessions() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        assert (campaign.import_status, campaign.rows_accepted, campaign.rows_total) == ("completed", rows, rows)
